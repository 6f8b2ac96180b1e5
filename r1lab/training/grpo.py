"""GRPO, the RL algorithm of R1-Zero and R1's RL stages (``r1lab grpo``).

One step, as :func:`train_grpo` reads::

    rollout      prompts × G samples from the rollout engine, in chunks; each chunk's
                 rewards are scored in the reward pool while the next chunk generates
    rewards      Σ weight · reward per response (a response whose reward failed is counted
                 and left out of its group's statistics and of the loss)
    advantages   A = (r - mean(r)) / (std(r) + eps) within each prompt's group of G
    reference    log π_ref of every response (skipped when β = 0)
    update       M minibatches × K inner epochs: packed forward, clipped surrogate with the
                 ratio to the sampling policy, + β·k3 KL, aggregate, backward, clip, step
    metrics      one line per optimizer step in metrics.jsonl, and on the progress bar

Steps and rollouts, as the report counts them: a *step* is one optimizer step on the
responses to ``prompts_per_step`` prompts (32 prompts × G 16 = 512 responses). A *rollout*
samples the prompts of ``minibatches`` steps at once (8,192 responses), splits its responses
at random into that many minibatches and trains ``inner_epochs`` passes over them, so a
rollout is ``minibatches × inner_epochs`` steps. Only a rollout's first minibatch is
on-policy; the importance ratio to the sampling policy and its clip account for the rest.
Rollout-level events (the reference reset, the length schedule, checkpoints) happen at
rollout boundaries.

The sampling log-probs the engine returns are π_old when the engine computes as training does
(on a CPU in float32 they equal a training forward's, so no forward pass is spent on
recomputing them). When its numerics differ (bfloat16 training beside a float32 sampler,
vLLM), π_old is recomputed by the training forward after each rollout, so the ratio of a
rollout's first step is 1 (``recompute_old_logprobs``: null decides, true or false forces).

With ``infra.offload`` (:mod:`r1lab.infra.offload`) what a phase does not use leaves the
accelerator while it runs and comes back bit-exact: the optimizer state and gradients during
the rollout and the reference pass, the reference outside its pass, the reward models
outside the rollout (they score it). The policy's weights stay: the engine samples with them.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor

from r1lab.data.problem import Problem
from r1lab.errors import UserError
from r1lab.inference.reference import (
    ReferencePolicy,
    micro_batches,
    response_logprobs,
    score_responses,
)
from r1lab.inference.reward_model import RewardModels
from r1lab.infra.offload import Offloader, module_tensors, reward_model_tensors, training_state
from r1lab.model_card import card, prompt_of
from r1lab.rewards.config import active_rewards
from r1lab.rollout.base import RolloutEngine, SamplingParams
from r1lab.runs import Run
from r1lab.training.device import autocast_for, compute_dtype, resolve_device, training_numerics
from r1lab.training.grpo_config import (
    GRPOConfig,
    GRPOStageConfig,
    check_config,
    max_new_tokens_at,
)
from r1lab.training.grpo_rollout import (
    Rollout,
    ScheduledPrompts,
    batch_metrics,
    finish_rollout,
    reward_pool,
    start_rollout,
)
from r1lab.training.losses import GRPOLossConfig, grpo_loss
from r1lab.training.optim import adamw
from r1lab.training.schedule import cosine_schedule

__all__ = ["train_grpo", "train_step"]


# --- one optimizer step -------------------------------------------------------------------


def _padded(values: list[Tensor], width: int) -> Tensor:
    out = torch.zeros(len(values), width)
    for i, v in enumerate(values):
        out[i, : len(v)] = v
    return out


def train_step(
    model: Any,
    ro: Rollout,
    idx: list[int],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    cfg: GRPOConfig,
    loss_cfg: GRPOLossConfig,
    norm_len: int,
    pad_token_id: int,
    device: torch.device,
    autocast: Any,
) -> dict[str, float]:
    """One optimizer step on the responses ``idx`` of ``ro``, accumulated over packed
    micro-batches.

    Each micro-batch's aggregated loss is weighted by its share of the step's normaliser
    (tokens for token-mean, responses otherwise), so the gradient is the one of the whole
    minibatch at once, however it is split.
    """
    # An empty response has no token to train; one whose reward failed (or the last scored
    # one of its group) has no advantage to train on.
    idx = [i for i in idx if ro.response_ids[i] and ro.trainable[i]]
    lr = optimizer.param_groups[0]["lr"]
    if not idx:  # nothing to learn from: no update (no gradients), the schedule moves on
        optimizer.zero_grad(set_to_none=True)
        optimizer.step()
        scheduler.step()
        return {"loss": 0.0, "pg_loss": 0.0, "ratio_min": 1.0, "ratio_max": 1.0,
                "grad_norm": 0.0, "lr": lr, "train_tokens": 0}  # fmt: skip
    prompts = [ro.prompt_ids[i] for i in idx]
    responses = [ro.response_ids[i] for i in idx]
    n_tokens = sum(len(r) for r in responses)
    sums: dict[str, float] = {}
    lows, highs = [], []
    lengths = [len(p) + len(r) for p, r in zip(prompts, responses, strict=True)]
    for bins, row_tokens in micro_batches(lengths, cfg.token_budget, cfg.micro_batch_tokens):
        with autocast():
            logp, mask, order = response_logprobs(
                model, prompts, responses, bins, row_tokens, pad_token_id, cfg.temperature, device,
                cfg.logprob_chunk_tokens,
            )  # fmt: skip
        rows = [idx[s] for s in order]
        width = logp.shape[1]
        old = _padded([ro.old_logprobs[i] for i in rows], width).to(device)
        ref = None
        if ro.ref_logprobs is not None:
            ref = _padded([ro.ref_logprobs[i] for i in rows], width).to(device)
        adv = ro.advantages[rows].to(device)
        loss, m = grpo_loss(logp.float(), old, ref, adv, mask, _with_norm(loss_cfg, norm_len))
        tokens = int(mask.sum())
        share = tokens / n_tokens if loss_cfg.loss_agg == "token-mean" else len(rows) / len(idx)
        (loss * share).backward()
        for k in ("loss", "pg_loss"):
            sums[k] = sums.get(k, 0.0) + m[k] * share
        for k in ("kl", "clip_frac", "clip_frac_low", "clip_frac_high", "ratio_mean"):
            if k in m:  # token means: weighted by tokens
                sums[k] = sums.get(k, 0.0) + m[k] * tokens / n_tokens
        lows.append(m.get("ratio_min", 1.0))
        highs.append(m.get("ratio_max", 1.0))
    max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return {
        **sums,
        "ratio_min": min(lows, default=1.0),
        "ratio_max": max(highs, default=1.0),
        "grad_norm": float(grad_norm),
        "lr": lr,
        "train_tokens": n_tokens,
    }


def _with_norm(cfg: GRPOLossConfig, norm_len: int) -> GRPOLossConfig:
    # Dr. GRPO divides token sums by a constant; in packed micro-batches the padded width
    # varies, so the generation budget stands in when none is configured.
    if cfg.loss_agg != "seq-mean-token-sum" or cfg.norm_len:
        return cfg
    return GRPOLossConfig(**{**vars(cfg), "norm_len": norm_len})


# --- the loop -----------------------------------------------------------------------------

# The settings that decide which responses a step trains on; a resumed run must keep them.
_LAYOUT = ("prompts_per_step", "group_size", "minibatches", "inner_epochs")


class _Resumable:
    """The checkpoint's ``scheduler`` entry: the lr schedule and, once the reference has been
    reset, its weights (they are then no longer the starting model's)."""

    def __init__(self, scheduler: Any, reference: ReferencePolicy | None):
        self.scheduler, self.reference = scheduler, reference
        self.with_reference = False

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"scheduler": self.scheduler.state_dict()}
        if self.reference is not None and self.with_reference:
            state["reference"] = self.reference.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
        if "reference" in state and self.reference is not None:
            self.reference.load_state_dict(state["reference"])
            self.with_reference = True


