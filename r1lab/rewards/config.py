"""Which rewards make up a run's total, with their weights, and how the pool evaluates them.

The pool itself (:mod:`r1lab.rewards.pool`) runs them; this module is only the recipe's side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from r1lab.config import at_least, one_of, option, positive, validate
from r1lab.errors import UserError
from r1lab.rewards.base import get_reward

__all__ = [
    "RewardSpec",
    "RewardsConfig",
    "active_rewards",
    "check_rewards",
    "check_rewards_fit",
    "in_span",
    "schedule_range",
    "span_steps",
]


@dataclass
class RewardSpec:
    """One reward of the total: ``total = Σ weight · reward``."""

    name: str  # a registered name ("accuracy") or a dotted path to user code ("pkg.mod:fn")
    weight: float = 1.0
    inline: bool = False  # run in the trainer's process at submit: no IPC, but no time limit
    tasks: tuple[str, ...] = ()  # score only the samples of these tasks (empty: all)


@dataclass
class RewardsConfig:
    """Which rewards make up the total, and how they are evaluated."""

    weights: dict[str, float] = option(
        {"accuracy": 1.0, "format": 1.0},
        "reward -> weight in the total; a reward is a registered name (accuracy, format, "
        "language) or a dotted path to user code (pkg.mod:fn). R1-Zero: accuracy + format; "
        "stage B adds language",
    )
    inline: list[str] = option(
        ["format", "language"],
        "rewards run in the trainer's process when a batch is submitted, without a time "
        "limit: cheap checks where shipping samples to a worker costs more than the check",
    )
    metrics: list[str] = option(
        ["accuracy", "format", "language"],
        "rewards always scored (at weight 0 when not in weights) so that accuracy, format "
        "rate and language consistency are in the metrics",
    )
    workers: int = option(
        2, "worker processes for the other rewards; 0 runs every reward inline", check=at_least(0)
    )
    timeout_s: float = option(
        60.0,
        "time limit for one reward on one chunk in a worker; past it the worker is killed and "
        "replaced and the chunk's samples fail for that reward (left out of training)",
        check=positive(),
    )
    chunk_size: int = option(
        8,
        "samples per worker task: the unit of parallelism, and what a failure or timeout fails",
        check=at_least(1),
    )
    only: dict[str, list[str]] = option(
        {},
        "reward -> the tasks whose prompts it scores (a problem's meta task: embedded, "
        "general, gsm8k, ...); on other prompts it is exactly 0 and not computed. Stage D: "
        "{accuracy: [embedded], helpfulness: [general]}",
    )
    schedule: dict[str, list[float]] = option(
        {},
        "reward -> [start, end): when it is on, in optimizer steps, or as fractions of "
        "grpo.steps when both numbers are <= 1; a rollout starting after s steps computes it "
        "when start <= s < end, and off it is exactly 0 and not computed (rewards not named "
        "are always on)",
        report={"helpfulness": [1300, 1700], "safety": [1300, 1700]},
    )
    models: dict[str, str] = option(
        {},
        "reward -> reward model folder (r1lab rm), scored by the inference module in the "
        "trainer's process: helpfulness reads the answer part, safety the whole response; "
        "its reward is the normalised score in (0, 1) (r1lab.inference.reward_model)",
    )
    start_method: str = option(
        "forkserver",
        "how workers start: forkserver (quick restarts; workers do not inherit the trainer's "
        "memory) or spawn; forkserver falls back to spawn where the platform lacks it",
        check=one_of("forkserver", "spawn"),
    )

    def specs(self) -> list[RewardSpec]:
        """The rule rewards of the total (reward models are the inference module's)."""
        return [
            RewardSpec(name, float(weight), name in self.inline, tuple(self.only.get(name, ())))
            for name, weight in self.weights.items()
            if name not in self.models
        ]


def span_steps(span: list[float], steps: int) -> tuple[int, int]:
    """A schedule's ``[start, end]`` as steps out of ``steps``: fractions of the run when both
    are <= 1, else step numbers."""
    start, end = span
    if start <= 1 and end <= 1:
        return round(start * steps), round(end * steps)
    return int(start), int(end)


def in_span(span: list[float], step: int, steps: int) -> bool:
    """Whether a rollout starting after ``step`` of ``steps`` steps is in ``span``."""
    start, end = span_steps(span, steps)
    return start <= step < end


def schedule_range(cfg: RewardsConfig, name: str, steps: int) -> tuple[int, int]:
    """The steps ``[start, end)`` in which reward ``name`` is on, out of ``steps``."""
    return span_steps(cfg.schedule[name], steps) if name in cfg.schedule else (0, steps)


def active_rewards(cfg: RewardsConfig, step: int, steps: int) -> set[str]:
    """The rewards (rule rewards, reward models and metrics) on for a rollout that starts
    after ``step`` of ``steps`` steps."""
    names = {*cfg.weights, *cfg.metrics, *cfg.models}
    return {n for n in names if (r := schedule_range(cfg, n, steps))[0] <= step < r[1]}


def check_rewards(cfg: RewardsConfig, check_models: bool = True) -> None:
    """Raise a one-line :class:`UserError` unless every reward of ``cfg`` is found (a
    registered name or an importable dotted path) and every weight is a finite number."""
    validate(cfg)
    for name, weight in cfg.weights.items():
        if not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise UserError(f"rewards.weights.{name}: expected a finite number, got {weight!r}")
    for name, span in cfg.schedule.items():
        if name not in {*cfg.weights, *cfg.metrics, *cfg.models}:
            raise UserError(f"rewards.schedule.{name}: no such reward in rewards.weights")
        if (
            len(span) != 2
            or not all(isinstance(v, (int, float)) for v in span)
            or not (0 <= span[0] < span[1])
        ):
            raise UserError(
                f"rewards.schedule.{name}: expected [start, end] with 0 <= start < end, got {span!r}"
            )
    for name, tasks in cfg.only.items():
        if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
            raise UserError(f"rewards.only.{name}: expected a list of task names, got {tasks!r}")
    for name, folder in cfg.models.items():
        if name not in cfg.weights:
            raise UserError(f"rewards.models.{name}: give the reward a weight in rewards.weights")
        if check_models:
            from r1lab.models import check_model_dir  # lazy: reward workers import this module

            check_model_dir(folder)
    for name in [*cfg.weights, *cfg.metrics]:
        if name not in cfg.models:
            get_reward(name)


CODE_REWARDS = ("code", "code_partial")


def check_rewards_fit(cfg: RewardsConfig, problems: list) -> None:
    """Refuse a code reward on a task without tests: it would score every sample 0 and teach
    nothing, silently."""
    for name in CODE_REWARDS:
        if cfg.weights.get(name) and not any(p.meta.get("tests") for p in problems):
            raise UserError(
                f"rewards.weights.{name}: no problem of this task has tests, so the {name} "
                "reward would score every sample 0; use a code task (task.name=humaneval, "
                "mbpp, embedded-code, or jsonl with a tests field)"
            )
