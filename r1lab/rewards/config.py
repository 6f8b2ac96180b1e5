"""Which rewards make up a run's total, with their weights, and how the pool evaluates them.

The pool itself (:mod:`r1lab.rewards.pool`) runs them; this module is only the recipe's side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from r1lab.config import at_least, one_of, option, positive, validate
from r1lab.errors import UserError
from r1lab.rewards.base import get_reward

__all__ = ["RewardSpec", "RewardsConfig", "check_rewards"]


@dataclass
class RewardSpec:
    """One reward of the total: ``total = Σ weight · reward``."""

    name: str  # a registered name ("accuracy") or a dotted path to user code ("pkg.mod:fn")
    weight: float = 1.0
    inline: bool = False  # run in the trainer's process at submit: no IPC, but no time limit


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
    start_method: str = option(
        "forkserver",
        "how workers start: forkserver (quick restarts; workers do not inherit the trainer's "
        "memory) or spawn; forkserver falls back to spawn where the platform lacks it",
        check=one_of("forkserver", "spawn"),
    )

    def specs(self) -> list[RewardSpec]:
        return [
            RewardSpec(name, float(weight), inline=name in self.inline)
            for name, weight in self.weights.items()
        ]


def check_rewards(cfg: RewardsConfig) -> None:
    """Raise a one-line :class:`UserError` unless every reward of ``cfg`` is found (a
    registered name or an importable dotted path) and every weight is a finite number."""
    validate(cfg)
    for name, weight in cfg.weights.items():
        if not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise UserError(f"rewards.weights.{name}: expected a finite number, got {weight!r}")
    for name in [*cfg.weights, *cfg.metrics]:
        get_reward(name)
