"""GRPO's rollout batch: the run's prompts in order, P prompts × G responses from the rollout
engine scored by the reward pool, the group-relative advantages, and the batch's metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from r1lab.data.problem import Problem
from r1lab.data.tasks import TaskConfig, prompt_template_for, render_prompt
from r1lab.errors import UserError
from r1lab.eval.metrics import has_reflection
from r1lab.rewards.base import Sample
from r1lab.rewards.config import in_span
from r1lab.rewards.pool import RewardPool, RewardsConfig, RewardSpec
from r1lab.rollout.base import RolloutEngine, SamplingParams
from r1lab.training.losses import GRPOLossConfig, group_advantages, trainable

__all__ = [
    "PromptStream",
    "Rollout",
    "ScheduledPrompts",
    "PendingRollout",
    "batch_metrics",
    "finish_rollout",
    "generate_rollout",
    "start_rollout",
    "reward_pool",
]


@dataclass
class Rollout:
    """One rollout batch. Response ``i`` belongs to prompt group ``i // G``."""

    problems: list[Problem]  # per response
    prompt_ids: list[list[int]]
    response_ids: list[list[int]]
    old_logprobs: list[Tensor]  # π_old: the sampling policy's log-prob of each token
    truncated: list[bool]
    texts: list[str]
    rewards: Tensor  # [N] Σ weight · reward (0 where unscored)
    per_reward: dict[str, list[float]]
    failures: dict[str, int]
    failed: dict[str, list[bool]]  # per reward: the responses it failed on
    scored: Tensor  # [N] bool: no weighted reward failed, so the total is known
    trainable: Tensor  # [N] bool: scored, in a group with at least two scored responses
    advantages: Tensor  # [N]
    group_size: int
    seconds: float  # generation (and the reward models' scoring)
    ref_logprobs: list[Tensor] | None = None
    ref_seconds: float = 0.0  # the reference pass (and π_old recomputed, when configured)
    reward_seconds: float = 0.0  # the rule rewards' compute time, summed over their chunks
    reward_wait_seconds: float = 0.0  # of which the trainer waited for, after its own work


@dataclass
class PendingRollout:
    """A rollout whose responses are sampled while the reward pool still scores them: the
    trainer runs its reference pass meanwhile, then :func:`finish_rollout` collects them."""

    out: dict[str, list]
    futures: list[Any]
    model_rewards: dict[str, list[float]]
    weights: dict[str, float]
    group_size: int
    seconds: float

    @property
    def prompt_ids(self) -> list[list[int]]:
        return self.out["prompt"]

    @property
    def response_ids(self) -> list[list[int]]:
        return self.out["resp"]


def start_rollout(
    engine: RolloutEngine,
    pool: RewardPool,
    problems: list[Problem],
    prompt_ids: list[list[int]],
    params: SamplingParams,
    chunk: int,
    active: set[str] | None = None,
    models: Any = None,
    weights: dict[str, float] | None = None,
) -> PendingRollout:
    """Sample ``params.n`` responses per prompt and start scoring them.

    Generation runs in chunks of ``chunk`` prompts (each with its own seed, derived from
    ``params.seed``), and each chunk goes to the reward pool as soon as it is sampled, so
    the rule rewards run while later chunks generate (and, until :func:`finish_rollout`,
    while the trainer runs its reference pass: the report's overlap). The reward models
    (``models``, :class:`~r1lab.inference.reward_model.RewardModels`, at ``weights``) score
    the whole batch here; only the rewards in ``active`` (None: all) are computed.
    """
    started = time.time()
    g = params.n
    out: dict[str, list] = {k: [] for k in ("p", "prompt", "resp", "logp", "trunc", "text")}
    futures, batch = [], []
    for c, start in enumerate(range(0, len(prompt_ids), chunk)):
        chunk_params = SamplingParams(**{**vars(params), "seed": params.seed * 1009 + c})
        groups = engine.generate(prompt_ids[start : start + chunk], chunk_params)
        samples = []
        for k, completions in enumerate(groups):
            problem, ids = problems[start + k], prompt_ids[start + k]
            if len(completions) != g:
                raise RuntimeError(f"engine returned {len(completions)} completions, not {g}")
            for comp in completions:
                if len(comp.logprobs) != len(comp.token_ids):
                    raise RuntimeError("engine returned log-probs that do not match the tokens")
                truncated = comp.finish_reason == "length"
                out["p"].append(problem)
                out["prompt"].append(ids)
                out["resp"].append(list(comp.token_ids))
                out["logp"].append(torch.tensor(comp.logprobs, dtype=torch.float32))
                out["trunc"].append(truncated)
                out["text"].append(comp.text)
                meta = {**problem.meta, "answer": problem.answer}
                samples.append(Sample(problem.question, comp.text, meta, truncated))
        futures.append(pool.submit(samples, active))
        batch.extend(samples)
    model_rewards = models.score(batch, active) if models else {}
    return PendingRollout(out, futures, model_rewards, weights or {}, g, time.time() - started)


