"""``r1lab report RUN [RUN ...]``: curves overlaid in a PNG, final metrics side by side.

The runs are written by hand (metrics.jsonl, summary.json): no training is needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1lab.cli import main
from r1lab.tracking.report import load_run, plotted_metrics


def _write_run(folder: Path, scale: float, steps: int = 30, summary: bool = True) -> Path:
    folder.mkdir(parents=True)
    with open(folder / "metrics.jsonl", "w", encoding="utf-8") as f:
        for s in range(1, steps + 1):
            line = {"step": s, "lr": 1e-5, "loss": scale / s, "kl": 0.001 * s,
                    "reward/total": 1 - scale / s, "response_len_mean": 20.0 + s,
                    "sample": "text"}  # fmt: skip
            f.write(json.dumps(line) + "\n")
    if summary:
        (folder / "summary.json").write_text(
            json.dumps(
                {
                    "stage": "grpo",
                    "steps": steps,
                    "greedy_pass@1": 0.5 * scale,
                    "last": {"kl": 0.03},
                    "model": "final",
                }
            )  # fmt: skip
        )
    return folder


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    return _write_run(tmp_path / "runs" / "base", 1.0), _write_run(tmp_path / "runs" / "lr2", 0.5)


def test_report_compares_two_runs(
    runs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(runs[0]), str(runs[1])]) == 0
    md = (tmp_path / "report.md").read_text()  # the default output, in the current folder
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "# Runs compared: base, lr2" in md and "![metrics of base, lr2](report.png)" in md
    assert "| metric | base | lr2 |" in md
    assert "| loss | 0.03333 | 0.01667 |" in md  # the last value of each
    assert "| greedy_pass@1 | 0.5 | 0.25 |" in md  # a number at the top of summary.json
    assert "sample" not in md and "| model |" not in md  # text is not a metric


def test_the_main_metrics_come_first(runs: tuple[Path, Path]) -> None:
    keys = plotted_metrics([load_run(r) for r in runs])
    assert keys == ["reward/total", "loss", "kl", "response_len_mean", "lr"]


def test_an_existing_report_is_kept_unless_overwrite(
    runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out" / "cmp.md"
    args = ["report", *map(str, runs), f"output={out}"]
    assert main(args) == 0 and (tmp_path / "out" / "cmp.png").is_file()
    out.write_text("mine")
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cmp.md: exists" in err and "overwrite=true" in err
    assert out.read_text() == "mine"
    assert main([*args, "overwrite=true"]) == 0
    assert out.read_text().startswith("# Runs compared")


def test_a_run_folder_with_an_equals_sign_is_a_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _write_run(tmp_path / "lr=1e-4", 1.0, summary=False)  # a run still training: no summary
    assert main(["report", "lr=1e-4", "output=one.md"]) == 0
    assert "# Runs compared: lr=1e-4" in (tmp_path / "one.md").read_text()


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda tmp: tmp / "runs" / "missing", "runs/missing: no such run folder"),
        (lambda tmp: _mkdir(tmp / "runs" / "empty"), "runs/empty/metrics.jsonl: not found"),
    ],
)
def test_a_missing_run_is_one_line_naming_it(
    make, named: str, runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["report", str(runs[0]), str(make(tmp_path)), f"output={tmp_path}/r.md"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("r1lab: error: ") and named in err
    assert not (tmp_path / "r.md").exists()


def _mkdir(folder: Path) -> Path:
    folder.mkdir(parents=True)
    return folder


def test_no_runs_and_an_unknown_metric_are_errors(
    runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["report"]) == 2
    assert "no runs to compare" in capsys.readouterr().err
    assert main(["report", str(runs[0]), "metrics=[los]", f"output={tmp_path}/r.md"]) == 2
    assert "no run logged 'los'" in capsys.readouterr().err


def test_help_explains_the_runs_and_every_option(capsys: pytest.CaptureFixture) -> None:
    assert main(["report", "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: r1lab report" in out and "RUN [RUN ...]" in out
    for key in ("runs = []", "output = 'report.md'", "overwrite = False", "metrics = []"):
        assert key in out
