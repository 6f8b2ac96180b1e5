"""pass@1, cons@k and the side metrics, pinned on small hand-computed cases."""

from __future__ import annotations

import pytest

from r1lab.data.problem import Problem
from r1lab.eval.metrics import answer_key, majority_vote, pass_at, same_answer, score_predictions


def r(answer: str | None, think: str = "thinking") -> str:
    """A response with ``answer`` in answer tags (None: no answer block)."""
    return (
        f"<think>{think}</think>\n<answer>{answer}</answer>"
        if answer is not None
        else f"<think>{think}</think>"
    )


def problem(pid: str, gold: str, language: str = "en") -> Problem:
    return Problem(id=pid, question=f"question {pid}", answer=gold, meta={"language": language})


def test_pass1_and_cons_hand_computed():
    problems = [problem("a", "42"), problem("b", "7")]
    predictions = [
        [r("42"), r("41"), r("42"), r(None)],  # 2/4 right; vote 42 (2) -> right
        [
            r("8"),
            r("8"),
            r("7"),
            "7",
        ],  # 1/4 right (a bare "7" has no answer block); vote 8 -> wrong
    ]
    m = score_predictions(problems, predictions).metrics
    assert m["pass@1"] == pytest.approx((2 / 4 + 1 / 4) / 2)  # 0.375
    assert m["cons@4"] == 0.5
    assert m["answer_rate"] == pytest.approx(6 / 8)
    assert m["format_rate"] == pytest.approx(6 / 8)  # r(None) and the bare "7" are malformed
    assert m["problems"] == 2 and m["k"] == 4


def test_pass1_is_mean_over_problems_not_samples():
    # 1 of 1 right and 0 of 3 right: mean per problem 0.5, not 1/4 over all samples
    problems = [problem("a", "1"), problem("b", "2")]
    m = score_predictions(problems, [[r("1")], [r("5"), r("5"), r("5")]]).metrics
    assert m["pass@1"] == 0.5


def test_tie_goes_to_the_answer_seen_first():
    assert majority_vote(["3", "5", "5", "3"]) == ("3", 2)
    assert majority_vote(["5", "3", "3", "5"]) == ("5", 2)
    problems = [problem("a", "3"), problem("b", "3")]
    result = score_predictions(
        problems, [[r("3"), r("5"), r("5"), r("3")], [r("5"), r("3"), r("3"), r("5")]]
    )
    assert [rec["majority_correct"] for rec in result.records] == [True, False]
    assert result.metrics["cons@4"] == 0.5
    assert result.metrics["pass@1"] == 0.5


def test_equivalent_answers_vote_together():
    # 1/2, 0.5 and \frac{1}{2} are one answer with 3 votes; "3" has 2
    assert majority_vote(["3", "1/2", "0.5", "3", "\\frac{1}{2}"]) == ("1/2", 3)
    assert majority_vote(["1,000", "999", "1000", "999", "$1000$"]) == ("1,000", 3)
    m = score_predictions(
        [problem("a", "\\frac12")], [[r("3"), r("1/2"), r("0.5"), r("3"), r("\\frac{1}{2}")]]
    ).metrics
    assert m["cons@5"] == 1.0
    assert m["pass@1"] == pytest.approx(3 / 5)


def test_no_answers_scores_zero():
    assert majority_vote([None, None, " "]) == (None, 0)
    result = score_predictions([problem("a", "4")], [[r(None), "4", r("")]])
    assert result.metrics["pass@1"] == 0.0
    assert result.metrics["cons@3"] == 0.0
    assert result.records[0]["majority"] is None


def test_answer_key_and_same_answer():
    assert answer_key(" \\$1,234.50. ") == "1234.50"
    assert answer_key("$x^2$") == "x^2"
    assert same_answer("18.90", "\\$18.9")
    assert not same_answer("12", "21")
    assert answer_key("\\pi r") != answer_key("\\pir")  # spacing in LaTeX can matter


def test_lengths_truncation_and_languages():
    problems = [problem("a", "10", "en"), problem("b", "20", "zh")]
    predictions = [[r("10", "ten"), r("11", "ten")], [r("20", "二十"), r("20", "twenty")]]
    result = score_predictions(
        problems,
        predictions,
        num_tokens=[[10, 30], [20, 40]],
        finish_reasons=[["stop", "length"], ["stop", "stop"]],
    )
    m = result.metrics
    assert m["mean_tokens"] == 25.0
    assert m["truncation_rate"] == 0.25
    assert m["pass@1"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["language_consistency"] == pytest.approx((1 + 1 + 1 + 0) / 4)
    assert set(result.by_language) == {"en", "zh"}
    assert result.by_language["en"]["pass@1"] == 0.5
    assert result.by_language["zh"]["pass@1"] == 1.0
    assert result.by_language["zh"]["language_consistency"] == 0.5
    assert result.by_language["zh"]["problems"] == 1


def test_one_language_has_no_breakdown():
    result = score_predictions([problem("a", "1"), problem("b", "2")], [[r("1")], [r("2")]])
    assert result.by_language == {}


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="2 prediction lists for 1 problems"):
        score_predictions([problem("a", "1")], [[r("1")], [r("1")]])


def test_unbiased_pass_at_k_hand_computed():
    # n=4 samples, c=1 right: pass@1 = 1/4, pass@4 = 1 (some sample of all four is right);
    # n=16, c=2: pass@4 = 1 - C(14,4)/C(16,4) = 1 - 1001/1820 = 0.45
    assert pass_at(4, 1, 1) == pytest.approx(0.25)
    assert pass_at(4, 1, 4) == 1.0
    assert pass_at(16, 2, 4) == pytest.approx(1 - 1001 / 1820)
    assert pass_at(16, 0, 16) == 0.0 and pass_at(16, 16, 1) == 1.0
    with pytest.raises(ValueError):
        pass_at(4, 1, 16)
    problems = [problem("a", "1"), problem("b", "2")]
    preds = [[r("1")] + [r("0")] * 15, [r("2")] * 2 + [r("0")] * 14]
    m = score_predictions(problems, preds).metrics
    assert m["pass@1"] == pytest.approx((1 / 16 + 2 / 16) / 2)
    assert m["pass@4"] == pytest.approx((4 / 16 + 1 - 1001 / 1820) / 2)  # C(15,4)/C(16,4)=12/16
    assert m["pass@16"] == 1.0
    assert m["cons@16"] == 0.0  # "0" wins both votes


def test_pass_at_k_only_where_samples_allow():
    m = score_predictions([problem("a", "1")], [[r("1")] * 3]).metrics
    assert "pass@4" not in m and "pass@16" not in m and m["pass@1"] == 1.0


def test_greedy_pass1_and_reflection_rate():
    problems = [problem("a", "1"), problem("b", "2"), problem("c", "3")]
    preds = [[r("1"), r("0")], [r("0", think="x. Wait, no"), r("2")], [r("3"), r("3")]]
    greedy = [r("1"), r("0"), r("3", think="等等，重新算")]
    result = score_predictions(problems, preds, greedy=greedy)
    assert result.metrics["greedy_pass@1"] == pytest.approx(2 / 3)
    assert result.metrics["reflection_rate"] == pytest.approx(1 / 6)
    assert [rec["greedy"]["correct"] for rec in result.records] == [True, False, True]
    assert "greedy_pass@1" not in score_predictions(problems, preds).metrics
    with pytest.raises(ValueError):
        score_predictions(problems, preds, greedy=greedy[:2])
