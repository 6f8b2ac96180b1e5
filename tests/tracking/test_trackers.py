"""``run.trackers``: every metrics line a run logs also goes to TensorBoard, wandb or trackio.

TensorBoard is real (its event files are read back); wandb and trackio are stand-in modules
that record what they are told, so the tests need neither package nor a network.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from r1lab.cli import main
from r1lab.errors import UserError
from r1lab.runs import Run, RunConfig

LINES = [
    {"step": 1, "loss": 2.0, "reward/total": 0.25, "note": "text stays in metrics.jsonl"},
    {"step": 2, "loss": 1.5, "reward/total": 0.5, "flat": True},
    {"step": 3, "loss": 1.0, "reward/total": 0.75, "lengths": [3, 4]},
]


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def _run(tmp_path: Path, trackers: list[str], resume: bool = False, **kw: Any) -> Run:
    cfg = RunConfig(name="r", output_dir=str(tmp_path), trackers=trackers, **kw)
    return Run.create(cfg, "r", cfg, resume=resume)


def test_tensorboard_gets_every_number_logged_with_its_step(tmp_path: Path) -> None:
    run = _run(tmp_path, ["tensorboard"])
    for line in LINES:
        run.log(line)
    run.write_summary({"steps": 3})
    run.close()
    scalars = _scalars(tmp_path / "r" / "tensorboard")
    assert scalars["loss"] == [(1, 2.0), (2, 1.5), (3, 1.0)]
    assert scalars["reward/total"] == [(1, 0.25), (2, 0.5), (3, 0.75)]
    assert scalars["flat"] == [(2, 1.0)]
    assert set(scalars) == {"loss", "reward/total", "flat"}  # no text, lists or step
    assert len(run.metrics()) == 3  # metrics.jsonl is still the record


def test_a_stage_run_with_tensorboard_writes_its_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``r1lab sft run.trackers=[tensorboard]`` on a one-layer model: every step in the event
    file, with the loss metrics.jsonl has."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from r1lab.world.tokenizer import build_tokenizer

    examples = [{"prompt": f"What is {a}+{b}?", "response": f"<answer>{a + b}</answer>"}
                for a, b in [(1, 2), (13, 29), (7, 8), (120, 5)]]  # fmt: skip
    tok = build_tokenizer([e["prompt"] + " " + e["response"] for e in examples * 10], 280)
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, tie_word_embeddings=True,
    )  # fmt: skip
    Qwen2ForCausalLM(config).save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    monkeypatch.chdir(tmp_path)
    argv = ["sft", "model=model", "data.path=data.jsonl", "sft.max_steps=3", "sft.device=cpu",
            "sft.token_budget=64", "sft.grad_accum=1", "run.name=t", "run.trackers=[tensorboard]"]  # fmt: skip
    assert main(argv) == 0
    run = Run(tmp_path / "runs" / "t")
    logged = [(m["step"], m["loss"]) for m in run.metrics()]
    assert [step for step, _ in logged] == list(range(1, len(logged) + 1)) and len(logged) > 1
    seen = _scalars(run.path / "tensorboard")["loss"]
    assert seen == [(step, pytest.approx(loss, rel=1e-6)) for step, loss in logged]


def test_a_resumed_run_shows_each_step_once_in_tensorboard(tmp_path: Path) -> None:
    run = _run(tmp_path, ["tensorboard"])
    for line in LINES:
        run.log(line)
    run.close()  # the process ends after step 3; its checkpoint was step 1
    run = _run(tmp_path, ["tensorboard"], resume=True)
    run.truncate_metrics(1)  # what Run.restore does
    for step in (2, 3):
        run.log({"step": step, "loss": 10.0 * step})
    run.close()
    assert _scalars(tmp_path / "r" / "tensorboard")["loss"] == [(1, 2.0), (2, 20.0), (3, 30.0)]


def test_a_run_that_logs_no_step_starts_no_tracker(tmp_path: Path) -> None:
    run = _run(tmp_path, ["tensorboard"])
    run.write_summary({"examples": 0})  # a data stage
    run.close()
    assert not (tmp_path / "r" / "tensorboard").exists()


class _Recorder:
    """A stand-in tracker run: what it was logged, and whether it was finished."""

    def __init__(self, **init: Any) -> None:
        self.init, self.lines, self.finished = init, [], False

    def log(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.lines.append((step, metrics))

    def finish(self) -> None:
        self.finished = True


@pytest.fixture
def fake_trackers(monkeypatch: pytest.MonkeyPatch) -> list[_Recorder]:
    """``wandb`` and ``trackio`` modules whose ``init`` returns a :class:`_Recorder`."""
    runs: list[_Recorder] = []

    def init(**kw: Any) -> _Recorder:
        runs.append(_Recorder(**kw))
        return runs[-1]

    for name in ("wandb", "trackio"):
        module = types.ModuleType(name)
        module.init = init
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    return runs


def test_wandb_and_trackio_get_the_same_lines(tmp_path: Path, fake_trackers: list) -> None:
    run = _run(tmp_path, ["wandb", "trackio"], project="exp")
    for line in LINES:
        run.log(line)
    run.write_summary({"steps": 3})
    wandb, trackio = fake_trackers
    assert wandb.init["mode"] == "offline" and wandb.init["dir"] == str(tmp_path / "r")
    assert wandb.init["project"] == trackio.init["project"] == "exp"
    assert wandb.init["name"] == trackio.init["name"] == "r"
    assert wandb.init["config"]["trackers"] == ["wandb", "trackio"]  # the run's config
    expected = [(1, {"loss": 2.0, "reward/total": 0.25}),
                (2, {"loss": 1.5, "reward/total": 0.5, "flat": 1.0}),
                (3, {"loss": 1.0, "reward/total": 0.75})]  # fmt: skip
    assert wandb.lines == trackio.lines == expected
    assert wandb.finished and trackio.finished  # closed with the summary


def test_wandb_mode_set_by_the_user_is_kept(
    tmp_path: Path, fake_trackers: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "online")
    run = _run(tmp_path, ["wandb"])
    run.log(LINES[0])
    assert "mode" not in fake_trackers[0].init  # wandb reads WANDB_MODE itself
    run.close()
    assert fake_trackers[0].finished


def test_a_tracker_not_installed_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb fails
    with pytest.raises(UserError, match=r"wandb needs the Python package 'wandb': pip install"):
        _run(tmp_path, ["tensorboard", "wandb"])
    assert not (tmp_path / "r").exists()  # refused before the run folder is made


def test_an_unknown_tracker_is_one_line_naming_it(capsys: pytest.CaptureFixture) -> None:
    assert main(["sft", "data.path=x.jsonl", "run.trackers=[tensorboard, mlflow]"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run.trackers" in err and "'mlflow'" in err