def finish_rollout(pending: PendingRollout, loss_cfg: GRPOLossConfig) -> Rollout:
    """Wait for the rule rewards of ``pending`` and compute the group advantages."""
    waited = time.time()
    results = [f.result() for f in pending.futures]
    waited = time.time() - waited
    g, out = pending.group_size, pending.out

    names = list(results[0].per_reward) if results else []
    per_reward = {n: [v for r in results for v in r.per_reward[n]] for n in names}
    failures = {n: sum(r.failures.get(n, 0) for r in results) for n in names}
    failed = {n: [f for r in results for f in r.failed[n]] for n in names}
    rewards = torch.tensor([v for r in results for v in r.total], dtype=torch.float32)
    # A response whose reward failed is no wrong answer: it is left out of its group's
    # statistics and of the loss.
    scored = ~torch.tensor([u for r in results for u in r.unscored], dtype=torch.bool)
    for name, values in pending.model_rewards.items():
        per_reward[name], failures[name], failed[name] = values, 0, [False] * len(values)
        weight = pending.weights.get(name, 1.0)
        rewards += torch.where(scored, weight * torch.tensor(values, dtype=torch.float32), 0.0)
    adv = group_advantages(
        rewards,
        g,
        scale=loss_cfg.scale_rewards,
        unbiased=loss_cfg.std_unbiased,
        eps=loss_cfg.adv_eps,
        scored=scored,
    )
    return Rollout(
        out["p"], out["prompt"], out["resp"], out["logp"], out["trunc"], out["text"],
        rewards, per_reward, failures, failed, scored, trainable(scored, g), adv, g,
        pending.seconds, reward_seconds=sum(r.seconds for r in results),
        reward_wait_seconds=waited,
    )  # fmt: skip


def generate_rollout(
    engine: RolloutEngine,
    pool: RewardPool,
    problems: list[Problem],
    prompt_ids: list[list[int]],
    params: SamplingParams,
    chunk: int,
    loss_cfg: GRPOLossConfig,
    active: set[str] | None = None,
    models: Any = None,
    weights: dict[str, float] | None = None,
) -> Rollout:
    """:func:`start_rollout`, then :func:`finish_rollout` at once (no work in between)."""
    pending = start_rollout(engine, pool, problems, prompt_ids, params, chunk, active, models,
                            weights)  # fmt: skip
    return finish_rollout(pending, loss_cfg)


def batch_metrics(
    ro: Rollout, idx: list[int], only: dict[str, list[str]] | None = None
) -> dict[str, float]:
    """Reward means, accuracy, format rate, language consistency, lengths, truncation, the
    share of reflecting responses (``Wait,`` / ``等等，``) and the entropy estimate of the
    responses ``idx``. A reward routed to some tasks (``only``) is averaged over their
    responses alone."""
    only = only or {}
    n = max(len(idx), 1)
    lengths = [len(ro.response_ids[i]) for i in idx]
    scored = [i for i in idx if ro.scored[i]]
    out: dict[str, float] = {
        "reward/total": float(ro.rewards[scored].mean()) if scored else 0.0,
        "reward_unscored": (len(idx) - len(scored)) / n,
    }
    for name, values in ro.per_reward.items():
        ok = [i for i in idx if not ro.failed[name][i]
              and (name not in only or ro.problems[i].meta.get("task") in only[name])]  # fmt: skip
        out[f"reward/{name}"] = sum(values[i] for i in ok) / max(len(ok), 1)
    named = {"accuracy": "accuracy", "format": "format_rate", "language": "language_consistency"}
    for name, key in named.items():
        if name in ro.per_reward:
            out[key] = out[f"reward/{name}"]
    tokens = sum(lengths)
    # -log π_old of the sampled tokens averages to the policy's entropy per token: an
    # unbiased estimate that needs no full-vocabulary softmax.
    nll = sum(float(-ro.old_logprobs[i].sum()) for i in idx)
    out.update(
        response_len_mean=tokens / n,
        response_len_max=max(lengths, default=0),
        truncated=sum(ro.truncated[i] for i in idx) / n,
        reflection_rate=sum(has_reflection(ro.texts[i]) for i in idx) / n,
        entropy=nll / max(tokens, 1),
    )
    return out


