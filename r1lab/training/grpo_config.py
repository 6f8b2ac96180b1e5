"""The configuration of ``r1lab grpo``: sampling, batching and optimisation, with the report's
R1-Zero values beside the tiny defaults, and the checks a configuration must pass."""

from __future__ import annotations

from dataclasses import dataclass

from r1lab.config import a_device, at_least, in_range, one_of, option, positive, section, validate
from r1lab.data.packing import LOGPROB_CHUNK_TOKENS
from r1lab.data.tasks import TaskConfig, check_training_task
from r1lab.errors import UserError
from r1lab.eval.heldout import HeldoutConfig
from r1lab.infra.config import InfraConfig
from r1lab.rewards.config import RewardsConfig, check_rewards
from r1lab.rollout.config import RolloutConfig
from r1lab.runs import RunConfig
from r1lab.training.losses import GRPOLossConfig

AUTO_MODEL = "auto"  # the task's embedded base (see GRPOStageConfig.model)

__all__ = ["GRPOConfig", "GRPOStageConfig", "check_config", "check_stage", "max_new_tokens_at"]


@dataclass
class GRPOConfig:
    """Sampling, batching and optimisation of GRPO. The tiny defaults train the embedded
    base on 2 CPU cores in minutes; ``report`` gives the R1-Zero values."""

    steps: int = option(
        40,
        "optimizer steps; a multiple of minibatches × inner_epochs",
        report=10400,
        check=at_least(1),
    )
    prompts_per_step: int = option(
        16,
        "prompts per optimizer step (its batch is prompts_per_step × group_size)",
        report=32,
        check=at_least(1),
    )
    group_size: int = option(8, "responses sampled per prompt (G)", report=16, check=at_least(2))
    minibatches: int = option(
        2,
        "optimizer steps per rollout: a rollout samples prompts_per_step × minibatches "
        "prompts and splits the responses at random into this many minibatches",
        report=16,
        check=at_least(1),
    )
    inner_epochs: int = option(
        1,
        "passes over each rollout (each with a fresh random split into minibatches)",
        check=at_least(1),
    )
    max_minutes: float = option(
        0.0,
        "stop at the first rollout boundary after this many minutes of training, with a final "
        "checkpoint (0: no limit; distillation's RL baseline gets the same wall-clock budget)",
        check=at_least(0),
    )
    temperature: float = option(1.0, "rollout sampling temperature", check=positive())
    top_p: float = option(
        1.0, "rollout nucleus sampling (1.0: off)", check=in_range(0, 1, low_open=True)
    )
    ignore_eos: bool = option(
        False, "sample every response to the length limit, past EOS (for benchmarks)"
    )
    max_new_tokens: int = option(
        256, "response length limit at step 0", report=32768, check=at_least(1)
    )
    log_samples: int = option(
        4,
        "responses per rollout written to samples.jsonl (the first of each of the first "
        "groups, with their rewards; 0: none)",
        check=at_least(0),
    )
    task_schedule: dict[str, list[float]] = option(
        {},
        "task -> [start, end): the rollouts starting in this step range (fractions of steps "
        "when both are <= 1) draw the prompts of this task, the others only the rest. Stage D: "
        "general prompts in the last 400 of 1,700 steps, with the rewards made for them",
        report={"general": [1300, 1700]},
    )
    max_new_tokens_schedule: dict[int, int] = option(
        {},
        "step -> response length limit from that step on (applied from the first rollout "
        "that starts at or after the step)",
        report={8200: 65536},
    )
    lr: float = option(
        1e-4,
        "learning rate (constant after warm-up unless lr_min is set)",
        report=3e-6,
        check=positive(),
    )
    lr_min: float | None = option(
        None, "cosine decay to this learning rate (null: constant)", check=at_least(0)
    )
    warmup_steps: int = option(0, "linear warm-up steps", check=at_least(0))
    ref_reset_every: int = option(
        32,
        "replace the reference policy by the current policy every N steps (0: never), at the "
        "first rollout boundary at or after each multiple of N",
        report=400,
        check=at_least(0),
    )
    recompute_old_logprobs: bool | None = option(
        None,
        "recompute π_old with a training forward pass after each rollout instead of using "
        "the engine's sampling log-probs; null (auto): whenever the engine's numerics differ "
        "from training's (bfloat16 training beside a float32 sampler, vLLM), so the first "
        "step's ratio is 1",
    )
    rollout_chunk: int = option(
        32,
        "prompts per generate call; each chunk's rewards are scored in the reward pool while "
        "the next chunk generates",
        check=at_least(1),
    )
    token_budget: int = option(
        0,
        "layout of the reference and training passes: 0 puts one response a row, rows sorted "
        "by length so that a pass pads little and attention stays plain causal (fastest on a "
        "CPU); N > 0 packs best-fit into rows of N tokens (raised to the longest prompt + "
        "response), as the report's training module does, with varlen attention (no [N, N] "
        "mask; flash-attention's varlen kernel where installed on CUDA)",
        report=32768,
        check=at_least(0),
    )
    micro_batch_tokens: int = option(
        2048,
        "token slots per forward/backward pass (at least one row); a step accumulates over "
        "its micro-batches, with the same gradient however it is split",
        report=65536,
        check=at_least(1),
    )
    logprob_chunk_tokens: int = option(
        LOGPROB_CHUNK_TOKENS,
        "tokens whose full-vocabulary logits the reference and training passes compute at "
        "once (recomputed in the backward pass): memory [chunk, vocab] instead of "
        "[micro_batch_tokens, vocab], the same log-probs and gradients",
        check=at_least(1),
    )
    max_grad_norm: float = option(
        1.0, "clip the global gradient norm to this (0: no clipping)", check=at_least(0)
    )
    weight_decay: float = option(
        0.0, "AdamW weight decay (not given in the report)", check=at_least(0)
    )
    adam_beta1: float = option(0.9, "AdamW beta1", check=in_range(0, 1, high_open=True))
    adam_beta2: float = option(0.99, "AdamW beta2", check=in_range(0, 1, high_open=True))
    adam_eps: float = option(1e-8, "AdamW epsilon", check=positive())
    dtype: str = option(
        "auto",
        "compute dtype of the training and reference passes: float32, bfloat16 (autocast; "
        "the weights, the optimizer state and the gradients stay float32, the master copy) "
        "or auto (bfloat16 on CUDA, float32 on a CPU)",
        check=one_of("auto", "float32", "bfloat16"),
    )
    ref_dtype: str = option(
        "auto",
        "storage dtype of the reference policy's copy: float32, bfloat16 (half the memory) or "
        "auto (bfloat16 when the compute dtype is, else float32)",
        check=one_of("auto", "float32", "bfloat16"),
    )
    device: str = option(
        "auto",
        "cpu, cuda, or auto (cuda when available)",
        check=a_device(),
    )


