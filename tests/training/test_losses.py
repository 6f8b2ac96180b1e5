"""GRPO math pinned by hand-computed cases (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest
import torch

from r1lab.errors import UserError
from r1lab.training.losses import (
    LOSS_AGGREGATIONS,
    GRPOLossConfig,
    aggregate,
    clipped_surrogate,
    group_advantages,
    grpo_loss,
    k3_kl,
    policy_ratio,
)

SQRT3 = math.sqrt(3.0)


def close(actual, expected, tol=1e-5):
    expected = torch.as_tensor(expected, dtype=torch.float32)
    torch.testing.assert_close(actual.float(), expected, atol=tol, rtol=tol)


# --- advantages ---------------------------------------------------------------------------


def test_group_advantages_g4_population_std():
    # group 1: r = [1, 0, 0, 0]: mean 0.25, r - mean = [0.75, -0.25, -0.25, -0.25]
    #   population var = (0.75² + 3·0.25²) / 4 = 0.75 / 4 = 0.1875, std = √3/4
    #   A = [0.75/(√3/4), -0.25/(√3/4)] = [√3, -1/√3]
    # group 2: r = [1, 1, 0, 0]: mean 0.5, std 0.5, A = [1, 1, -1, -1]
    r = torch.tensor([1.0, 0, 0, 0, 1, 1, 0, 0])
    a = group_advantages(r, 4, eps=0.0)
    close(a, [SQRT3, -1 / SQRT3, -1 / SQRT3, -1 / SQRT3, 1, 1, -1, -1])
    # each group's advantages sum to zero
    close(a.reshape(2, 4).sum(1), [0.0, 0.0])


def test_group_advantages_unbiased_std():
    # r = [1, 0, 0, 0]: sample var = 0.75 / (4 - 1) = 0.25, std 0.5
    #   A = [0.75/0.5, -0.25/0.5] = [1.5, -0.5, -0.5, -0.5]   (TRL's torch.std choice)
    a = group_advantages(torch.tensor([1.0, 0, 0, 0]), 4, unbiased=True, eps=0.0)
    close(a, [1.5, -0.5, -0.5, -0.5])


def test_group_advantages_eps_in_denominator():
    # r = [3, 1]: mean 2, population std 1; eps 1 → A = ±1 / (1 + 1) = ±0.5
    close(group_advantages(torch.tensor([3.0, 1.0]), 2, eps=1.0), [0.5, -0.5])


def test_group_advantages_dr_grpo_no_scaling():
    # Dr. GRPO: A = r - mean = [1 - 0.25, 0 - 0.25, ...]
    a = group_advantages(torch.tensor([1.0, 0, 0, 0]), 4, scale=False)
    close(a, [0.75, -0.25, -0.25, -0.25])


@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("unbiased", [True, False])
def test_equal_rewards_give_exactly_zero(scale, unbiased):
    # 0.1 has no exact binary form: mean([0.1]*3) differs from 0.1 by a rounding residue
    # that eps alone would blow up to ~1e-2; flat groups must give exactly 0.
    r = torch.tensor([0.1, 0.1, 0.1, 1.0, 1.0, 1.0, 0.0, 1.0, 0.25])
    a = group_advantages(r, 3, scale=scale, unbiased=unbiased, eps=0.0)
    assert torch.isfinite(a).all()
    assert (a[:6] == 0).all()
    assert (a[6:] != 0).all()


def test_group_size_one_is_zero_and_bad_shapes_raise():
    assert (group_advantages(torch.tensor([1.0, 0.0]), 1, unbiased=True) == 0).all()
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(5), 2)


# --- clipped surrogate --------------------------------------------------------------------

RATIOS = [0.5, 0.9, 1.1, 1.5]


@pytest.mark.parametrize(
    ("adv", "loss", "grad"),
    [
        # eps_low 0.2, eps_high 0.3 → clip range [0.8, 1.3]; loss = -min(ρA, clip(ρ)A)
        # A = +2: ρ=0.5: min(1.0, 1.6) = 1.0  → -1.0, dL/dρ = -A = -2 (below range: unclipped)
        #         ρ=0.9: 1.8 → -1.8; ρ=1.1: 2.2 → -2.2 (inside range, grad -2)
        #         ρ=1.5: min(3.0, 2.6) = 2.6  → -2.6, grad 0 (clipped high)
        (2.0, [-1.0, -1.8, -2.2, -2.6], [-2.0, -2.0, -2.0, 0.0]),
        # A = -2: ρ=0.5: min(-1.0, -1.6) = -1.6 → 1.6, grad 0 (clipped low)
        #         ρ=0.9: 1.8; ρ=1.1: 2.2 (grad -A = +2)
        #         ρ=1.5: min(-3.0, -2.6) = -3.0 → 3.0, grad +2 (above range: unclipped)
        (-2.0, [1.6, 1.8, 2.2, 3.0], [0.0, 2.0, 2.0, 2.0]),
    ],
)
def test_clipped_surrogate_sides(adv, loss, grad):
    ratio = torch.tensor([RATIOS], requires_grad=True)
    mask = torch.ones(1, 4, dtype=torch.bool)
    out, stats = clipped_surrogate(ratio, torch.tensor([adv]), mask, eps_low=0.2, eps_high=0.3)
    close(out, [loss])
    out.sum().backward()
    close(ratio.grad, [grad])
    # A > 0 clips only above 1.3 (ρ=1.5), A < 0 only below 0.8 (ρ=0.5): one token of four
    assert float(stats["clip_frac_high"]) == (0.25 if adv > 0 else 0.0)
    assert float(stats["clip_frac_low"]) == (0.25 if adv < 0 else 0.0)
    assert float(stats["clip_frac"]) == 0.25


def test_clip_stats_count_masked_tokens_only():
    # both sequences have ρ = 1.5, A = +1, eps 0.2 → every real token is clipped high;
    # real tokens: 2 + 1 = 3 of 3, padding (ρ also 1.5) does not count
    ratio = torch.full((2, 2), 1.5)
    mask = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)
    _, stats = clipped_surrogate(ratio, torch.tensor([1.0, 1.0]), mask, 0.2, 0.2)
    assert float(stats["clip_frac_high"]) == 1.0


def test_policy_ratio_token_and_sequence_level():
    # log-ratios row 0: [0.2, -0.1, 0.5 | pad], row 1: [0.3, -0.3 | pad, pad]
    logp = torch.tensor([[0.2, -0.1, 0.5, -math.inf], [0.3, -0.3, 0.0, 0.0]])
    old = torch.zeros(2, 4)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    tok = policy_ratio(logp, old, mask)
    close(tok[0, :3], [math.exp(0.2), math.exp(-0.1), math.exp(0.5)])
    assert tok[0, 3] == 1.0  # -inf in padding is never read
    # sequence level: s_0 = exp((0.2 - 0.1 + 0.5) / 3) = exp(0.2); s_1 = exp((0.3 - 0.3)/2) = 1
    seq = policy_ratio(logp, old, mask, sequence_level=True)
    close(seq, [[math.exp(0.2)] * 4, [1.0] * 4])


# --- k3 KL --------------------------------------------------------------------------------


def test_k3_hand_values():
    # d = ref - logp; k3 = e^d - d - 1
    # π_θ = 0.5, π_ref = 0.25: d = -ln2 → 0.5 + 0.693147 - 1 = 0.193147
    # π_θ = 0.25, π_ref = 0.5: d = +ln2 → 2 - 0.693147 - 1 = 0.306853
    # equal                   : d = 0   → 1 - 0 - 1 = 0
    logp = torch.log(torch.tensor([0.5, 0.25, 0.3]))
    ref = torch.log(torch.tensor([0.25, 0.5, 0.3]))
    close(k3_kl(logp, ref), [0.5 + math.log(2) - 1, 2 - math.log(2) - 1, 0.0])
    close(k3_kl(logp, ref), [0.193147, 0.306853, 0.0])


def test_k3_non_negative_and_masked():
    g = torch.Generator().manual_seed(0)
    logp, ref = torch.randn(64, generator=g) * 3, torch.randn(64, generator=g) * 3
    assert (k3_kl(logp, ref) >= 0).all()
    mask = torch.tensor([True, False])
    close(k3_kl(torch.tensor([0.0, -math.inf]), torch.tensor([0.0, 0.0]), mask), [0.0, 0.0])


# --- aggregation --------------------------------------------------------------------------

# ragged batch: lengths 4, 2, 1 and an empty row; padding holds NaN to prove it is never read
NAN = math.nan
LOSS = torch.tensor(
    [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, NAN, NAN], [7.0, NAN, NAN, NAN], [NAN, NAN, NAN, NAN]]
)
MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)


@pytest.mark.parametrize(
    ("mode", "norm_len", "expected"),
    [
        # all tokens: (1+2+3+4 + 5+6 + 7) / 7 = 28 / 7
        ("token-mean", None, 4.0),
        # per-row means 10/4 = 2.5, 11/2 = 5.5, 7/1 = 7; empty row left out → 15 / 3
        ("seq-mean-token-mean", None, 5.0),
        # per-row sums 10, 11, 7 over the constant 8 → 1.25, 1.375, 0.875 → 3.5 / 3
        ("seq-mean-token-sum", 8, 3.5 / 3),
        # norm_len None → padded width T = 4: (10 + 11 + 7) / 4 / 3 = 7 / 3
        ("seq-mean-token-sum", None, 7.0 / 3),
    ],
)
def test_aggregation_ragged(mode, norm_len, expected):
    loss = LOSS.clone().requires_grad_()
    out = aggregate(loss, MASK, mode, norm_len)
    close(out, expected)
    out.backward()
    assert torch.isfinite(loss.grad).all()
    assert (loss.grad[~MASK] == 0).all()


def test_aggregation_registry_and_unknown_name():
    assert set(LOSS_AGGREGATIONS) >= {"token-mean", "seq-mean-token-mean", "seq-mean-token-sum"}
    with pytest.raises(UserError, match="token-mean"):
        aggregate(LOSS, MASK, "token-avg")


# --- the composed loss --------------------------------------------------------------------


def test_grpo_loss_hand_value_with_kl():
    # one token: ρ = 1 (logp = old), A = 1 → surrogate -1
    # k3 with π_θ = 0.5, π_ref = 0.25 is 0.193147; β = 0.1 → loss = -1 + 0.0193147
    logp = torch.log(torch.tensor([[0.5]])).requires_grad_()
    old = logp.detach().clone()
    ref = torch.log(torch.tensor([[0.25]]))
    cfg = GRPOLossConfig(beta=0.1)
    loss, m = grpo_loss(logp, old, ref, torch.tensor([1.0]), torch.ones(1, 1), cfg)
    close(loss, -1 + 0.1 * 0.193147)
    assert m["kl"] == pytest.approx(0.193147, abs=1e-5)
    assert m["pg_loss"] == pytest.approx(-1.0)
    assert m["ratio_mean"] == pytest.approx(1.0)
    # d/dlogp: surrogate -A·ρ → -1; k3 = e^d - d - 1 with d = ref - logp → -e^d + 1 = 0.5
    # total -1 + 0.1 · 0.5 = -0.95
    loss.backward()
    close(logp.grad, [[-0.95]])


def test_zero_variance_groups_give_zero_gradient_without_nan():
    g = torch.Generator().manual_seed(1)
    adv = group_advantages(torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0]), 3)
    assert (adv == 0).all()
    logp = torch.randn(6, 5, generator=g)
    logp[:, 3:] = -math.inf  # padding as a real model may leave it
    logp.requires_grad_()
    old = torch.randn(6, 5, generator=g) * 5  # far from logp: many ratios get clipped
    ref = torch.randn(6, 5, generator=g)
    mask = torch.zeros(6, 5, dtype=torch.bool)
    mask[:, :3] = True
    for agg in LOSS_AGGREGATIONS:
        for seq in (False, True):
            cfg = GRPOLossConfig(beta=0.0, loss_agg=agg, sequence_level=seq)
            loss, m = grpo_loss(logp, old, ref, adv, mask, cfg)
            (grad,) = torch.autograd.grad(loss, logp)
            assert loss.item() == 0.0
            assert torch.isfinite(grad).all() and (grad == 0).all()
            assert all(math.isfinite(v) for v in m.values())


def test_beta_zero_needs_no_reference_and_beta_positive_does():
    logp = torch.zeros(1, 2, requires_grad=True)
    mask = torch.ones(1, 2)
    loss, m = grpo_loss(
        logp, torch.zeros(1, 2), None, torch.tensor([1.0]), mask, GRPOLossConfig(beta=0.0)
    )
    assert loss.item() == -1.0 and "kl" not in m
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(logp, torch.zeros(1, 2), None, torch.tensor([1.0]), mask, GRPOLossConfig())


def test_grpo_loss_sequence_level_clips_whole_response():
    # log-ratios row 0: [0.2, -0.1, 0.5 | pad] → s_0 = exp(0.2) = 1.2214 > 1 + 0.2: clipped
    #            row 1: [0.1, -0.1 | pad, pad] → s_1 = 1
    # A = +1 for both; seq-mean-token-mean: row 0 loss -1.2, row 1 loss -1 → (-1.2 - 1) / 2
    # grads: row 0 none (clipped); row 1 d(-s_1)/dlogp_t = -s_1 / 2 per token, then / 2 rows
    logp = torch.tensor([[0.2, -0.1, 0.5, 0.0], [0.1, -0.1, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    cfg = GRPOLossConfig(beta=0.0, sequence_level=True, loss_agg="seq-mean-token-mean")
    loss, m = grpo_loss(logp, torch.zeros(2, 4), None, torch.tensor([1.0, 1.0]), mask, cfg)
    close(loss, -1.1)
    loss.backward()
    close(logp.grad, [[0.0, 0.0, 0.0, 0.0], [-0.25, -0.25, 0.0, 0.0]])
    # 3 of the 5 real tokens belong to the clipped response
    assert m["clip_frac_high"] == pytest.approx(0.6)
    # token level on the same input clips only the 2 tokens with ρ > 1.2: exp(0.2), exp(0.5)
    _, m_tok = grpo_loss(
        logp, torch.zeros(2, 4), None, torch.tensor([1.0, 1.0]), mask, GRPOLossConfig(beta=0.0)
    )
    assert m_tok["clip_frac_high"] == pytest.approx(2 / 5)


def test_advantages_leave_out_unscored_responses():
    from r1lab.training.losses import trainable

    r = torch.tensor([1.0, 0.0, 1.0, 5.0, 1.0, 9.0, 9.0, 9.0])
    scored = torch.tensor([True, True, True, False, True, False, False, False])
    adv = group_advantages(r, 4, scored=scored)
    # group 1 over [1, 0, 1]: mean 2/3, population std sqrt(2/9); the unscored 5.0 gets 0
    s = (2 / 9) ** 0.5
    expected = torch.tensor([(1 / 3) / s, (-2 / 3) / s, (1 / 3) / s, 0, 0, 0, 0, 0])
    assert torch.allclose(adv, expected, atol=1e-5)
    # group 2 has one scored response: nothing to compare with, and it is not trained on
    assert trainable(scored, 4).tolist() == [True, True, True, False] + [False] * 4
    assert not torch.isnan(adv).any()


# --- reward-model losses --------------------------------------------------------------------


def test_bradley_terry_loss_by_hand():
    from r1lab.training.losses import bradley_terry_loss

    chosen = torch.tensor([2.0, 0.0])
    rejected = torch.tensor([0.0, 1.0])
    # -log σ(2) = log(1 + e^-2) = 0.126928;  -log σ(-1) = log(1 + e) = 1.313262
    assert float(bradley_terry_loss(chosen, rejected)) == pytest.approx(
        (0.126928 + 1.313262) / 2, abs=1e-6
    )
    # equal scores: log 2 whatever the level; only the difference counts
    same = bradley_terry_loss(torch.tensor([5.0]), torch.tensor([5.0]))
    assert float(same) == pytest.approx(math.log(2), abs=1e-6)
    # finite for a huge wrong margin (logsigmoid, not log(sigmoid))
    assert float(bradley_terry_loss(torch.tensor([-100.0]), torch.tensor([0.0]))) == (
        pytest.approx(100.0, abs=1e-4)
    )
    # the gradient pushes chosen up and rejected down by σ(r_r - r_c) / N
    c, r = torch.tensor([0.0], requires_grad=True), torch.tensor([0.0], requires_grad=True)
    bradley_terry_loss(c, r).backward()
    assert float(c.grad) == pytest.approx(-0.5) and float(r.grad) == pytest.approx(0.5)


def test_pointwise_loss_by_hand():
    from r1lab.training.losses import pointwise_loss

    scores = torch.tensor([0.0, 2.0])
    safe = torch.tensor([True, False])
    # -log σ(0) = 0.693147;  -log(1 - σ(2)) = log(1 + e^2) = 2.126928
    assert float(pointwise_loss(scores, safe)) == pytest.approx((0.693147 + 2.126928) / 2, abs=1e-6)
    assert float(pointwise_loss(torch.tensor([3.0]), torch.tensor([1.0]))) == pytest.approx(
        math.log(1 + math.exp(-3.0)), abs=1e-6
    )