def reward_pool(cfg: RewardsConfig) -> RewardPool:
    """The configured rewards, plus those of ``cfg.metrics`` at weight 0, for the metrics."""
    specs = cfg.specs()
    names = {s.name for s in specs}
    for name in cfg.metrics:
        if name not in names:
            specs.append(RewardSpec(name, 0.0, name in cfg.inline, tuple(cfg.only.get(name, ()))))
    return RewardPool(specs, cfg.workers, cfg.timeout_s, cfg.chunk_size, cfg.start_method)


def _prompt_order(n: int, seed: int, epoch: int) -> list[int]:
    # Seeded by (seed, epoch) alone, so a resumed run rebuilds it without replaying RNG.
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch + 7)
    return torch.randperm(n, generator=gen).tolist()


class PromptStream:
    """The run's prompts in order: the task reshuffled every epoch (seeded by the run's seed
    and the epoch, so a resumed run rebuilds the order without replaying RNG), each prompt
    rendered once."""

    def __init__(
        self,
        problems: list[Problem],
        tokenizer: Any,
        task: TaskConfig,
        seed: int,
        model_prompt: dict[str, str] | None = None,
    ):
        self.problems, self.tokenizer, self.task, self.seed = problems, tokenizer, task, seed
        self.model_prompt = model_prompt
        self._orders: dict[int, list[int]] = {}
        self._ids: dict[int, list[int]] = {}

    def take(self, start: int, count: int) -> tuple[list[Problem], list[list[int]]]:
        """Prompts ``start .. start + count - 1`` of the run: problems and token ids."""
        chosen = []
        for k in range(start, start + count):
            epoch, j = divmod(k, len(self.problems))
            if epoch not in self._orders:
                self._orders[epoch] = _prompt_order(len(self.problems), self.seed, epoch)
            chosen.append(self._orders[epoch][j])
        for i in chosen:
            if i not in self._ids:
                p = self.problems[i]
                template = prompt_template_for(self.task, p, self.model_prompt)
                self._ids[i] = render_prompt(self.tokenizer, p, template)
        return [self.problems[i] for i in chosen], [self._ids[i] for i in chosen]


class ScheduledPrompts:
    """The run's prompts by rollout, with ``grpo.task_schedule``: the prompts of a scheduled
    task are drawn only by the rollouts that start in its range. Each set of tasks on has its
    own :class:`PromptStream`, read on from where its last rollout left it, so the prompts of
    a rollout are a function of the seed and the rollout alone (a resumed run draws the same)."""

    def __init__(self, problems: list[Problem], tokenizer: Any, cfg: Any,
                 model_prompt: dict[str, str] | None) -> None:  # fmt: skip
        self.problems, self.tokenizer, self.cfg, self.model_prompt = (
            problems,
            tokenizer,
            cfg,
            model_prompt,
        )
        self.streams: dict[frozenset[str], PromptStream] = {}

    def _on(self, step: int) -> frozenset[str]:
        g = self.cfg.grpo
        return frozenset(t for t, span in g.task_schedule.items() if in_span(span, step, g.steps))

    def take(
        self, rollout: int, per_rollout: int, count: int
    ) -> tuple[list[Problem], list[list[int]]]:
        on = self._on(rollout * per_rollout)
        earlier = sum(self._on(r * per_rollout) == on for r in range(rollout))
        if on not in self.streams:
            scheduled = self.cfg.grpo.task_schedule
            chosen = [p for p in self.problems
                      if p.meta.get("task") not in scheduled or p.meta.get("task") in on]  # fmt: skip
            if not chosen:
                raise UserError(
                    f"grpo.task_schedule: no prompt to draw at step {rollout * per_rollout}"
                )
            self.streams[on] = PromptStream(chosen, self.tokenizer, self.cfg.task,
                                            self.cfg.run.seed, self.model_prompt)  # fmt: skip
        return self.streams[on].take(earlier * count, count)
