"""The oracle judge's flaws are measurable and each can be switched off: position bias, length
bias, score noise (reproducible per seed) and flipped correctness verdicts.

Comparisons and scores use a prompt the embedded world does not know, whose true score is
the same for every non-empty answer, so what moves the scores is the flaw under test alone.
"""

from __future__ import annotations

import statistics

import pytest

from r1lab.judge import prompts
from r1lab.judge.oracle import OracleConfig, OracleJudge

UNKNOWN = "Describe the smell of rain on a hot pavement, in one sentence."
SHORT = "<think>\n</think>\n<answer>\nPetrichor.\n</answer>"
LONG = "<think>\n</think>\n<answer>\nPetrichor: earthy, warm, sweet, a little like dust.\n</answer>"


def _compare(judge: OracleJudge, a: str, b: str, seed: int = 0) -> tuple[float, float]:
    pair = prompts.parse_pair(judge.reply(prompts.compare_messages(UNKNOWN, a, b), seed))
    assert pair is not None
    return pair


def test_position_bias_favours_a_and_both_orders_cancel_it():
    judge = OracleJudge(OracleConfig(noise=0, position_bias=1.0, length_bias=0))
    a, b = _compare(judge, SHORT, SHORT)
    assert a - b == pytest.approx(1.0)
    # two different answers (of the same true worth), judged in both orders
    x1, y1 = _compare(judge, SHORT, LONG)
    y2, x2 = _compare(judge, LONG, SHORT)
    assert x1 - y1 == pytest.approx(1.0) and y2 - x2 == pytest.approx(1.0)
    assert (x1 + x2) / 2 == pytest.approx((y1 + y2) / 2)
    unbiased = OracleJudge(OracleConfig(noise=0, position_bias=0, length_bias=0))
    a, b = _compare(unbiased, SHORT, SHORT)
    assert a == b


def test_length_bias_adds_one_point_of_margin_per_doubling():
    short = "x" * 40
    judge = OracleJudge(OracleConfig(noise=0, position_bias=0, length_bias=1.0))
    a, b = _compare(judge, short * 2, short)
    assert a - b == pytest.approx(1.0)
    a, b = _compare(judge, short, short * 4)
    assert a - b == pytest.approx(-2.0)
    off = OracleJudge(OracleConfig(noise=0, position_bias=0, length_bias=0))
    a, b = _compare(off, short * 2, short)
    assert a == b


def test_length_bias_of_a_single_score_is_bounded():
    judge = OracleJudge(OracleConfig(noise=0, length_bias=1.0))

    def score(answer: str) -> float:
        value = prompts.parse_score(judge.reply(prompts.helpfulness_messages(UNKNOWN, answer)))
        assert value is not None
        return value

    typical = score("y" * 64)
    assert score("y" * 128) - typical == pytest.approx(1.0)
    assert score("y" * 256) - typical == pytest.approx(2.0)
    assert score("y" * 4096) - typical == pytest.approx(2.0)  # padding buys at most two points
    assert score("") == 1.0  # an empty answer is worth nothing, bonus or not


def test_noise_is_reproducible_per_seed_and_independent_across_seeds():
    judge = OracleJudge(OracleConfig(noise=1.0))
    request = prompts.helpfulness_messages(UNKNOWN, SHORT)
    draws = [prompts.parse_score(judge.reply(request, seed)) for seed in range(8)]
    assert len(set(draws)) > 1  # another seed is another judgement
    assert statistics.pstdev(draws) > 0.2
    assert [prompts.parse_score(judge.reply(request, seed)) for seed in range(8)] == draws
    assert OracleJudge(OracleConfig(noise=1.0)).reply(request, 3) == judge.reply(request, 3)
    # the oracle's own seed changes the draws too
    other = OracleJudge(OracleConfig(noise=1.0, seed=1))
    assert [prompts.parse_score(other.reply(request, s)) for s in range(8)] != draws
    quiet = OracleJudge(OracleConfig(noise=0, length_bias=0))
    assert {quiet.reply(request, seed) for seed in range(4)} == {"SCORE: 5.5"}


CASES = [
    ("What is 2+3?", "5", "<think>\n2+3=5\n</think>\n<answer>\n5\n</answer>", True),
    ("What is 2+3?", "5", "<think>\n2+3=6\n</think>\n<answer>\n6\n</answer>", False),
    ("What is 1/2 + 1/4?", "3/4", "<answer>0.75</answer>", True),
    ("What is 10-4?", "6", "<think>\nthe answer is 6\n</think>", False),  # no final answer
    ("What is 3*3?", "9", "<answer>\n9 or 10\n</answer>", False),  # hedged
]


@pytest.mark.parametrize(("error_rate", "flipped"), [(0.0, False), (1.0, True)])
def test_correctness_verdicts_are_exact_or_all_flipped(error_rate, flipped):
    judge = OracleJudge(OracleConfig(error_rate=error_rate))
    for question, reference, response, right in CASES:
        reply = judge.reply(prompts.correctness_messages(question, reference, response))
        assert prompts.parse_verdict(reply) is (right != flipped), (response, reply)


def test_requests_outside_the_protocol_are_value_errors():
    judge = OracleJudge()
    with pytest.raises(ValueError):
        judge.reply([{"role": "user", "content": "What is 2+3?"}])
    with pytest.raises(ValueError):
        judge.reply(
            [{"role": "system", "content": "Be a judge."}, {"role": "user", "content": "x"}]
        )


def test_safety_verdicts_read_the_whole_response():
    from r1lab.world.general import all_general

    unsafe = next(
        p for p in all_general() if p.meta["kind"] == "unsafe" and p.meta["language"] == "en"
    )
    safe = next(p for p in all_general() if p.meta["kind"] == "list")
    judge = OracleJudge(OracleConfig(error_rate=0))

    def verdict(prompt, response, j=judge):
        return prompts.parse_safety(j.reply(prompts.safety_messages(prompt.question, response)))

    refusal = "<think></think>\n<answer>Sorry, I can't help with that.</answer>"
    comply = "<think></think>\n<answer>Sure: first, get the parts.</answer>"
    plan_then_refuse = "<think>First get the parts, then mix them.</think>\n<answer>Sorry, I can't help with that.</answer>"
    assert verdict(unsafe, refusal) is True
    assert verdict(unsafe, comply) is False
    assert verdict(unsafe, plan_then_refuse) is False  # the reasoning counts
    assert verdict(safe, refusal) is True  # unhelpful, not unsafe
    assert verdict(safe, comply) is True
    flipped = OracleJudge(OracleConfig(error_rate=1.0))
    assert verdict(unsafe, refusal, flipped) is False
