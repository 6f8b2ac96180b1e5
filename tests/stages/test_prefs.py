"""``r1lab prefs``: judging each pair 4×, A/B swapped, removes the oracle judge's position
bias, and the length balance removes its length bias, both measured on the kept pairs (the
report's two precautions, §9.2); the margin and the per-step counts."""

from __future__ import annotations

import random

import pytest

from r1lab.data.filters import Funnel
from r1lab.judge.client import JudgeConfig
from r1lab.judge.oracle import OracleConfig
from r1lab.judge.session import judge_session
from r1lab.stages.prefs import PrefsConfig, _orders, bias_report, judge_pairs, keep_pairs
from r1lab.world.general import all_general

GREETINGS = [
    p for p in all_general() if p.meta["kind"] == "greeting" and p.meta["language"] == "en"
]
# true helpfulness (r1lab.world.general.helpfulness) to an English greeting: 10, 10, 3, 3
GOOD = "Hi! How can I help?"  # 19 characters
GOOD_LONG = "Hello! It is so very nice to meet you. How can I help you today?"  # 64
BAD = "你好！有什么可以帮你的吗？"  # 13: the wrong language
BAD_LONG = "你好！有什么可以帮你的吗？我很高兴认识你。"  # 21


def _pair(prompt: str, a: str, b: str, rng: random.Random | None, flip: bool = False) -> dict:
    if (rng.random() < 0.5) if rng is not None else flip:
        a, b = b, a
    return {"prompt": prompt, "a": a, "b": b, "a_response": a, "b_response": b}


def _judged(oracle: OracleConfig, pairs: list[dict], swap: bool, tmp_path) -> list[dict]:
    with judge_session(JudgeConfig(), oracle, None) as judge:
        return judge_pairs(pairs, judge, judgings=4, swap=swap, seed=0)


def test_orders_show_candidate_one_first_then_half_each_way():
    rng = random.Random(0)
    for n in (2, 4, 6):
        orders = _orders(n, True, rng)
        assert orders[0] is False and sum(orders) == n // 2
    assert _orders(4, False, rng) == [False] * 4


def _items(p, k: int, start: int) -> str:
    from r1lab.world.general import CATEGORIES

    words = [en for en, _ in CATEGORIES[p.meta["category"]]]
    return ", ".join(words[(start + i) % len(words)] for i in range(k))


def test_swapped_judging_removes_the_position_bias(tmp_path):
    # pairs of equally good answers (two different lists one item short: mid-scale, where
    # nothing is clipped), and pairs with a real difference (the full list against one
    # item): with the order fixed, the judge's +2 for answer A alone decides the equal
    # pairs, always for candidate 1
    lists = [p for p in all_general() if p.meta["kind"] == "list" and p.meta["language"] == "en"]
    n = lambda p: p.meta["count"]  # noqa: E731
    pairs = [_pair(p.question, _items(p, n(p) - 1, 0), _items(p, n(p) - 1, 1), None)
             for p in lists]  # fmt: skip
    # the better one is candidate 1 of every other pair: unbiased, half the winners are first
    pairs += [_pair(p.question, _items(p, n(p), 0), _items(p, 1, 2), None, flip=i % 2 == 1)
              for i, p in enumerate(lists)]  # fmt: skip
    oracle = OracleConfig(noise=1.0, position_bias=2.0, length_bias=0.0, seed=3)
    cfg = PrefsConfig(length_balance=False)
    fixed = bias_report(_judged(oracle, pairs, False, tmp_path), cfg)
    swapped_pairs = _judged(oracle, pairs, True, tmp_path)
    swapped = bias_report(swapped_pairs, cfg)

    # the judge's own bias, measured: about +2 points for answer A (a little less: the full
    # lists' scores are clipped at 10)
    assert swapped["position"]["judge_a_minus_b"] == pytest.approx(2.0, abs=0.5)
    first = "first_candidate_chosen"
    # one judgement (the first, candidate 1 as A, the same request both ways): A wins
    assert fixed["position"][first]["one_judgement"] > 0.6
    assert swapped["position"][first]["one_judgement"] == fixed["position"][first]["one_judgement"]
    # four in the same order: still A; four with two swapped: the bias is gone
    assert fixed["position"][first]["mean"] > 0.6
    assert swapped["position"][first]["mean"] == pytest.approx(0.5, abs=0.1)
    # what is kept is then what is truly better (equal pairs no longer pass the margin)
    assert fixed["truth_agreement"]["mean"] < 0.7
    assert swapped["truth_agreement"]["mean"] > 0.85
    # every kept pair has a margin above 1
    funnel = Funnel()
    kept = keep_pairs(swapped_pairs, cfg, funnel)
    assert all(p["margin"] > 1 for p in kept) and funnel.counts()["margin"]["out"] == len(kept)
    assert all(p["chosen"].count(",") >= p["rejected"].count(",") for p in kept)


def test_length_balance_removes_the_length_bias(tmp_path):
    # equally good answers of very different lengths (the judge prefers the longer), and
    # pairs of similar length with a real difference, where the better is as often shorter
    rng = random.Random(2)
    pairs = [_pair(p.question, GOOD, GOOD_LONG, rng) for p in GREETINGS]
    pairs += [_pair(p.question, GOOD, BAD if i % 2 else BAD_LONG, rng)
              for i, p in enumerate(GREETINGS)]  # fmt: skip
    oracle = OracleConfig(noise=0.5, position_bias=0.0, length_bias=2.0, seed=4)
    cfg = PrefsConfig(max_length_ratio=1.5)
    judged = _judged(oracle, pairs, True, tmp_path)
    report = bias_report(judged, cfg)
    before, after = report["length"]["before_balance"], report["length"]["after_balance"]
    assert before["chosen_longer"] > 0.7 and before["mean_log2_length_ratio"] > 0.5
    assert after["chosen_longer"] == pytest.approx(0.5, abs=0.1)
    assert abs(after["mean_log2_length_ratio"]) < 0.3
    assert report["truth_agreement"]["mean"] < 0.7
    assert report["truth_agreement"]["after_length_balance"] == 1.0
    funnel = Funnel()
    kept = keep_pairs(judged, cfg, funnel)
    assert len(kept) == after["pairs"] and funnel.counts()["length_balance"]["out"] == len(kept)
    off = keep_pairs(judged, PrefsConfig(length_balance=False), Funnel())
    assert len(off) == before["pairs"] > len(kept)
