"""Held-out evaluation before and after training, side by side.

``r1lab grpo`` evaluates the policy on its task's held-out split before and after RL when
the task has one (:func:`heldout_task`), and ``r1lab zero`` always does; both print and
report :func:`compare_table`, whose first row is the base's greedy pass@1: the strongest
single-decoding baseline a trained model must beat.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from r1lab.config import at_least, in_range, option, positive
from r1lab.data.tasks import TaskConfig

__all__ = ["COMPARED", "HEADLINE", "HeldoutConfig", "compare_table", "headline", "heldout_task"]

# Tasks with a split to train on and a held-out one to measure: the embedded worlds (split by
# operand pair or by spec), GSM8K (train and test sets) and MBPP (train and test splits).
HELDOUT_TASKS = ("embedded", "embedded-code", "gsm8k", "mbpp")


@dataclass
class HeldoutConfig:
    """The held-out evaluation around a GRPO run (the same problems before and after)."""

    problems: int = option(
        256,
        "held-out problems evaluated before and after training (0: none); only for tasks "
        f"with a held-out split ({', '.join(HELDOUT_TASKS)}), of the same task",
        check=at_least(0),
    )
    k: int = option(4, "samples per problem: pass@1 is their mean", report=64, check=at_least(1))
    greedy: bool = option(True, "also decode greedily (T = 0): greedy pass@1, the baseline")
    temperature: float = option(1.0, "sampling temperature", report=0.6, check=positive())
    top_p: float = option(
        1.0, "nucleus sampling (1.0: off)", report=0.95, check=in_range(0, 1, low_open=True)
    )
    max_new_tokens: int = option(256, "response length limit", report=32768, check=at_least(1))
    batch_size: int = option(64, "prompts per generate call", check=at_least(1))
    seed: int = option(0, "sampling seed")


def heldout_task(task: TaskConfig, problems: int) -> TaskConfig | None:
    """The held-out split of ``task`` with ``problems`` of them, or None when there is none
    (a jsonl file, a test set only) or ``problems`` is 0."""
    if not problems or task.name not in HELDOUT_TASKS or task.path:
        return None
    return replace(task, split="heldout", limit=problems, general=0)


def evaluate_heldout(
    model: Any, tokenizer: Any, problems: list, cfg: Any, task: TaskConfig, out: Path,
    label: str, k: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Held-out metrics of ``model``, cached in ``out`` (a resumed run does not redo them);
    the table is printed when they are new. ``cfg`` is a :class:`HeldoutConfig` (or
    ``r1lab zero``'s evaluation section, which has the same sampling fields); ``k`` replaces
    its samples per problem."""
    from r1lab.eval.evaluate import EvalConfig, evaluate_cached, format_table

    ecfg = EvalConfig(
        model=label,
        task=task,
        k=k or cfg.k,
        greedy=cfg.greedy,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
    )
    cached = out.is_file()
    record = evaluate_cached(model, tokenizer, problems, ecfg, out)
    if not cached:
        print(format_table(record))
    return record


COMPARED = (
    ("greedy_pass@1", "greedy pass@1 (T=0)"),
    ("pass@1", "pass@1 (T, mean of k)"),
    ("pass@4", "pass@4"),
    ("pass@16", "pass@16"),
    ("cons@16", "cons@16"),
    ("cons@4", "cons@4"),
    ("reflection_rate", "reflection share"),
    ("format_rate", "format rate"),
    ("language_consistency", "language consistency"),
    ("mean_tokens", "mean length (tokens)"),
    ("truncation_rate", "truncated"),
)

HEADLINE = ("greedy_pass@1", "pass@1", "pass@4", "pass@16", "cons@16")


def compare_table(base: dict[str, float], final: dict[str, float]) -> str:
    """Base and final metrics side by side, with the change ("-" where one side lacks the
    metric: the final model's fewer samples give no pass@16)."""
    rows = [f"| {'metric':<24} | {'base':>8} | {'final':>8} | {'change':>8} |"]
    rows.append(f"|{'-' * 26}|{'-' * 9}:|{'-' * 9}:|{'-' * 9}:|")
    for key, label in COMPARED:
        if key not in base and key not in final:
            continue
        b, f = base.get(key), final.get(key)
        fmt = "{:.1f}" if key == "mean_tokens" else "{:.3f}"
        cells = [fmt.format(v) if v is not None else "-" for v in (b, f)]
        change = "-" if b is None or f is None else ("+" if f >= b else "") + fmt.format(f - b)
        rows.append(f"| {label:<24} | {cells[0]:>8} | {cells[1]:>8} | {change:>8} |")
    return "\n".join(rows)


def headline(base: dict[str, float], final: dict[str, float]) -> dict[str, Any]:
    """The summary's flat keys: ``base_<m>``, ``final_<m>`` and ``gain_<m>`` of the headline
    metrics, and both sides' compared metrics under ``base`` and ``final``."""
    return {
        **{
            f"{who}_{key}": m[key]
            for key in HEADLINE
            for who, m in (("base", base), ("final", final))
            if key in m
        },
        **{
            f"gain_{key}": round(final[key] - base[key], 3)
            for key in HEADLINE
            if key in base and key in final
        },
        "heldout_problems": base["problems"],
        "base": {k: base[k] for k, _ in COMPARED if k in base},
        "final": {k: final[k] for k, _ in COMPARED if k in final},
    }
