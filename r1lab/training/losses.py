"""GRPO's math as small pure functions: group advantages, the clipped surrogate, the k3 KL
estimator and loss aggregation, composed by :func:`grpo_loss`.

Shapes: ``B`` sampled responses, ``T`` the padded response length. Token tensors are
``[B, T]``; ``mask`` is ``[B, T]`` (bool or 0/1) and marks the response tokens that count.
Values at masked-out positions are never read (they may be ``-inf`` or garbage from
padding), so padding cannot leak NaN into the loss or its gradient.

The objective, for the G responses o_i of a prompt (DeepSeekMath / R1 report):

    A_i   = (r_i - mean(r)) / std(r)
    ρ_i,t = π_θ(o_i,t | ·) / π_old(o_i,t | ·)
    L     = -agg_t[ min(ρ A, clip(ρ, 1 - ε_low, 1 + ε_high) A) - β KL_k3(π_θ ‖ π_ref) ]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from r1lab.config import at_least, one_of, option
from r1lab.errors import UserError

# exp() of a log-ratio beyond this overflows float32 soon after; a ratio of e^20 is already
# clipped (or a sign that the policy diverged), so clamping loses nothing that matters.
_MAX_LOG_RATIO = 20.0


@dataclass
class GRPOLossConfig:
    """The knobs of the GRPO objective (advantages, clipping, KL, aggregation)."""

    eps_low: float = option(
        0.2,
        "lower clip range: the ratio is clipped below at 1 - eps_low (bites when A < 0)",
        report="10 (stage B 'clip ratio'; larger clips fewer tokens)",
        check=at_least(0),
    )
    eps_high: float = option(
        0.2,
        "upper clip range: the ratio is clipped above at 1 + eps_high (bites when A > 0); "
        "DAPO's clip-higher raises it alone",
        report="10 (stage B 'clip ratio')",
        check=at_least(0),
    )
    beta: float = option(
        0.001,
        "KL coefficient for the k3 estimate of KL(pi_theta || pi_ref); 0 drops the term and "
        "the reference model's forward pass",
        check=at_least(0),
    )
    loss_agg: str = option(
        "token-mean",
        "how per-token losses become one number: token-mean (every token of the batch weighs "
        "the same; DAPO), seq-mean-token-mean (each response weighs the same; GRPO paper), "
        "seq-mean-token-sum (token sums over a constant length; Dr. GRPO)",
        report="seq-mean-token-mean (the GRPO formula of DeepSeekMath)",
        check=one_of("token-mean", "seq-mean-token-mean", "seq-mean-token-sum"),
    )
    norm_len: int | None = option(
        None,
        "seq-mean-token-sum only: the constant that token sums are divided by; set it to the "
        "generation budget (max new tokens); null uses the batch's padded width T, which "
        "varies between batches",
        check=at_least(1),
    )
    sequence_level: bool = option(
        False,
        "one importance ratio per response, exp(mean over its tokens of log pi_theta/pi_old) "
        "(GSPO), instead of one per token",
    )
    scale_rewards: bool = option(
        True,
        "divide group-centred rewards by the group's std; false gives Dr. GRPO's unbiased "
        "A = r - mean(r)",
    )
    std_unbiased: bool = option(
        False,
        "std with Bessel's correction (divide by G-1, as torch.std and TRL do) instead of the "
        "population std (divide by G) of the report's formula",
    )
    adv_eps: float = option(1e-6, "added to the group std before dividing by it", check=at_least(0))


# --- advantages ---------------------------------------------------------------------------


def group_advantages(
    rewards: Tensor,
    group_size: int,
    *,
    scale: bool = True,
    unbiased: bool = False,
    eps: float = 1e-6,
    scored: Tensor | None = None,
) -> Tensor:
    """GRPO advantages of ``rewards`` ``[B]``, where each run of ``group_size`` consecutive
    entries holds the responses to one prompt.

    ``A = (r - mean) / (std + eps)`` with the population std by default (``unbiased=False``);
    ``scale=False`` gives ``A = r - mean`` (Dr. GRPO). A group whose rewards are all equal
    carries no signal: its advantages are exactly 0, not a rounding residue divided by eps.

    ``scored`` (bool ``[B]``, default all) marks the responses whose reward is known: the
    mean and std are taken over those alone, the others get 0, and a group with fewer than
    two scored responses gets 0 throughout (one reward compares with nothing).
    """
    if rewards.ndim != 1 or group_size < 1 or rewards.numel() % group_size:
        raise ValueError(
            f"rewards of shape {tuple(rewards.shape)} do not split into groups of {group_size}"
        )
    r = rewards.detach().to(torch.float32 if not rewards.is_floating_point() else rewards.dtype)
    r = r.reshape(-1, group_size)
    keep = torch.ones_like(r, dtype=torch.bool) if scored is None else scored.reshape(r.shape)
    w = keep.to(r.dtype)
    n = w.sum(dim=1, keepdim=True)
    mean = (r * w).sum(dim=1, keepdim=True) / n.clamp(min=1)
    adv = (r - mean) * w
    if scale:
        # Bessel's correction on a single sample is 0/0; such a group is flat anyway.
        dof = n - 1 if unbiased else n
        std = ((adv**2).sum(dim=1, keepdim=True) / dof.clamp(min=1)).sqrt()
        adv = adv / (std + eps)
    big = torch.where(keep, r, torch.full_like(r, -torch.inf)).amax(dim=1, keepdim=True)
    small = torch.where(keep, r, torch.full_like(r, torch.inf)).amin(dim=1, keepdim=True)
    no_signal = (big == small) | (n < 2)
    return torch.where(no_signal | ~keep, torch.zeros_like(adv), adv).reshape(-1)


def trainable(scored: Tensor, group_size: int) -> Tensor:
    """Responses that enter the loss: scored, in a group with at least two scored responses
    (so that a group whose rewards failed adds no gradient, not even through the KL term)."""
    s = scored.reshape(-1, group_size)
    return (s & (s.sum(dim=1, keepdim=True) >= 2)).reshape(-1)


# --- policy ratio and clipped surrogate ---------------------------------------------------


def policy_ratio(
    logp: Tensor, old_logp: Tensor, mask: Tensor, *, sequence_level: bool = False
) -> Tensor:
    """Importance ratio π_θ/π_old ``[B, T]`` from log-probs.

    Token level: ``exp(logp - old_logp)`` per token. Sequence level (GSPO): every token of
    response i carries ``s_i = exp(mean over its masked tokens of (logp - old_logp))``, the
    length-normalised sequence likelihood ratio; its gradient reaches every token of the
    response, so with advantages constant along a response the gradient is GSPO's
    ``s_i A_i mean_t ∇log π_θ`` under every aggregation in :data:`LOSS_AGGREGATIONS`.
    Masked positions hold 1 (token level) or the sequence's ratio.
    """
    mask = mask.bool()
    log_ratio = torch.where(mask, logp - old_logp, torch.zeros_like(logp))
    if sequence_level:
        n = mask.sum(dim=-1, keepdim=True).clamp(min=1)
        log_ratio = (log_ratio.sum(dim=-1, keepdim=True) / n).expand_as(logp)
    return torch.exp(log_ratio.clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO))


def clipped_surrogate(
    ratio: Tensor, advantages: Tensor, mask: Tensor, eps_low: float, eps_high: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO's clipped surrogate as a per-token loss ``-min(ρA, clip(ρ, 1-ε_low, 1+ε_high)A)``.

    ``advantages`` is ``[B]`` (one per response, broadcast over its tokens) or ``[B, T]``.
    The clip only bites on the side that would push the ratio further away: above
    ``1+eps_high`` when A > 0, below ``1-eps_low`` when A < 0; there the loss is constant
    and its gradient zero. Stats (0-dim, detached): the share of masked tokens clipped
    below (``clip_frac_low``), above (``clip_frac_high``) and either (``clip_frac``).
    """
    adv = advantages.unsqueeze(-1) if advantages.ndim == 1 else advantages
    adv = adv.to(ratio.dtype)
    clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high)
    loss = torch.maximum(-ratio * adv, -clipped * adv)
    with torch.no_grad():
        mask = mask.bool()
        low = (ratio < 1.0 - eps_low) & (adv < 0) & mask
        high = (ratio > 1.0 + eps_high) & (adv > 0) & mask
        n = mask.sum().clamp(min=1)
        stats = {
            "clip_frac_low": low.sum() / n,
            "clip_frac_high": high.sum() / n,
            "clip_frac": (low | high).sum() / n,
        }
    return loss, stats


