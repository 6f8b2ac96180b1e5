"""Answer extraction and math-verify checking, pinned on hand-picked cases."""

import pytest

from r1lab.rewards.answer import check_math, extract_answer, gsm8k_gold, numeric_answer
from r1lab.rewards.base import Sample
from r1lab.rewards.rules import accuracy


def test_extract_answer_takes_the_last_block():
    assert extract_answer("<answer>1</answer> then <answer> 42 </answer>") == "42"
    assert extract_answer("no tags here") is None


def test_gsm8k_gold_drops_thousands_separators():
    assert gsm8k_gold("so she pays 1,200 dollars\n#### 1,200") == "1200"
    with pytest.raises(ValueError):
        gsm8k_gold("no marker")


@pytest.mark.parametrize(
    ("pred", "gold", "ok"),
    [
        ("942", "942", True),
        ("-175", "-175", True),
        ("175", "-175", False),
        ("\\frac{1}{2}", "0.5", True),
        ("$\\frac{1}{2}$", "\\frac12", True),
        ("\\$18", "18", True),  # an escaped dollar is a price, not math mode
        ("18 dollars", "18", True),
        ("", "18", False),
        (None, "18", False),
    ],
)
def test_check_math(pred, gold, ok):
    assert check_math(pred, gold) is ok


# --- answers that must not be paid -----------------------------------------------------------
# When the gold is a number, the answer is a claim of one number. Each of these evaluates to
# (or contains) the gold under math-verify or sympy, and each is wrong.

ADVERSARIAL = [
    # the embedded task: the question restated or half-computed
    ("347+589", "936"),
    ("347 + 589", "936"),
    ("$347+589$", "936"),
    ("\\boxed{347+589}", "936"),
    ("936+0", "936"),
    ("1000-64", "936"),
    ("12-345", "-333"),
    ("-(345-12)", "-333"),
    ("345-12", "333"),
    # two candidates
    ("936 or 826", "936"),
    ("826 or 936", "936"),
    ("936, 826", "936"),
    ("936 826", "936"),
    ("936或826", "936"),
    ("936 (or 826)", "936"),
    # hedges
    ("about 936", "936"),
    ("approximately 936", "936"),
    ("936 maybe", "936"),
    ("大约936", "936"),
    ("936左右", "936"),
    ("936?", "936"),
    # math: unevaluated expressions whose value is the gold
    ("\\frac{6}{2}+15", "18"),
    ("2*9", "18"),
    ("3^2*2", "18"),
    ("\\sqrt{324}", "18"),
    ("x = 9+9", "18"),
    ("18 = 18", "18"),
    ("\\frac{1}{4}+\\frac{1}{4}", "\\frac{1}{2}"),
    ("=18", "18"),
]


@pytest.mark.parametrize(("pred", "gold"), ADVERSARIAL)
def test_adversarial_answers_are_wrong(pred, gold):
    assert not numeric_answer(pred)
    assert check_math(pred, gold) is False
    completion = f"<think>Let me see.</think>\n<answer>{pred}</answer>"
    assert accuracy([Sample("What is 347+589?", completion, {"answer": gold})]) == [0.0]


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        ("936", "936"),
        ("$936$", "936"),
        ("\\boxed{936}", "936"),
        ("936.", "936"),
        ("-333", "-333"),
        ("x = 18", "18"),
        ("18 dollars", "18"),
        ("\\$18.90", "18.90"),
        ("1,234", "1234"),
        ("0.5", "\\frac{1}{2}"),
        ("\\frac{2}{4}", "0.5"),
        ("25\\%", "25\\%"),
        ("936元", "936"),
    ],
)
def test_plain_numbers_are_right(pred, gold):
    assert numeric_answer(pred)
    assert check_math(pred, gold) is True


def test_non_numeric_golds_still_compare_by_value():
    # the number rule applies only when the gold is a number
    assert check_math("x^2+2x+1", "(x+1)^2") is True
    assert check_math("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}") is True
