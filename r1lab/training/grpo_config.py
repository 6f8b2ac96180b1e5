"""The configuration of ``r1lab grpo``: sampling, batching and optimisation, with the report's
R1-Zero values beside the tiny defaults, and the checks a configuration must pass."""

from __future__ import annotations

from dataclasses import dataclass

from r1lab.config import option, section
from r1lab.data.tasks import TaskConfig
from r1lab.errors import UserError
from r1lab.rewards.pool import RewardsConfig
from r1lab.runs import RunConfig
from r1lab.training.losses import GRPOLossConfig

__all__ = ["GRPOConfig", "GRPOStageConfig", "check_config", "max_new_tokens_at"]


@dataclass
class GRPOConfig:
    """Sampling, batching and optimisation of GRPO. The tiny defaults train the embedded
    base on 2 CPU cores in minutes; ``report`` gives the R1-Zero values."""

    steps: int = option(
        96, "optimizer steps; a multiple of minibatches × inner_epochs", report=10400
    )
    prompts_per_step: int = option(
        16, "prompts per optimizer step (its batch is prompts_per_step × group_size)", report=32
    )
    group_size: int = option(8, "responses sampled per prompt (G)", report=16)
    minibatches: int = option(
        2,
        "optimizer steps per rollout: a rollout samples prompts_per_step × minibatches "
        "prompts and splits the responses at random into this many minibatches",
        report=16,
    )
    inner_epochs: int = option(
        1, "passes over each rollout (each with a fresh random split into minibatches)"
    )
    temperature: float = option(1.0, "rollout sampling temperature")
    top_p: float = option(1.0, "rollout nucleus sampling (1.0: off)")
    ignore_eos: bool = option(
        False, "sample every response to the length limit, past EOS (for benchmarks)"
    )
    max_new_tokens: int = option(160, "response length limit at step 0", report=32768)
    max_new_tokens_schedule: dict[int, int] = option(
        {},
        "step -> response length limit from that step on (applied from the first rollout "
        "that starts at or after the step)",
        report={8200: 65536},
    )
    lr: float = option(
        1e-4, "learning rate (constant after warm-up unless lr_min is set)", report=3e-6
    )
    lr_min: float | None = option(None, "cosine decay to this learning rate (null: constant)")
    warmup_steps: int = option(0, "linear warm-up steps")
    ref_reset_every: int = option(
        32,
        "replace the reference policy by the current policy every N steps (0: never), at the "
        "first rollout boundary at or after each multiple of N",
        report=400,
    )
    recompute_old_logprobs: bool = option(
        False,
        "recompute π_old with a training forward pass after each rollout instead of using "
        "the engine's sampling log-probs; needed when the engine's numerics differ from "
        "training (vLLM, bfloat16)",
    )
    rollout_chunk: int = option(
        16,
        "prompts per generate call; each chunk's rewards are scored in the reward pool while "
        "the next chunk generates",
    )
    token_budget: int = option(
        0,
        "layout of the reference and training passes: 0 puts one response a row, rows sorted "
        "by length so that a pass pads little and attention stays plain causal (fastest on a "
        "CPU, where a packed row's block mask costs more than the padding it saves); N > 0 "
        "packs best-fit into rows of N tokens (raised to the longest prompt + response), as "
        "the report's training module does, for varlen attention on GPUs",
        report=32768,
    )
    micro_batch_tokens: int = option(
        2048,
        "token slots per forward/backward pass (at least one row); a step accumulates over "
        "its micro-batches, with the same gradient however it is split",
        report=65536,
    )
    max_grad_norm: float = option(1.0, "clip the global gradient norm to this (0: no clipping)")
    weight_decay: float = option(0.0, "AdamW weight decay (not given in the report)")
    adam_beta1: float = option(0.9, "AdamW beta1")
    adam_beta2: float = option(0.99, "AdamW beta2")
    adam_eps: float = option(1e-8, "AdamW epsilon")
    dtype: str = option(
        "auto", "compute dtype: float32, bfloat16 (autocast) or auto (bfloat16 on CUDA)"
    )
    device: str = option("auto", "cpu, cuda, or auto (cuda when available)")


@dataclass
class GRPOStageConfig:
    """``r1lab grpo``: reinforce a model on a task's verifiable problems."""

    model: str = option("runs/pretrain/final", "model folder to start from (Hugging Face format)")
    tokenizer: str = option("", "tokenizer folder (empty: the model folder)")
    task: TaskConfig = section(TaskConfig, split="train", limit=4096)
    grpo: GRPOConfig = section(GRPOConfig)
    loss: GRPOLossConfig = section(GRPOLossConfig)
    rewards: RewardsConfig = section(RewardsConfig)
    run: RunConfig = section(RunConfig)


def check_config(cfg: GRPOConfig, loss_cfg: GRPOLossConfig) -> None:
    """Raise a one-line :class:`~r1lab.errors.UserError` for the first invalid setting."""
    for key in (
        "steps", "prompts_per_step", "group_size", "minibatches", "inner_epochs",
        "max_new_tokens", "rollout_chunk", "micro_batch_tokens",
    ):  # fmt: skip
        if getattr(cfg, key) < 1:
            raise UserError(f"grpo.{key} must be >= 1, got {getattr(cfg, key)}")
    if cfg.token_budget < 0:
        raise UserError(f"grpo.token_budget must be >= 0, got {cfg.token_budget}")
    per_rollout = cfg.minibatches * cfg.inner_epochs
    if cfg.steps % per_rollout:
        raise UserError(
            f"grpo.steps ({cfg.steps}) must be a multiple of minibatches × inner_epochs "
            f"({per_rollout}): a rollout is trained whole"
        )
    if cfg.temperature <= 0 or not 0 < cfg.top_p <= 1:
        raise UserError("grpo needs temperature > 0 and 0 < top_p <= 1")
    if cfg.ref_reset_every < 0:
        raise UserError("grpo.ref_reset_every must be >= 0")
    for step, length in cfg.max_new_tokens_schedule.items():
        if not isinstance(step, int) or not isinstance(length, int) or step < 0 or length < 1:
            raise UserError(
                f"grpo.max_new_tokens_schedule: expected step: length integers, got "
                f"{step!r}: {length!r}"
            )
    if loss_cfg.beta < 0:
        raise UserError("loss.beta must be >= 0")


def max_new_tokens_at(cfg: GRPOConfig, step: int) -> int:
    """The response length limit for a rollout that starts after ``step`` steps."""
    value = cfg.max_new_tokens
    for start, length in sorted(cfg.max_new_tokens_schedule.items()):
        if step >= start:
            value = length
    return value
