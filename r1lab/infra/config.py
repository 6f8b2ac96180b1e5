"""The ``infra`` section of a stage's config: how the modules share the accelerator."""

from __future__ import annotations

from dataclasses import dataclass

from r1lab.config import one_of, option

__all__ = ["InfraConfig"]


@dataclass
class InfraConfig:
    """Offload between phases (report §10: every module but the rule-based rewards hands its
    accelerator memory back when its phase ends, to CPU memory or disk)."""

    offload: bool = option(
        False,
        "between phases, send what the next phase does not use to offload_to and bring it back "
        "bit-exact before use: the optimizer state and gradients during the rollout, the "
        "reference and reward models outside their scoring",
        report=True,
    )
    offload_to: str = option(
        "cpu",
        "cpu: host memory (pinned when the device is CUDA; nothing moves on a CPU device), or "
        "disk: safetensors files in offload_dir (frees host memory too)",
        check=one_of("cpu", "disk"),
    )
    offload_dir: str = option(
        "", "folder of the disk offload files (empty: offload/ inside the run folder)"
    )
