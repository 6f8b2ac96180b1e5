"""The human-readable end of a run: ``runs/<name>/report.md`` with PNG plots of its metrics
over steps and the summary, as nanochat's report card does for its pipeline."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # a type only: r1lab report plots without importing torch
    from r1lab.runs import Run

__all__ = ["GRPO_PANELS", "Panel", "format_value", "moving_average", "plot_metrics", "write_report"]

# (file stem, title, metric keys; a key ending in "/" takes every metric with that prefix)
Panel = tuple[str, str, Sequence[str]]

GRPO_PANELS: list[Panel] = [
    ("rewards", "rewards (mean per step)", ["reward/"]),
    ("quality", "accuracy, format rate, language consistency", [
        "accuracy", "format_rate", "language_consistency",
    ]),
    ("length", "response length (tokens)", ["response_len_mean", "response_len_max"]),
    ("reflection", "share of responses that reflect (Wait, ...)", ["reflection_rate"]),
    ("truncated", "share of truncated responses", ["truncated"]),
    ("kl", "KL(π_θ ‖ π_ref), k3 estimate", ["kl"]),
    ("entropy", "entropy per token (nats)", ["entropy"]),
    ("clip", "clip fraction", ["clip_frac", "clip_frac_low", "clip_frac_high"]),
    ("grad_norm", "gradient norm (before clipping)", ["grad_norm"]),
    ("lr", "learning rate", ["lr"]),
    ("speed", "seconds per step", ["step_seconds"]),
    ("throughput", "tokens per second", ["gen_tokens_per_s", "tokens_per_s"]),
]  # fmt: skip


def _keys(metrics: list[dict[str, Any]], wanted: Sequence[str]) -> list[str]:
    present: list[str] = []
    for m in metrics:
        for k in m:
            if k not in present:
                present.append(k)
    out = []
    for w in wanted:
        out += [k for k in present if k.startswith(w)] if w.endswith("/") else [w] * (w in present)
    return out


def moving_average(ys: Sequence[float], window: int) -> list[float]:
    """The mean of each value and the ``window - 1`` before it (fewer at the start)."""
    return [
        sum(ys[max(0, i - window + 1) : i + 1]) / len(ys[max(0, i - window + 1) : i + 1])
        for i in range(len(ys))
    ]


def plot_metrics(
    metrics: list[dict[str, Any]], folder: Path, panels: Sequence[Panel]
) -> list[tuple[str, Path]]:
    """One PNG per panel that has data, under ``folder``; returns (title, path) pairs.

    Each series is drawn raw (faint) and as a moving average over ~5% of the steps.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    window = max(1, len(metrics) // 20)
    for stem, title, wanted in panels:
        keys = _keys(metrics, wanted)
        if not keys:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.2))
        for key in keys:
            pts = [(m["step"], m[key]) for m in metrics if key in m and m[key] is not None]
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            (line,) = ax.plot(xs, ys, alpha=0.3 if window > 1 else 1.0, linewidth=1)
            if window > 1:
                smooth = moving_average(ys, window)
                ax.plot(xs, smooth, color=line.get_color(), linewidth=1.8, label=key)
            else:
                line.set_label(key)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = folder / f"{stem}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append((title, path))
    return out


def _flat(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for k, v in d.items():
        if k == "config":
            continue
        if isinstance(v, dict):
            rows += _flat(v, f"{prefix}{k}.")
        elif not isinstance(v, list):
            rows.append((f"{prefix}{k}", v))
    return rows


def format_value(v: Any) -> str:
    """A table cell: floats to 4 significant digits."""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_report(
    run: Run,
    summary: dict[str, Any],
    title: str,
    panels: Sequence[Panel] = GRPO_PANELS,
    sections: Sequence[str] = (),
) -> Path:
    """Write ``report.md`` (summary table, extra markdown ``sections``, plots) in the run
    folder and the plots under ``plots/``; returns the report's path."""
    plots = plot_metrics(run.metrics(), run.path / "plots", panels)
    lines = [f"# {title}", "", f"Run folder: `{run.path}`", ""]
    lines += list(sections)
    lines += ["## Summary", "", "| key | value |", "|---|---|"]
    lines += [f"| {k} | {format_value(v)} |" for k, v in _flat(summary)]
    lines += ["", "## Metrics over steps", ""]
    for t, path in plots:
        lines += [f"### {t}", "", f"![{t}]({path.relative_to(run.path).as_posix()})", ""]
    if "config" in summary:
        lines += ["## Config", "", "```json", json.dumps(summary["config"], indent=1), "```", ""]
    path = run.path / "report.md"
    tmp = path.with_name("report.md.tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    tmp.replace(path)
    return path
