"""Learning-rate schedule: linear warm-up to ``lr_max``, then cosine decay to ``lr_min``.

The R1 report's SFT stages decay the learning rate from 5e-5 to 5e-6 on a cosine. Steps are
optimizer steps counted from 0. The ramp ends at the peak: steps ``0 .. w`` rise linearly
as ``lr_max * (s + 1) / (w + 1)``, so there are exactly ``w`` steps below the peak and step
``w`` trains at ``lr_max``. The cosine then runs from step ``w`` to the last step
``total - 1``, which trains at exactly ``lr_min`` (no step is spent at a rate that the
schedule never uses).
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["cosine_lr", "cosine_schedule", "warmup_steps_for"]


def cosine_lr(
    step: int, total_steps: int, lr_max: float, lr_min: float, warmup_steps: int
) -> float:
    """The learning rate of optimizer step ``step`` (0-based) of ``total_steps``."""
    if step < warmup_steps:
        return lr_max * (step + 1) / (warmup_steps + 1)
    decay_steps = total_steps - 1 - warmup_steps
    if decay_steps <= 0:
        return lr_max
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + math.cos(math.pi * progress))


def warmup_steps_for(total_steps: int, warmup_steps: int | None, warmup_ratio: float) -> int:
    """``warmup_steps`` when set, else ``round(warmup_ratio * total_steps)``; never the
    whole run, so that the schedule keeps at least one step at the peak."""
    w = warmup_steps if warmup_steps is not None else round(warmup_ratio * total_steps)
    return max(0, min(w, total_steps - 1))


def cosine_schedule(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    lr_max: float,
    lr_min: float,
    warmup_steps: int,
) -> LambdaLR:
    """A ``LambdaLR`` that sets every param group to :func:`cosine_lr` of the step.

    Call ``scheduler.step()`` after each ``optimizer.step()``; its ``state_dict`` (the step
    count) goes into checkpoints, so a resumed run continues on the same curve.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr_max

    def factor(step: int) -> float:
        return (
            cosine_lr(step, total_steps, lr_max, lr_min, warmup_steps) / lr_max if lr_max else 0.0
        )

    return LambdaLR(optimizer, factor)
