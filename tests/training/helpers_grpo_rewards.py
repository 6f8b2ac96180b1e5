"""User rewards for the GRPO tests, loaded by dotted path as recipes load user code."""

from __future__ import annotations

import time

from r1lab.rewards.base import Sample


def constant(samples: list[Sample]) -> list[float]:
    """0.5 for every sample: every group is flat, so no advantage is non-zero."""
    return [0.5] * len(samples)


def raises(samples: list[Sample]) -> list[float]:
    raise RuntimeError("boom")


def hangs(samples: list[Sample]) -> list[float]:
    time.sleep(600)
    return [1.0] * len(samples)


def short(samples: list[Sample]) -> list[float]:
    """1.0 for completions under 12 characters: something a random model can learn fast."""
    return [1.0 if len(s.completion) < 12 else 0.0 for s in samples]


def picky(samples: list[Sample]) -> list[float]:
    """Raises on a chunk holding a completion of odd length: fails some samples, not all."""
    if any(len(s.completion) % 2 for s in samples):
        raise RuntimeError("odd")
    return [1.0] * len(samples)
