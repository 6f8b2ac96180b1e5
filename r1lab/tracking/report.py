"""``r1lab report RUN [RUN ...]``: runs compared in one Markdown file and one PNG beside it.

The PNG overlays each run's curve of every metric the runs have in common, one panel per
metric, the main ones first (reward, loss, KL, accuracy and pass@k, response length). The
Markdown sets the final numbers side by side: the last logged value of each metric, and every
number at the top level of each run's ``summary.json`` (greedy pass@1, steps, minutes, ...).
Only the run folders are read: no model is loaded, and a run still training can be compared.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1lab.config import option
from r1lab.errors import UserError

__all__ = [
    "ReportConfig",
    "RunRecord",
    "load_run",
    "plotted_metrics",
    "run_report",
    "write_comparison",
]

# The main metrics, in the order their panels come: (key, match) where match is "exact",
# "prefix" or "contains"; every other metric follows in the order the runs logged it.
MAIN = (
    ("reward/total", "exact"),
    ("reward", "exact"),
    ("reward/", "prefix"),
    ("loss", "prefix"),
    ("kl", "prefix"),
    ("accuracy", "prefix"),
    ("pass@", "contains"),
    ("response_len", "prefix"),
)


@dataclass
class ReportConfig:
    """``r1lab report``: compare run folders (their metrics.jsonl and summary.json)."""

    runs: list[str] = option(
        [],
        "run folders to compare, each with a metrics.jsonl (the command's bare arguments: "
        "r1lab report runs/a runs/b)",
    )
    output: str = option(
        "report.md", "the Markdown file to write; the plot goes beside it as <name>.png"
    )
    overwrite: bool = option(False, "replace the output (and its PNG) when it exists")
    metrics: list[str] = option(
        [],
        "metrics to plot, in this order (empty: every metric all the runs logged, the main "
        "ones first)",
    )


@dataclass
class RunRecord:
    """What a report reads of one run folder."""

    label: str
    path: Path
    metrics: list[dict[str, Any]]
    summary: dict[str, Any]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``metrics.jsonl``; a cut last line (a run writing it) is left out."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            if n == len(lines):
                break
            raise UserError(f"{path}:{n}: not a line of JSON") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{n}: not a JSON object")
        rows.append(row)
    return rows


def load_run(folder: str | Path, label: str | None = None) -> RunRecord:
    """Read a run folder; a one-line error names a missing folder or ``metrics.jsonl``."""
    path = Path(folder)
    if not path.is_dir():
        raise UserError(f"{path}: no such run folder")
    metrics_file = path / "metrics.jsonl"
    if not metrics_file.is_file():
        raise UserError(f"{metrics_file}: not found (not a run folder, or it has logged no step)")
    summary: dict[str, Any] = {}
    summary_file = path / "summary.json"
    if summary_file.is_file():
        try:
            loaded = json.loads(summary_file.read_text(encoding="utf-8"))
        except ValueError as e:
            raise UserError(f"{summary_file}: not valid JSON ({e})") from None
        summary = loaded if isinstance(loaded, dict) else {}
    return RunRecord(label or path.name, path, _read_lines(metrics_file), summary)


def _labels(folders: list[str]) -> list[str]:
    """Each run's folder name; the path as given where two runs share a name."""
    names = [Path(f).name or str(f) for f in folders]
    return [n if names.count(n) == 1 else str(f) for n, f in zip(names, folders, strict=True)]


def _keys(run: RunRecord) -> list[str]:
    """The metrics of a run that are numbers, in the order it first logged them."""
    keys: dict[str, None] = {}
    for row in run.metrics:
        keys.update({k: None for k, v in row.items() if k != "step" and _is_number(v)})
    return list(keys)


def _rank(key: str) -> int:
    for i, (main, match) in enumerate(MAIN):
        if (
            (match == "exact" and key == main)
            or (match == "prefix" and key.startswith(main))
            or (match == "contains" and main in key)
        ):
            return i
    return len(MAIN)


def _ordered(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda k: (_rank(k), keys.index(k)))


def plotted_metrics(runs: list[RunRecord], chosen: list[str] | None = None) -> list[str]:
    """The metrics a report plots: ``chosen`` (each logged by some run), else every metric
    that all of the runs logged, the main ones first."""
    per_run = [_keys(r) for r in runs]
    if chosen:
        logged = {k for keys in per_run for k in keys}
        for key in chosen:
            if key not in logged:
                raise UserError(f"metrics: no run logged '{key}' as a number")
        return list(dict.fromkeys(chosen))
    common = [k for k in per_run[0] if all(k in keys for keys in per_run[1:])]
    return _ordered(common)


def _last(run: RunRecord, key: str) -> Any:
    for row in reversed(run.metrics):
        if _is_number(row.get(key)):
            return row[key]
    return None


def _cell(v: Any) -> str:
    from r1lab.training.report import format_value

    return "-" if v is None else format_value(v)


