"""The reward interface: a named callable over a batch of samples, one float per sample.

A reward receives every sample of a rollout batch at once (so it can batch work such as a
reward-model forward pass) and returns a list of floats of the same length. Register one
with :func:`reward`; recipes name rewards by their registered name or, for user code, by
dotted path (``mypkg.rewards:brevity`` or ``mypkg.rewards.brevity``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from r1lab.errors import UserError


@dataclass
class Sample:
    """What a reward sees of one sampled response.

    ``meta`` carries the task's fields for this prompt: ``answer`` (gold answer),
    ``language`` (target language of the chain of thought, ``"en"`` or ``"zh"``),
    ``task`` (task name), ``tests`` (code tests) and anything else the task provides.
    """

    prompt: str
    completion: str
    meta: dict[str, Any] = field(default_factory=dict)
    truncated: bool = False


RewardFn = Callable[[list[Sample]], list[float]]

_REGISTRY: dict[str, RewardFn] = {}


def reward(name: str) -> Callable[[RewardFn], RewardFn]:
    """Register ``fn`` under ``name`` so that recipes can refer to it."""

    def wrap(fn: RewardFn) -> RewardFn:
        _REGISTRY[name] = fn
        return fn

    return wrap


def get_reward(name: str) -> RewardFn:
    """A registered reward by name, or a user reward by dotted path."""
    _load_builtin()
    if name in _REGISTRY:
        return _REGISTRY[name]
    module_name, _, attr = name.rpartition(":") if ":" in name else name.rpartition(".")
    if not module_name:
        known = ", ".join(sorted(_REGISTRY))
        raise UserError(f"unknown reward '{name}' (known: {known}; or give a dotted path)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(f"reward '{name}': cannot import module '{module_name}' ({e})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UserError(f"reward '{name}': module '{module_name}' has no callable '{attr}'")
    return fn


def registered_rewards() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    # Importing the modules registers their rewards; done lazily to keep imports light.
    import r1lab.rewards.code  # noqa: F401
    import r1lab.rewards.rules  # noqa: F401
