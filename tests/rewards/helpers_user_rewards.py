"""User rewards for the pool tests, loaded by dotted path as recipes load user code."""

from __future__ import annotations

import math
import os
import time

from r1lab.rewards.base import Sample


def length(samples: list[Sample]) -> list[float]:
    """The completion's length in characters."""
    return [float(len(s.completion)) for s in samples]


def raises(samples: list[Sample]) -> list[float]:
    raise RuntimeError("boom")


def sleeps(samples: list[Sample]) -> list[float]:
    """1.0, after hanging far past any test's time limit on samples with meta["sleep"]."""
    if any(s.meta.get("sleep") for s in samples):
        time.sleep(600)
    return [1.0] * len(samples)


def dies(samples: list[Sample]) -> list[float]:
    """Kills its worker process on samples with meta["die"], as a crash in C code would."""
    if any(s.meta.get("die") for s in samples):
        os._exit(3)
    return [1.0] * len(samples)


def exits(samples: list[Sample]) -> list[float]:
    raise SystemExit(1)


def wrong_length(samples: list[Sample]) -> list[float]:
    return [1.0] * (len(samples) + 1)


def nan_on_flag(samples: list[Sample]) -> list[float]:
    return [math.nan if s.meta.get("nan") else 1.0 for s in samples]
