"""bfloat16 training beside a float32 sampler: π_old is recomputed by the training forward, so
the first step's importance ratio is 1 (within 1e-3); without the recomputation it is not."""

from __future__ import annotations

import json

import pytest
import torch

from r1lab.runs import Run, RunConfig
from r1lab.training.grpo import train_grpo
from r1lab.training.grpo_config import GRPOConfig, GRPOStageConfig
from r1lab.training.losses import GRPOLossConfig
from r1lab.world.model import TinyModelConfig, build_model
from r1lab.world.problems import generate_problems
from r1lab.world.tokenizer import build_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    texts = [f"{p.question} <answer>{p.answer}</answer>" for p in generate_problems(200, seed=3)]
    return build_tokenizer(texts, vocab_size=300)


def _first_step(tokenizer, tmp_path, recompute):
    torch.manual_seed(0)
    # wide initial weights: peaked distributions, where bfloat16 rounding moves log-probs
    cfg = TinyModelConfig(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                          intermediate_size=128, init_std=0.2)  # fmt: skip
    model = build_model(cfg, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    stage = GRPOStageConfig(
        grpo=GRPOConfig(steps=1, minibatches=1, prompts_per_step=8, group_size=4,
                        max_new_tokens=24, dtype="bfloat16", device="cpu",
                        recompute_old_logprobs=recompute),
        loss=GRPOLossConfig(beta=0.04),
    )  # fmt: skip
    stage.rewards.weights, stage.rewards.workers = {"format": 1.0}, 0
    stage.rewards.metrics = ["format"]
    name = f"r-{recompute}"
    run = Run.create(RunConfig(output_dir=str(tmp_path), name=name), "grpo", stage)
    train_grpo(model, tokenizer, generate_problems(16, seed=1), stage, run)
    (line,) = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
    return json.loads(line)


def test_first_step_ratio_is_one_under_bf16(tokenizer, tmp_path, capsys):
    auto = _first_step(tokenizer, tmp_path, None)
    assert "π_old is recomputed" in capsys.readouterr().out
    assert abs(auto["ratio_min"] - 1) <= 1e-3 and abs(auto["ratio_max"] - 1) <= 1e-3
    # the float32 sampler's log-probs as π_old: the same tokens, another ratio
    sampler = _first_step(tokenizer, tmp_path, False)
    assert max(1 - sampler["ratio_min"], sampler["ratio_max"] - 1) > 1e-3


def test_reference_is_stored_in_bf16_under_bf16(tokenizer):
    from r1lab.inference.reference import ReferencePolicy

    model = build_model(TinyModelConfig(hidden_size=32, num_layers=1, intermediate_size=64),
                        len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)  # fmt: skip
    ref = ReferencePolicy(model, torch.bfloat16)
    assert {p.dtype for p in ref.model.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    ref.reset(model)  # cast on the way in; the policy stays float32
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert torch.equal(next(ref.model.parameters()), next(model.parameters()).to(torch.bfloat16))