@dataclass
class GRPOStageConfig:
    """``r1lab grpo``: reinforce a model on a task's verifiable problems."""

    model: str = option(
        AUTO_MODEL,
        "model folder to start from (Hugging Face format); auto: the embedded base of the "
        "task, runs/pretrain-code/final for embedded-code, else runs/pretrain/final, built "
        "with r1lab pretrain (default settings) when missing",
    )
    tokenizer: str = option("", "tokenizer folder (empty: the model folder)")
    task: TaskConfig = section(TaskConfig, split="train", limit=4096)
    grpo: GRPOConfig = section(GRPOConfig)
    loss: GRPOLossConfig = section(GRPOLossConfig)
    rewards: RewardsConfig = section(RewardsConfig)
    rollout: RolloutConfig = section(RolloutConfig)
    infra: InfraConfig = section(InfraConfig)
    heldout: HeldoutConfig = section(HeldoutConfig)
    run: RunConfig = section(RunConfig)


def check_config(cfg: GRPOConfig, loss_cfg: GRPOLossConfig) -> None:
    """Raise a one-line :class:`~r1lab.errors.UserError` for the first invalid setting: the
    fields' own checks, then how they fit together."""
    validate(cfg)
    validate(loss_cfg)
    per_rollout = cfg.minibatches * cfg.inner_epochs
    if cfg.steps % per_rollout:
        raise UserError(
            f"grpo.steps ({cfg.steps}) must be a multiple of minibatches × inner_epochs "
            f"({per_rollout}): a rollout is trained whole"
        )
    for task, span in cfg.task_schedule.items():
        if (
            len(span) != 2
            or not all(isinstance(v, (int, float)) for v in span)
            or not (0 <= span[0] < span[1])
        ):
            raise UserError(
                f"grpo.task_schedule.{task}: expected [start, end] with 0 <= start < end, got "
                f"{span!r}"
            )
    for step, length in cfg.max_new_tokens_schedule.items():
        if not isinstance(step, int) or not isinstance(length, int) or step < 0 or length < 1:
            raise UserError(
                f"grpo.max_new_tokens_schedule: expected step: length integers, got "
                f"{step!r}: {length!r}"
            )


def check_stage(cfg: GRPOStageConfig, check_models: bool = True) -> None:
    """Everything of a GRPO run that can be checked before its run folder is made: the
    settings, the rewards (each one found; the reward model folders too unless
    ``check_models`` is off, for a pipeline that makes them on the way), and that it does not
    train on held-out data."""
    check_config(cfg.grpo, cfg.loss)
    validate(cfg.infra)
    check_training_task(cfg.task)
    check_rewards(cfg.rewards, check_models)


def max_new_tokens_at(cfg: GRPOConfig, step: int) -> int:
    """The response length limit for a rollout that starts after ``step`` steps."""
    value = cfg.max_new_tokens
    for start, length in sorted(cfg.max_new_tokens_schedule.items()):
        if step >= start:
            value = length
    return value