def _minibatch_split(n: int, parts: int, seed: int, rollout: int, epoch: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed((seed * 1_000_003 + rollout) * 101 + epoch)
    perm = torch.randperm(n, generator=gen).tolist()
    size = math.ceil(n / parts)
    return [perm[i : i + size] for i in range(0, n, size)]


def _reset_due(every: int, step: int, ref_step: int) -> bool:
    """Whether a rollout starting after ``step`` steps crosses a multiple of ``every`` since
    the reference was taken at ``ref_step``."""
    return every > 0 and step // every > ref_step // every


def step_record(
    step: int,
    rollout: int,
    ro: Rollout,
    idx: list[int],
    stats: dict[str, float],
    seconds: float,
    max_new: int,
    first: bool,
    only: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """The metrics.jsonl line of one optimizer step on the responses ``idx`` of ``ro``.

    ``step_seconds`` runs from the end of the previous step, so a rollout's first step
    includes its generation. A rollout's reward failures are counted on its first step.
    """
    gen_tokens = sum(len(x) for x in ro.response_ids)
    flat = (ro.advantages.view(-1, ro.group_size) == 0).all(dim=1)
    return {
        "step": step,
        "rollout": rollout + 1,
        **batch_metrics(ro, idx, only),
        **stats,
        "groups_flat": float(flat.float().mean()),
        "max_new_tokens": max_new,
        **{f"reward_failures/{k}": v if first else 0 for k, v in ro.failures.items()},
        "step_seconds": round(seconds, 4),
        "gen_seconds": round(ro.seconds, 4),
        "gen_tokens": gen_tokens,
        "gen_tokens_per_s": round(gen_tokens / max(ro.seconds, 1e-9), 1),
        "ref_seconds": round(ro.ref_seconds, 4),
        # the rule rewards' compute time, and the share of it the trainer did not wait for
        "reward_seconds": round(ro.reward_seconds, 4),
        "reward_wait_seconds": round(ro.reward_wait_seconds, 4),
        "reward_hidden": round(1 - min(ro.reward_wait_seconds / ro.reward_seconds, 1), 4)
        if ro.reward_seconds > 0
        else 1.0,
        "tokens_per_s": round(stats["train_tokens"] / max(seconds, 1e-9), 1),
    }


def rollout_samples(ro: Rollout, count: int) -> list[dict[str, Any]]:
    """The first response of each of the first ``count`` groups, for ``samples.jsonl``: what
    the policy writes, step by step, beside its rewards."""
    out = []
    for g in range(min(count, len(ro.texts) // ro.group_size)):
        i = g * ro.group_size
        out.append(
            {
                "question": ro.problems[i].question,
                "gold": ro.problems[i].answer,
                "response": ro.texts[i],
                "reward": float(ro.rewards[i]),
                **{name: values[i] for name, values in ro.per_reward.items()},
            }
        )
    return out


def _show(bar: Any, record: dict[str, Any]) -> None:
    bar.update(1)
    bar.set_postfix(
        reward=f"{record['reward/total']:.2f}",
        acc=f"{record.get('accuracy', 0):.2f}",
        len=f"{record['response_len_mean']:.0f}",
        kl=f"{record.get('kl', 0):.4f}",
    )


def train_grpo(
    model: Any,
    tokenizer: Any,
    problems: list[Problem],
    cfg: GRPOStageConfig,
    run: Run,
    resume: bool = False,
    engine: RolloutEngine | None = None,
) -> dict[str, Any]:
    """Reinforce ``model`` in place on ``problems``; returns the summary.

    Logs one metrics line per optimizer step, checkpoints at the first rollout boundary at or
    after every ``run.save_every`` steps and at the end, and with ``resume`` continues from
    the run's latest complete checkpoint (weights, optimizer, schedule, reference, RNG; the
    prompt order, minibatch splits and sampling seeds are functions of the seed and step),
    so the result equals an uninterrupted run's.
    """
    from tqdm.auto import tqdm

    g, loss_cfg, run_cfg = cfg.grpo, cfg.loss, cfg.run
    check_config(g, loss_cfg)
    if not problems:
        raise UserError("grpo: the task has no problems")
    device = resolve_device(g.device)
    autocast = autocast_for(g.dtype, device)
    model.to(device)
    if engine is None:
        from r1lab.rollout.torch_engine import TorchEngine

        engine = TorchEngine(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    recompute = _recompute_old_logprobs(g, engine, training_numerics(g.dtype, device, model))

    optimizer = adamw(
        model.parameters(),
        lr=g.lr,
        betas=(g.adam_beta1, g.adam_beta2),
        eps=g.adam_eps,
        weight_decay=g.weight_decay,
    )
    lr_min = g.lr if g.lr_min is None else g.lr_min
    scheduler = cosine_schedule(optimizer, g.steps, g.lr, lr_min, min(g.warmup_steps, g.steps - 1))
    ref_dtype = compute_dtype(g.dtype, device) if g.ref_dtype == "auto" else g.ref_dtype
    reference = ReferencePolicy(model, getattr(torch, ref_dtype)) if loss_cfg.beta > 0 else None
    resumable = _Resumable(scheduler, reference)

    per_rollout = g.minibatches * g.inner_epochs  # optimizer steps per rollout
    layout = {k: getattr(g, k) for k in _LAYOUT}
    state = run.restore(model, optimizer, resumable, layout, g.steps) if resume else {}
    start, ref_step = int(state.get("step", 0)), int(state.get("ref_step", 0))
    spent = float(state.get("seconds", 0.0))  # training time before a resume (max_minutes)

    prompts = ScheduledPrompts(problems, tokenizer, cfg, prompt_of(card(model)))
    pool = reward_pool(cfg.rewards)
    reward_models = RewardModels(cfg.rewards, device)  # the inference module's, beside the ref
    # infra.offload: each phase below starts with offload.use(what it uses); the rest leaves
    offload = Offloader(cfg.infra, run.path / "offload")
    offload.add("optimizer", lambda: training_state(model, optimizer))
    offload.add("reference", lambda: module_tensors(reference.model) if reference else {})
    offload.add("reward models", lambda: reward_model_tensors(reward_models))
    bar = tqdm(total=g.steps, initial=start, desc="grpo", unit="step", disable=None)
    started = time.time()
    try:
        for r in range(start // per_rollout, g.steps // per_rollout):
            t0, step0 = time.time(), r * per_rollout
            max_new = max_new_tokens_at(g, step0)
            if reference is not None and _reset_due(g.ref_reset_every, step0, ref_step):
                offload.use("reference")  # the reset writes into its weights
                reference.reset(model)
                ref_step, resumable.with_reference = step0, True

            # rollout → rewards → advantages (a chunk's rewards overlap the next's generation)
            offload.use("reward models")  # and the policy's weights, which never leave
            model.eval()
            engine.update_weights()
            chosen, prompt_ids = prompts.take(r, per_rollout, g.prompts_per_step * g.minibatches)
            params = SamplingParams(
                n=g.group_size,
                temperature=g.temperature,
                top_p=g.top_p,
                max_new_tokens=max_new,
                ignore_eos=g.ignore_eos,
                seed=run_cfg.seed * 1_000_003 + r,
            )
            active = active_rewards(cfg.rewards, step0, g.steps)  # the reward schedule
            with torch.no_grad():
                pending = start_rollout(
                    engine, pool, chosen, prompt_ids, params, g.rollout_chunk, active,
                    reward_models, cfg.rewards.weights,
                )  # fmt: skip
            if hasattr(engine, "sleep"):  # an engine with memory of its own frees it meanwhile
                engine.sleep()

            # [reference log-probs], [π_old recomputed], while the rule rewards still run
            score = dict(
                budget=g.token_budget,
                micro_batch_tokens=g.micro_batch_tokens,
                pad_token_id=pad_id,
                temperature=g.temperature,
                device=device,
                autocast=autocast,
                chunk_tokens=g.logprob_chunk_tokens,
            )
            offload.use("reference")
            t_ref = time.time()
            sequences = (pending.prompt_ids, pending.response_ids)
            ref_logprobs = old_logprobs = None
            if reference is not None:
                ref_logprobs = reference.logprobs(*sequences, **score)
            if recompute:
                old_logprobs = score_responses(model, *sequences, **score)
            ref_seconds = time.time() - t_ref
            ro = finish_rollout(pending, loss_cfg)  # → rewards, advantages
            ro.ref_logprobs, ro.ref_seconds = ref_logprobs, ref_seconds
            if old_logprobs is not None:
                ro.old_logprobs = old_logprobs
            for sample in rollout_samples(ro, g.log_samples):
                run.log_sample({"step": step0 + 1, "rollout": r + 1, **sample})

            # M minibatches × K inner epochs, one optimizer step each
            offload.use("optimizer")
            model.train()
            for epoch in range(g.inner_epochs):
                split = _minibatch_split(len(ro.texts), g.minibatches, run_cfg.seed, r, epoch)
                for m, idx in enumerate(split):
                    stats = train_step(
                        model, ro, idx, optimizer, scheduler, g, loss_cfg, max_new, pad_id,
                        device, autocast,
                    )  # fmt: skip
                    step = step0 + epoch * g.minibatches + m + 1
                    record = step_record(
                        step, r, ro, idx, stats, time.time() - t0, max_new,
                        first=step == step0 + 1, only=cfg.rewards.only,
                    )  # fmt: skip
                    for name in cfg.rewards.schedule:
                        record[f"reward_on/{name}"] = int(name in active)
                    run.log(record)
                    _show(bar, record)
                    t0 = time.time()

            # checkpoint, at a rollout boundary (and stop there when the time is up)
            done = step0 + per_rollout
            every = run_cfg.save_every
            seconds = spent + time.time() - started
            out_of_time = g.max_minutes > 0 and seconds >= g.max_minutes * 60
            if out_of_time or done == g.steps or (every > 0 and done // every > step0 // every):
                state = {"step": done, "rollout": r + 1, "ref_step": ref_step, "layout": layout,
                         "seconds": seconds}  # fmt: skip
                offload.use("optimizer", "reference")  # both are in the checkpoint
                run.save_checkpoint(
                    done, model, tokenizer, optimizer, resumable, state, keep_last=run_cfg.keep_last
                )
            if out_of_time:
                print(f"grpo: {g.max_minutes} min of training are up; stopped after step {done}")
                break
    finally:
        bar.close()
        pool.close()
        offload.restore_all()
    model.eval()
    return _summary(run, cfg, start, time.time() - started)


def _recompute_old_logprobs(g: GRPOConfig, engine: RolloutEngine, training: str) -> bool:
    """Whether π_old comes from a training forward: as configured, or (null) unless both the
    engine and training compute in torch float32, where a sampled token's log-prob equals a
    training forward's (pinned by a test). In bfloat16 even the same dtype differs: decoding
    one token at a time from a cache rounds otherwise than a forward over the whole sequence."""
    if g.recompute_old_logprobs is not None:
        return g.recompute_old_logprobs
    numerics = getattr(engine, "numerics", None)
    sampling = numerics() if numerics is not None else "unknown"
    if sampling == training == "torch/float32":
        return False
    print(
        f"grpo: the engine samples with {sampling}, training computes with {training}: "
        "π_old is recomputed by the training forward after each rollout"
    )
    return True


def _summary(run: Run, cfg: GRPOStageConfig, start: int, seconds: float) -> dict[str, Any]:
    metrics = run.metrics()
    keys = (
        "reward/total", "accuracy", "format_rate", "language_consistency",
        "response_len_mean", "truncated", "kl", "entropy",
    )  # fmt: skip
    # first and last rollout (its steps averaged): single steps are noisy
    per_rollout = cfg.grpo.minibatches * cfg.grpo.inner_epochs
    head, tail = metrics[:per_rollout], metrics[-per_rollout:]

    def mean(rows: list[dict], key: str) -> float | None:
        vals = [m[key] for m in rows if key in m]
        return round(sum(vals) / len(vals), 4) if vals else None

    failures = {
        k.split("/", 1)[1]: sum(m.get(k, 0) for m in metrics)
        for k in (metrics[0] if metrics else {})
        if k.startswith("reward_failures/")
    }
    return {
        "stage": "grpo",
        "steps": metrics[-1]["step"] if metrics else 0,  # fewer than grpo.steps past max_minutes
        "resumed_from": start,
        "responses": len(metrics) // max(per_rollout, 1) * cfg.grpo.prompts_per_step
        * cfg.grpo.minibatches * cfg.grpo.group_size,
        "first": {k: mean(head, k) for k in keys if mean(head, k) is not None},
        "last": {k: mean(tail, k) for k in keys if mean(tail, k) is not None},
        "reward_failures": failures,
        "seconds": round(seconds, 1),
    }  # fmt: skip