def _table(head: str, runs: list[RunRecord], rows: list[tuple[str, list[Any]]]) -> list[str]:
    lines = [f"| {head} | " + " | ".join(r.label for r in runs) + " |"]
    lines.append("|---|" + "---:|" * len(runs))
    lines += [f"| {key} | " + " | ".join(_cell(v) for v in values) + " |" for key, values in rows]
    return lines


def _plot(runs: list[RunRecord], keys: list[str], path: Path) -> None:
    """One panel per metric, every run's curve in it: raw (faint) and a moving average."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from r1lab.training.report import moving_average

    cols = min(len(keys), 3 if len(keys) <= 9 else 4)
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 2.9 * rows + 0.5), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key in zip(axes.flat, keys, strict=False):
        for i, run in enumerate(runs):
            pts = [
                (row.get("step", n), row[key])
                for n, row in enumerate(run.metrics, 1)
                if _is_number(row.get(key))
            ]
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            color = colors[i % len(colors)]
            window = max(1, len(ys) // 20)
            if window > 1:
                ax.plot(xs, ys, color=color, alpha=0.25, linewidth=1)
                ys = moving_average(ys, window)
            ax.plot(xs, ys, color=color, linewidth=1.6, label=run.label)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    handles = [plt.Line2D([], [], color=colors[i % len(colors)]) for i in range(len(runs))]
    fig.legend(handles, [r.label for r in runs], loc="upper center", ncol=min(len(runs), 6))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    tmp = path.with_name(f".tmp-{path.name}")
    fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    tmp.replace(path)


def _outputs(cfg: ReportConfig) -> tuple[Path, Path]:
    """The Markdown and PNG paths, refused when they exist (without ``overwrite``)."""
    md = Path(cfg.output)
    if md.suffix.lower() == ".png":
        raise UserError(f"output: {md} is the plot's name; give the Markdown file, e.g. report.md")
    png = md.with_suffix(".png")
    for path in (md, png):
        if path.is_dir():
            raise UserError(f"{path}: is a folder; give a file name with output=<name>.md")
        if path.exists() and not cfg.overwrite:
            raise UserError(
                f"{path}: exists; pass overwrite=true to replace it, or output=<other>.md"
            )
    return md, png


def write_comparison(runs: list[RunRecord], keys: list[str], md: Path, png: Path) -> None:
    """Write the Markdown report of ``runs`` at ``md``, with the curves of ``keys`` at ``png``."""
    names = ", ".join(r.label for r in runs)
    lines = [f"# Runs compared: {names}", ""]
    lines += ["| run | folder | stage | lines | last step |", "|---|---|---|---:|---:|"]
    for r in runs:
        step = r.metrics[-1].get("step", len(r.metrics)) if r.metrics else None
        stage = r.summary.get("stage", "-")
        lines.append(f"| {r.label} | `{r.path}` | {stage} | {len(r.metrics)} | {_cell(step)} |")
    lines += ["", "## Metrics over steps", ""]
    if keys:
        md.parent.mkdir(parents=True, exist_ok=True)
        _plot(runs, keys, png)
        lines += [
            f"{len(keys)} metrics; each run's curve raw (faint) and as a moving average over "
            "about 5% of its steps.",
            "",
            f"![metrics of {names}]({png.name})",
            "",
        ]
    else:
        lines += ["The runs have no metric in common; choose some with metrics=[a, b].", ""]
    per_run = [_keys(r) for r in runs]
    every = _ordered(list(dict.fromkeys(k for keys_ in per_run for k in keys_)))
    lines += ["## Final metrics", "", "The last logged value of each metric.", ""]
    lines += _table("metric", runs, [(k, [_last(r, k) for r in runs]) for k in every])
    top = list(
        dict.fromkeys(k for r in runs for k, v in r.summary.items() if _is_number(v))
    )  # fmt: skip
    if top:
        lines += ["", "### summary.json", "", "The numbers at the top level of each summary.", ""]
        lines += _table("key", runs, [(k, [r.summary.get(k) for r in runs]) for k in top])
    tmp = md.with_name(f".tmp-{md.name}")
    md.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(md)


def run_report(cfg: ReportConfig) -> dict[str, Any]:
    """Read the runs, write the report and its plot; returns what was written."""
    if not cfg.runs:
        raise UserError("no runs to compare: r1lab report RUN [RUN ...] (run folders)")
    runs = [load_run(f, label) for f, label in zip(cfg.runs, _labels(cfg.runs), strict=True)]
    md, png = _outputs(cfg)
    keys = plotted_metrics(runs, cfg.metrics)
    write_comparison(runs, keys, md, png)
    shown = f"{md} and {png}" if keys else str(md)
    print(f"report: {shown} ({len(runs)} runs, {len(keys)} metrics plotted)")
    return {"report": str(md), "plot": str(png) if keys else None, "metrics": keys}
