"""Where a trainer runs and in which precision: one reading of the ``device`` and ``dtype``
settings for every trainer (the config fields' checks have already allowed only known names)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

from r1lab.errors import UserError

__all__ = ["autocast_for", "resolve_device"]


def resolve_device(device: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU; a CUDA device on a machine without one
    is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device != "cpu" and not torch.cuda.is_available():
        raise UserError(f"device is '{device}' but this machine has no CUDA device")
    return torch.device(device)


def compute_dtype(dtype: str, device: torch.device) -> str:
    """``float32`` or ``bfloat16``: ``auto`` is bfloat16 on CUDA, float32 on the CPU."""
    if dtype == "auto":
        return "bfloat16" if device.type == "cuda" else "float32"
    return dtype


def autocast_for(dtype: str, device: torch.device) -> Callable[[], Any]:
    """A context factory for the forward passes: bfloat16 autocast (weights stay as loaded,
    float32: the master copy the optimizer updates) or nothing for float32."""
    if compute_dtype(dtype, device) == "bfloat16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def training_numerics(dtype: str, device: torch.device, model: torch.nn.Module) -> str:
    """What computes the training forward's log-probs, in a rollout engine's terms
    (:meth:`r1lab.rollout.base.RolloutEngine.numerics`): ``torch/bfloat16`` under autocast,
    else ``torch/<dtype of the weights>``."""
    if compute_dtype(dtype, device) == "bfloat16":
        return "torch/bfloat16"
    return "torch/" + str(next(model.parameters()).dtype).removeprefix("torch.")
