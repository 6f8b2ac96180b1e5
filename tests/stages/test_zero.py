"""``r1lab zero`` end to end on a tiny random base: evaluations, GRPO, summary and report."""

from __future__ import annotations

import json

import pytest
import torch

from r1lab.config import load_config
from r1lab.errors import UserError
from r1lab.stages.zero import ZeroConfig, compare_table, run_zero
from r1lab.world.model import TinyModelConfig, build_model
from r1lab.world.problems import generate_problems
from r1lab.world.tokenizer import build_tokenizer


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    texts = [
        f"{p.question} <think>{p.meta['a']}{p.meta['op']}{p.meta['b']}</think>"
        f"<answer>{p.answer}</answer>"
        for p in generate_problems(300, seed=5)
    ]
    tok = build_tokenizer(texts, vocab_size=300)
    torch.manual_seed(0)
    cfg = TinyModelConfig(
        hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64
    )
    model = build_model(cfg, len(tok), tok.pad_token_id, tok.eos_token_id)
    folder = tmp_path_factory.mktemp("base")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _cfg(base, out, *extra):
    return load_config(
        ZeroConfig,
        None,
        [
            f"base={base}",
            f"run.output_dir={out}",
            "task.limit=32",
            "grpo.steps=2",
            "grpo.minibatches=1",
            "grpo.prompts_per_step=4",
            "grpo.group_size=4",
            "grpo.max_new_tokens=12",
            "grpo.device=cpu",
            "rewards.workers=0",
            "eval.task.limit=8",
            "eval.k=4",
            "eval.max_new_tokens=12",
            *extra,
        ],
    )


def test_zero_evaluates_base_and_final_on_the_same_heldout_problems(base, tmp_path, capsys):
    summary = run_zero(_cfg(base, tmp_path))
    run = tmp_path / "zero"
    saved = json.loads((run / "summary.json").read_text())
    assert saved["base_pass@1"] == summary["base_pass@1"]
    headline = {"base_greedy_pass@1", "final_greedy_pass@1", "base_pass@1", "final_pass@1"}
    assert headline | {"gain_greedy_pass@1", "gain_pass@1", "minutes"} <= set(saved)
    assert saved["gain_pass@1"] == pytest.approx(saved["final_pass@1"] - saved["base_pass@1"])
    assert saved["heldout_problems"] == 8
    for key in ("greedy_pass@1", "pass@1", "pass@4", "reflection_rate", "mean_tokens"):
        assert key in saved["base"] and key in saved["final"]

    def ids(name):
        lines = (run / name).read_text().splitlines()
        return [json.loads(x)["id"] for x in lines]

    heldout = ids("base_eval.samples.jsonl")
    assert heldout == ids("final_eval.samples.jsonl")
    assert all(i.startswith("heldout-") for i in heldout)
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert (run / "final" / "model.safetensors").is_file()
    report = (run / "report.md").read_text()
    assert "| greedy pass@1 (T=0)" in report and "plots/rewards.png" in report
    assert "plots/reflection.png" in report
    assert "reflection_rate" in json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    out = capsys.readouterr().out
    assert "language consistency" in out and "base" in out and "final" in out

    # a finished run resumed: the evaluations are read back, nothing is trained again
    again = run_zero(_cfg(base, tmp_path), resume=True)
    assert again["base_pass@1"] == summary["base_pass@1"]
    assert again["final_pass@1"] == summary["final_pass@1"]


def test_a_missing_base_other_than_the_default_is_an_error(tmp_path):
    with pytest.raises(UserError, match="base model not found"):
        run_zero(_cfg(tmp_path / "nowhere", tmp_path))


def test_compare_table():
    table = compare_table(
        {"pass@1": 0.25, "format_rate": 0.9, "mean_tokens": 40.0},
        {"pass@1": 0.75, "format_rate": 1.0, "mean_tokens": 90.5},
    )
    assert "|   +0.500 |" in table
    assert "90.5" in table and "+50.5" in table
