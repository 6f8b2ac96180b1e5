"""``r1lab pipeline`` on a tiny world: stages in their folders, skipped when done, resumed when
killed, one report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from r1lab.cli import main
from r1lab.config import load_config
from r1lab.stages.pipeline import PipelineConfig, run_pipeline
from r1lab.stages.pipeline_report import pipeline_table

REPO = Path(__file__).resolve().parents[2]

TINY = [
    "zero.pretrain.corpus.conversations=60",
    "zero.pretrain.corpus.worked_examples=20",
    "zero.pretrain.corpus.fact_lines=20",
    "zero.pretrain.vocab_size=300",
    "zero.pretrain.model.hidden_size=32",
    "zero.pretrain.model.num_layers=2",
    "zero.pretrain.model.intermediate_size=64",
    "zero.task.limit=16",
    "zero.grpo.steps=4",
    "zero.grpo.minibatches=1",
    "zero.grpo.prompts_per_step=4",
    "zero.grpo.group_size=4",
    "zero.grpo.max_new_tokens=12",
    "zero.grpo.device=cpu",
    "zero.rewards.workers=0",
    "zero.eval.task.limit=8",
    "zero.eval.k=2",
    "zero.eval.final_k=2",
    "zero.eval.max_new_tokens=12",
    "coldstart.task.limit=8",
    "coldstart.sampling.k=2",
    "coldstart.sampling.max_new_tokens=12",
    "general_eval.prompts=5",
    "general_eval.max_new_tokens=12",
    "save_every=1",
    "until=coldstart",
]


def _figures(out: Path) -> dict:
    """What the report shows: every model's metrics, and the data stages' counts."""
    stages = json.loads((out / "pipeline.json").read_text())["stages"]
    figures = {}
    for name, result in stages.items():
        figures[name] = {k: v for k, v in result.items() if k not in ("minutes", "model", "data")}
        for ev in figures[name].get("eval", {}).values():
            ev.pop("model")  # a path under the run's own folder
    return figures


def test_pipeline_runs_stages_in_their_folders_then_skips_them(tmp_path, capsys):
    out = tmp_path / "p"
    cfg = load_config(PipelineConfig, None, [*TINY, f"output_dir={out}"])
    run_pipeline(cfg)
    for stage in ("pretrain", "zero", "coldstart"):
        assert (out / stage / "summary.json").is_file()
    assert (out / "coldstart" / "coldstart.jsonl").is_file()
    figures = _figures(out)
    assert list(figures) == ["pretrain", "zero", "coldstart"]
    models = figures["zero"]["eval"]
    assert list(models) == ["base", "R1-Zero"]
    for ev in models.values():
        assert ev["reasoning"]["problems"] == 8
        assert ev["general"]["prompts"] == 5
        assert 1.0 <= ev["general"]["helpfulness"] <= 10.0
    assert "sampled" in figures["coldstart"]["funnel"]
    report = (out / "report.md").read_text()
    assert "| greedy pass@1 (T=0) |" in report and "| base | R1-Zero |" in report
    assert "## coldstart: filters" in report and (out / "report.png").is_file()
    capsys.readouterr()

    run_pipeline(cfg)  # everything is done: nothing runs again
    said = capsys.readouterr().out
    assert all(f"pipeline: {s} is done" in said for s in ("pretrain", "zero", "coldstart"))
    assert _figures(out) == figures


def test_pipeline_table_puts_models_side_by_side():
    ev = {"reasoning": {"greedy_pass@1": 0.5, "mean_tokens": 40.0}, "general": {}}
    table = pipeline_table({"zero": {"eval": {"base": ev, "R1-Zero": ev}}})
    assert table.splitlines()[0] == "| metric | base | R1-Zero |"
    assert "| greedy pass@1 (T=0) | 0.500 | 0.500 |" in table
    assert "| mean length (tokens) | 40.0 | 40.0 |" in table
    assert "| helpfulness (judge, 1-10) | - | - |" in table


def test_an_unknown_until_is_a_one_line_error(tmp_path, capsys):
    assert main(["pipeline", f"output_dir={tmp_path}", "until=stage-z"]) == 2
    assert "until: expected one of pretrain, zero" in capsys.readouterr().err
    assert not (tmp_path / "pipeline.json").exists()


SCRIPT = r"""
import os, sys, time
import r1lab.runs
if os.environ.get("PAUSE_AFTER_STEP"):  # a window to kill the run in, mid-GRPO
    log = r1lab.runs.Run.log
    def slow_log(self, record):
        log(self, record)
        if "rollout" in record:
            time.sleep(float(os.environ["PAUSE_AFTER_STEP"]))
    r1lab.runs.Run.log = slow_log
from r1lab.cli import main
if __name__ == "__main__":
    sys.exit(main(["pipeline", *sys.argv[1:]]))
"""


def _launch(out: Path, pause: str = "") -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PAUSE_AFTER_STEP": pause}
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, *TINY, f"output_dir={out}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.slow
def test_pipeline_killed_during_rl_resumes_to_the_same_figures(tmp_path):
    whole = _launch(tmp_path / "whole")
    assert whole.wait(timeout=600) == 0, whole.stderr.read()

    cut = tmp_path / "cut"
    proc = _launch(cut, pause="2")
    metrics = cut / "zero" / "metrics.jsonl"
    deadline = time.time() + 300
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 2):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    done = json.loads((cut / "pipeline.json").read_text())["stages"]
    assert list(done) == ["pretrain"]  # killed in zero's GRPO, after its checkpoint of step 1

    again = _launch(cut)
    assert again.wait(timeout=600) == 0, again.stderr.read()
    assert "resuming" in again.stderr.read()
    assert _figures(cut) == _figures(tmp_path / "whole")


def test_the_stage_d_recipe_is_the_pipelines_stage_d():
    from r1lab.config import to_dict
    from r1lab.stages.pipeline import _stage_d
    from r1lab.training.grpo_config import GRPOStageConfig

    recipe = load_config(GRPOStageConfig, REPO / "recipes" / "stage-d.yaml", [])
    pipeline = _stage_d(PipelineConfig(), {})
    assert to_dict(recipe.task) == to_dict(pipeline.task)
    assert to_dict(recipe.grpo) == to_dict(pipeline.grpo)
    assert to_dict(recipe.loss) == to_dict(pipeline.loss)
    assert to_dict(recipe.rewards) == to_dict(pipeline.rewards)
    assert recipe.model == pipeline.model
