"""GRPO with infra.offload: the optimizer state, the reference and a reward model really leave
in the phases that do not use them, and the run's metrics and weights are exactly those of a
run without offload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import r1lab.training.grpo as grpo
from r1lab.config import load_config
from r1lab.infra.offload import Offloader
from r1lab.model_card import set_card
from r1lab.runs import Run
from r1lab.stages.rm import load_rm_init
from r1lab.training.grpo_config import GRPOStageConfig
from r1lab.world.model import TinyModelConfig, build_model
from r1lab.world.problems import generate_problems
from r1lab.world.tokenizer import build_tokenizer

TIMING = ("step_seconds", "gen_seconds", "gen_tokens_per_s", "tokens_per_s", "ref_seconds",
          "reward_seconds", "reward_wait_seconds", "reward_hidden")  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tokenizer, problems, and a reward model folder (an untrained head: its scores still
    vary with the text) made from the tiny base."""
    problems = generate_problems(40, seed=5)
    tok = build_tokenizer(
        [f"{p.question} <think>{p.answer}</think><answer>{p.answer}</answer>" for p in problems],
        vocab_size=300,
    )
    folder = tmp_path_factory.mktemp("world")
    tiny(tok).save_pretrained(folder / "base")
    tok.save_pretrained(folder / "base")
    rm, _ = load_rm_init(folder / "base")
    set_card(rm, reward_model={"kind": "safety", "max_length": 64})
    rm.save_pretrained(folder / "rm")
    tok.save_pretrained(folder / "rm")
    return tok, problems, folder / "rm"


def tiny(tok):
    torch.manual_seed(0)
    cfg = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                          intermediate_size=64)  # fmt: skip
    return build_model(cfg, len(tok), tok.pad_token_id, tok.eos_token_id)


def run_grpo(world, out: Path, name: str, infra: list[str]):
    tok, problems, rm = world
    cfg = load_config(
        GRPOStageConfig,
        None,
        [
            f"run.output_dir={out}", f"run.name={name}", "run.save_every=2",
            "grpo.steps=4", "grpo.minibatches=1", "grpo.prompts_per_step=2", "grpo.group_size=4",
            "grpo.max_new_tokens=8", "grpo.device=cpu", "grpo.ref_reset_every=2",
            "loss.beta=0.05", "rewards.workers=0",
            f"rewards.models={{safety: {rm}}}", "rewards.weights={format: 1.0, safety: 1.0}",
            *infra,
        ],
    )  # fmt: skip
    model = tiny(tok)
    run = Run.create(cfg.run, "grpo", cfg)
    try:
        grpo.train_grpo(model, tok, problems, cfg, run)
    finally:
        run.close()
    lines = (out / name / "metrics.jsonl").read_text().splitlines()
    metrics = [{k: v for k, v in json.loads(x).items() if k not in TIMING} for x in lines]
    return metrics, {k: v.clone() for k, v in model.state_dict().items()}


def test_offload_to_disk_frees_idle_modules_and_changes_no_number(world, tmp_path, monkeypatch):
    plain, w_plain = run_grpo(world, tmp_path, "plain", [])

    offloaders: list[Offloader] = []
    seen: dict[str, list[tuple[set[str], bool]]] = {"rollout": [], "train": []}

    class Recording(Offloader):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            offloaders.append(self)

    def watch(phase, fn):
        def wrapped(*args, **kwargs):
            off = offloaders[0]
            away = {n for n, a in off.away.items() if a.nbytes > 0}
            freed = all(
                e.tensor.numel() == 0 for a in off.away.values() for e in a.entries.values()
            )
            seen[phase].append((away, freed))
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(grpo, "Offloader", Recording)
    monkeypatch.setattr(grpo, "start_rollout", watch("rollout", grpo.start_rollout))
    monkeypatch.setattr(grpo, "train_step", watch("train", grpo.train_step))
    moved, w_moved = run_grpo(
        world, tmp_path, "moved", ["infra.offload=true", "infra.offload_to=disk"]
    )

    # the rollout: the reference always away, the optimizer state from the second rollout on
    # (it appears at the first step); training: the reference and the reward model away
    assert [a for a, _ in seen["rollout"]] == [{"reference"}] + [{"reference", "optimizer"}] * 3
    assert [a for a, _ in seen["train"]] == [{"reference", "reward models"}] * 4
    assert all(freed for phase in seen.values() for _, freed in phase)
    # everything is back at the end, the offload folder gone
    assert not offloaders[0].away and not (tmp_path / "moved" / "offload").exists()
    # and not a number changed: losses, KL, rewards of the reward model, weights
    assert [m["step"] for m in moved] == [1, 2, 3, 4]
    assert all(m["reward/safety"] > 0 for m in moved)
    assert moved == plain
    assert w_moved.keys() == w_plain.keys()
    assert all(torch.equal(w_moved[k], w_plain[k]) for k in w_plain)
