"""The pipeline's report card: every model side by side, as Markdown and as bar charts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["ROWS", "pipeline_table", "write_pipeline_report"]

# (section, key, label) of each row; the section is where the metric is in a model's eval.
ROWS = (
    ("reasoning", "greedy_pass@1", "greedy pass@1 (T=0)"),
    ("reasoning", "pass@1", "pass@1 (T=1, mean of k)"),
    ("reasoning", "language_consistency", "language consistency"),
    ("reasoning", "format_rate", "format rate"),
    ("reasoning", "mean_tokens", "mean length (tokens)"),
    ("reasoning", "reflection_rate", "reflection share"),
    ("general", "helpfulness", "helpfulness (judge, 1-10)"),
    ("general", "true_helpfulness", "helpfulness (world, 1-10)"),
    ("general", "refusal_rate", "refusal rate, unsafe prompts"),
    ("general", "over_refusal", "refusal rate, safe prompts"),
    ("general", "greeting_cot", "greetings with a chain of thought"),
)
# The rows drawn as bar charts.
PLOTTED = ("greedy_pass@1", "pass@1", "language_consistency", "mean_tokens", "helpfulness",
           "refusal_rate")  # fmt: skip


def _models(done: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """label -> eval, in pipeline order."""
    return {label: ev for stage in done.values() for label, ev in stage.get("eval", {}).items()}


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if key in ("mean_tokens", "helpfulness", "true_helpfulness") else (
        f"{value:.3f}"
    )  # fmt: skip


def pipeline_table(done: dict[str, Any]) -> str:
    """The models of the stages ``done`` as a Markdown table, one column per model."""
    models = _models(done)
    head = "| metric | " + " | ".join(models) + " |"
    rule = "|---|" + "---:|" * len(models)
    rows = [head, rule]
    for section, key, label in ROWS:
        cells = [_cell(key, ev[section].get(key)) for ev in models.values()]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _plot(models: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {key: (section, label) for section, key, label in ROWS}
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    for ax, key in zip(axes.flat, PLOTTED, strict=True):
        section, label = labels[key]
        values = [ev[section].get(key) or 0.0 for ev in models.values()]
        ax.bar(list(models), values, color="#4c72b0")
        ax.set_title(label, fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
        for i, v in enumerate(values):
            ax.annotate(_cell(key, v), (i, v), ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_pipeline_report(out: Path, done: dict[str, Any]) -> Path:
    """``report.md`` and ``report.png`` in ``out`` for the stages ``done``; returns the path."""
    lines = ["# r1lab pipeline: the R1 recipe on the embedded world", ""]
    models = _models(done)
    if models:
        lines += [
            "Held-out problems (the same for every model) and held-out general prompts; "
            "each column is the model after that stage.",
            "",
            pipeline_table(done),
            "",
            "![every stage side by side](report.png)",
            "",
        ]
        _plot(models, out / "report.png")
    if done.get("stage-d", {}).get("rm_scores"):
        scores = done["stage-d"]["rm_scores"]
        keys = list(next(iter(scores.values())))
        lines += ["## Stage D: the reward models' view", "",
                  "Mean normalised reward (0-1) of the greedy responses to the held-out general "
                  "prompts.", "", "| reward | " + " | ".join(scores) + " |",
                  "|---|" + "---:|" * len(scores)]  # fmt: skip
        lines += [f"| {k} | " + " | ".join(f"{v[k]:.3f}" for v in scores.values()) + " |"
                  for k in keys]  # fmt: skip
        lines.append("")
    for stage in ("rm-helpfulness", "rm-safety"):
        metrics = done.get(stage, {}).get("metrics")
        if metrics:
            shown = ", ".join(f"{k} {v}" for k, v in metrics.items())
            lines += [f"Reward model {stage} on held-out data: {shown}.", ""]
    students = done.get("distill", {}).get("students")
    if students:
        lines += ["## Distillation", "",
                  f"The student: greedy pass@1 {students['student_greedy_pass@1']:.3f} as a base; "
                  f"distilled from R1 {students['distilled_greedy_pass@1']:.3f} "
                  f"({students['distill_seconds']:.0f} s of sampling and SFT); by R1-Zero RL "
                  f"alone for the same time {_cell('x', students.get('rl_greedy_pass@1'))} "
                  f"({students.get('rl_steps')} steps).", ""]  # fmt: skip
    lines += ["## Stages", "", "| stage | minutes | output |", "|---|---:|---|"]
    for stage, result in done.items():
        output = result.get("data") or result.get("model") or ""
        lines.append(f"| {stage} | {result['minutes']:.1f} | {output} |")
    lines.append(f"| all | {sum(r['minutes'] for r in done.values()):.1f} | |")
    for stage, result in done.items():
        if result.get("funnel"):
            lines += ["", f"## {stage}: filters", "", "| filter | in | out |", "|---|---:|---:|"]
            lines += [f"| {k} | {v['in']} | {v['out']} |" for k, v in result["funnel"].items()]
        if result.get("judge"):
            stats = ", ".join(f"{k} {v}" for k, v in result["judge"].items())
            lines += ["", f"Judge requests of {stage}: {stats}."]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(pipeline_table(done) if models else "")
    return path
