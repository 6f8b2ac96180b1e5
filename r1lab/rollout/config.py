"""Which engine generates the rollouts, and its settings (``rollout.*`` of ``r1lab grpo``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1lab.config import one_of, option, section
from r1lab.rollout.base import RolloutEngine
from r1lab.rollout.vllm_engine import VLLMConfig

__all__ = ["RolloutConfig", "make_engine"]


@dataclass
class RolloutConfig:
    """The rollout module's engine."""

    engine: str = option(
        "torch",
        "torch (the trainer's own module on its device: CPU or GPU, exact log-probs) or vllm "
        "(vLLM on the trainer's GPU, weights copied in after every step; untested on a GPU "
        "so far, see bench/gpu_check.sh)",
        check=one_of("torch", "vllm"),
    )
    vllm: VLLMConfig = section(VLLMConfig)


def make_engine(
    cfg: RolloutConfig, model: Any, tokenizer: Any, folder: str | Path
) -> RolloutEngine:
    """The engine ``cfg`` names, generating from ``model`` (loaded from ``folder``)."""
    if cfg.engine == "vllm":
        from r1lab.rollout.vllm_engine import VLLMEngine

        return VLLMEngine(model, str(folder), cfg.vllm)
    from r1lab.rollout.torch_engine import TorchEngine

    return TorchEngine(model, tokenizer)
