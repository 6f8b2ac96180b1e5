"""The rollout interface shared by the PyTorch engine and vLLM."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class SamplingParams:
    """How to sample. ``top_k=0`` and ``top_p=1.0`` switch those filters off."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False
    seed: int | None = None


@dataclass
class Completion:
    """One sampled continuation of a prompt.

    ``logprobs[i]`` is the log-probability of ``token_ids[i]`` under the distribution it was
    actually sampled from (after temperature, before top-p/top-k truncation), so that
    GRPO's importance ratio to the sampling policy is exact. ``finish_reason`` is
    ``"stop"`` (EOS or a stop string) or ``"length"`` (hit ``max_new_tokens``).
    """

    token_ids: list[int]
    text: str
    logprobs: list[float]
    finish_reason: str


class RolloutEngine(Protocol):
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Completion]]:
        """``params.n`` completions for each prompt (token ids), in prompt order."""
        ...

    def update_weights(self) -> None:
        """Take the trainer's latest weights (a no-op when the engine shares the module)."""
        ...

    def numerics(self) -> str:
        """What computes the sampling log-probs, as ``<kernels>/<dtype>`` (``torch/float32``,
        ``vllm/bfloat16``): a trainer whose own forward differs recomputes π_old."""
        ...