# --- KL to the reference ------------------------------------------------------------------


def k3_kl(logp: Tensor, ref_logp: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-token k3 estimate of KL(π_θ ‖ π_ref) on tokens sampled from π_θ:
    ``π_ref/π_θ - log(π_ref/π_θ) - 1 = exp(d) - d - 1`` with ``d = ref_logp - logp``.

    Unbiased, and ≥ 0 for every token (e^d ≥ 1 + d), unlike the plain ``-d``. Positions
    outside ``mask`` give 0.
    """
    d = ref_logp - logp
    if mask is not None:
        d = torch.where(mask.bool(), d, torch.zeros_like(d))
    d = d.clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    return torch.exp(d) - d - 1.0


# --- aggregation --------------------------------------------------------------------------

LossAgg = Callable[[Tensor, Tensor, int | None], Tensor]
LOSS_AGGREGATIONS: dict[str, LossAgg] = {}


def register_loss_agg(name: str) -> Callable[[LossAgg], LossAgg]:
    """Register an aggregation ``fn(loss [B,T], mask [B,T] bool, norm_len) -> scalar``."""

    def wrap(fn: LossAgg) -> LossAgg:
        LOSS_AGGREGATIONS[name] = fn
        return fn

    return wrap


# The aggregations below normalise within the tensors they are given. A trainer that splits a
# batch into micro-batches and accumulates gradients gets the batch-level value only when the
# micro-batches have equal normalisers (token counts for token-mean, sequence counts else).


@register_loss_agg("token-mean")
def token_mean(loss: Tensor, mask: Tensor, norm_len: int | None = None) -> Tensor:
    """Sum over all masked tokens / their number: long responses weigh more (DAPO)."""
    return torch.where(mask, loss, 0.0).sum() / mask.sum().clamp(min=1)


@register_loss_agg("seq-mean-token-mean")
def seq_mean_token_mean(loss: Tensor, mask: Tensor, norm_len: int | None = None) -> Tensor:
    """Each response's token mean, averaged over responses: the GRPO paper's 1/G Σ 1/|o_i| Σ_t.

    Rows without tokens are not responses and are left out of the mean.
    """
    n = mask.sum(dim=-1)
    per_seq = torch.where(mask, loss, 0.0).sum(dim=-1) / n.clamp(min=1)
    return per_seq.sum() / (n > 0).sum().clamp(min=1)


@register_loss_agg("seq-mean-token-sum")
def seq_mean_token_sum(loss: Tensor, mask: Tensor, norm_len: int | None = None) -> Tensor:
    """Each response's token sum / a constant ``norm_len``, averaged over responses (Dr. GRPO).

    A constant divisor removes the length bias of per-response means (a long wrong answer is
    penalised per token as much as a short one). ``norm_len=None`` uses the padded width T.
    Named like this in r1lab; verl calls it ``seq-mean-token-sum-norm``.
    """
    n = mask.sum(dim=-1)
    length = norm_len if norm_len else loss.shape[-1]
    per_seq = torch.where(mask, loss, 0.0).sum(dim=-1) / length
    return per_seq.sum() / (n > 0).sum().clamp(min=1)


def aggregate(loss: Tensor, mask: Tensor, mode: str, norm_len: int | None = None) -> Tensor:
    """``loss`` ``[B, T]`` reduced to a scalar by the aggregation registered as ``mode``."""
    fn = LOSS_AGGREGATIONS.get(mode)
    if fn is None:
        known = ", ".join(sorted(LOSS_AGGREGATIONS))
        raise UserError(f"unknown loss_agg '{mode}' (known: {known})")
    return fn(loss, mask.bool(), norm_len)


# --- the GRPO loss ------------------------------------------------------------------------


def grpo_loss(
    logp: Tensor,
    old_logp: Tensor,
    ref_logp: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    cfg: GRPOLossConfig,
) -> tuple[Tensor, dict[str, float]]:
    """The GRPO loss to minimise and its metrics.

    ``logp`` (with grad), ``old_logp`` (the sampling policy) and ``ref_logp`` are ``[B, T]``
    log-probs of the sampled tokens; ``advantages`` is ``[B]`` or ``[B, T]``. The per-token
    loss is the clipped surrogate plus ``beta * k3``, aggregated by ``cfg.loss_agg``.
    ``ref_logp`` may be None only when ``cfg.beta == 0``; when given with ``beta == 0`` the
    KL is still reported.

    Metrics: ``loss``, ``pg_loss`` (surrogate part), ``kl`` (token mean of k3, when
    ``ref_logp`` is given), ``clip_frac``/``clip_frac_low``/``clip_frac_high`` (share of
    tokens), ``ratio_mean``/``ratio_min``/``ratio_max`` (over masked tokens).
    """
    if cfg.beta > 0 and ref_logp is None:
        raise ValueError("grpo_loss: beta > 0 needs ref_logp (the reference policy's log-probs)")
    mask = mask.bool()
    ratio = policy_ratio(logp, old_logp, mask, sequence_level=cfg.sequence_level)
    pg, stats = clipped_surrogate(ratio, advantages, mask, cfg.eps_low, cfg.eps_high)
    per_token = pg
    kl = None
    if ref_logp is not None:
        if cfg.beta > 0:
            kl = k3_kl(logp, ref_logp, mask)
            per_token = pg + cfg.beta * kl
        else:
            with torch.no_grad():
                kl = k3_kl(logp, ref_logp, mask)
    loss = aggregate(per_token, mask, cfg.loss_agg, cfg.norm_len)

    with torch.no_grad():
        metrics = {k: float(v) for k, v in stats.items()}
        metrics["loss"] = loss.detach().item()
        metrics["pg_loss"] = float(aggregate(pg, mask, cfg.loss_agg, cfg.norm_len))
        if kl is not None:
            metrics["kl"] = float(token_mean(kl, mask))
        if mask.any():
            r = ratio[mask]
            metrics.update(
                ratio_mean=float(r.mean()), ratio_min=float(r.min()), ratio_max=float(r.max())
            )
    return loss, metrics


# --- reward models ------------------------------------------------------------------------


def bradley_terry_loss(chosen: Tensor, rejected: Tensor) -> Tensor:
    """The pairwise loss of the helpfulness reward model: ``-log σ(r_chosen - r_rejected)``,
    the mean over pairs (Bradley–Terry: P(chosen ≻ rejected) = σ(r_c - r_r)).

    ``logsigmoid`` keeps it finite for any margin: at r_c - r_r = -100 the loss is 100, not
    ``inf``.
    """
    return -torch.nn.functional.logsigmoid(chosen - rejected).mean()


def pointwise_loss(scores: Tensor, safe: Tensor) -> Tensor:
    """The point-wise loss of the safety reward model: binary cross-entropy of σ(score), the
    probability that the response is safe, against the label (1 safe, 0 unsafe); the mean over
    examples."""
    return torch.nn.functional.binary_cross_entropy_with_logits(scores, safe.to(scores.dtype))
