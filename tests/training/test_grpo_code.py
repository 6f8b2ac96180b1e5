"""GRPO on the embedded code world end to end: a tiny code base, two steps, the held-out
evaluation before and after, and the accuracy reward equal to the sandbox's verdict."""

from __future__ import annotations

import json
import shutil

import pytest

from r1lab.cli import main
from r1lab.data.tasks import TaskConfig, load_task
from r1lab.rewards.base import Sample
from r1lab.rewards.code import run_sample

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is missing")


@pytest.mark.slow
def test_grpo_on_embedded_code(tmp_path):
    out = f"run.output_dir={tmp_path}"
    tiny = ["model.hidden_size=32", "model.num_layers=1", "model.intermediate_size=64",
            "vocab_size=300", "code.conversations=300", "code.worked_examples=100",
            "eval.problems=0", "sft.token_budget=256"]  # fmt: skip
    assert main(["pretrain", "kind=code", out, *tiny]) == 0
    base = tmp_path / "pretrain-code" / "final"
    card = json.loads((base / "config.json").read_text())["r1lab"]
    assert card["world"]["kind"] == "code"

    args = ["grpo", "task.name=embedded-code", f"model={base}", out, "task.limit=32",
            "grpo.steps=2", "grpo.prompts_per_step=4", "grpo.group_size=2",
            "grpo.max_new_tokens=64", "grpo.log_samples=8", "heldout.problems=4", "heldout.k=1",
            "heldout.max_new_tokens=64", "rewards.workers=1"]  # fmt: skip
    assert main(args) == 0
    run = tmp_path / "grpo"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["heldout"]["heldout_problems"] == 4
    assert {"base_pass@1", "final_pass@1", "base_greedy_pass@1"} <= set(summary["heldout"])
    assert "Held-out evaluation" in (run / "report.md").read_text()

    # the accuracy the trainer logged for each sample is the sandbox's verdict on its program
    problems = {
        p.question: p for p in load_task(TaskConfig(name="embedded-code", split="train", limit=32))
    }
    logged = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    assert logged
    for s in logged:
        p = problems[s["question"]]
        verdict = run_sample(Sample(p.question, s["response"], p.meta))
        assert verdict is not None and s["accuracy"] == float(verdict.passed), s["response"]
