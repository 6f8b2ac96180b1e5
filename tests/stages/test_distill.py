"""``r1lab distill`` on a tiny world: a teacher that knows its training problems by heart, a
smaller student with the same tokenizer; the teacher's traces pass rejection sampling, the
student is SFT'd on them, the RL baseline gets the same wall-clock time, and all are evaluated.
A student with another tokenizer is refused before anything is written."""

from __future__ import annotations

import json
import random

import pytest
import torch

from r1lab.config import load_config
from r1lab.data.tasks import TaskConfig, load_task
from r1lab.errors import UserError
from r1lab.runs import Run, RunConfig
from r1lab.stages.distill import DistillConfig, run_distill
from r1lab.training.sft import SFTConfig, train_sft
from r1lab.world.model import TinyModelConfig, build_model
from r1lab.world.problems import WorldConfig, careful_trace, render_response
from r1lab.world.tokenizer import build_tokenizer

TASK = TaskConfig(split="train", limit=8, seed=3)


def _trace(p, rng) -> str:
    m = p.meta
    lines, answer = careful_trace(m["a"], m["op"], m["b"], m["language"], False, rng)
    return render_response(lines, answer)


def _model(tok, hidden: int, layers: int):
    torch.manual_seed(0)
    cfg = TinyModelConfig(hidden_size=hidden, num_layers=layers, num_heads=2, num_kv_heads=1,
                          intermediate_size=2 * hidden, max_position_embeddings=512)  # fmt: skip
    return build_model(cfg, len(tok), tok.pad_token_id, tok.eos_token_id)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    rng = random.Random(0)
    problems = load_task(TASK, WorldConfig())
    examples = [{"prompt": p.question, "response": _trace(p, rng)} for p in problems]
    tok = build_tokenizer([e["prompt"] + e["response"] for e in examples], vocab_size=300)
    teacher = _model(tok, 64, 2)
    sft = SFTConfig(lr_max=5e-3, lr_min=1e-3, epochs=250, token_budget=512, rows_per_micro_batch=8,
                    grad_accum=1, device="cpu")  # fmt: skip
    run = Run.create(RunConfig(name="teach", output_dir=str(root)), "sft", sft)
    train_sft(teacher, tok, examples, sft, run)  # by heart: its samples are these traces
    run.close()
    teacher.save_pretrained(root / "teacher")
    tok.save_pretrained(root / "teacher")
    student = _model(tok, 32, 1)
    student.save_pretrained(root / "student")
    tok.save_pretrained(root / "student")
    other = build_tokenizer(["something else entirely"] * 10, vocab_size=280)
    _model(other, 32, 1).save_pretrained(root / "stranger")
    other.save_pretrained(root / "stranger")
    return root


def _overrides(root, out, student="student"):
    return [
        f"teacher={root / 'teacher'}", f"student={root / student}", f"run.output_dir={out}",
        "task.limit=8", "task.seed=3", "sampling.k=2", "sampling.max_new_tokens=160",
        "sampling.temperature=0.3", "sft.epochs=2", "sft.token_budget=512", "sft.device=cpu",
        "rl.prompts_per_step=4", "rl.group_size=2", "rl.minibatches=1",
        "rl.max_new_tokens=16", "rl.device=cpu", "rl_rewards.workers=0",
        "eval.task.limit=4", "eval.final_k=1", "eval.max_new_tokens=16",
    ]  # fmt: skip


@pytest.mark.slow
def test_distill_then_the_rl_baseline_for_the_same_time(folders, tmp_path):
    summary = run_distill(load_config(DistillConfig, None, _overrides(folders, tmp_path)))
    out = tmp_path / "distill"
    assert summary["examples"] > 0 and summary["funnel"]["correct"]["out"] > 0
    sft = [json.loads(x) for x in (out / "sft.jsonl").read_text().splitlines()]
    assert len(sft) == summary["examples"] and all("<think>" in x["response"] for x in sft)
    assert (out / "sft" / "final" / "model.safetensors").is_file()
    # the RL baseline stopped on the distillation's clock, with a checkpoint of its own
    rl = json.loads((out / "rl" / "summary.json").read_text())
    assert rl["seconds"] <= summary["distill_seconds"] + 60
    assert summary["rl_steps"] == rl["steps"] >= 1
    assert set(summary["eval"]) == {"student base", "distilled", "RL"}
    for key in ("distilled_greedy_pass@1", "rl_greedy_pass@1", "student_greedy_pass@1"):
        assert 0.0 <= summary[key] <= 1.0
    assert summary["gap_greedy_pass@1"] == pytest.approx(
        summary["distilled_greedy_pass@1"] - summary["rl_greedy_pass@1"], abs=1e-4
    )
    # a rerun reads what was done back
    again = run_distill(
        load_config(DistillConfig, None, _overrides(folders, tmp_path)), resume=True
    )
    assert again["distill_seconds"] == summary["distill_seconds"]
    assert again["eval"] == summary["eval"]


def test_a_student_with_another_tokenizer_is_refused(folders, tmp_path):
    cfg = load_config(DistillConfig, None, _overrides(folders, tmp_path, "stranger"))
    with pytest.raises(UserError, match="the student's tokenizer is not the teacher's"):
        run_distill(cfg)
    assert not (tmp_path / "distill").exists()
