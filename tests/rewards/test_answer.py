"""Answer extraction and math-verify checking, pinned on hand-picked cases."""

import pytest

from r1lab.rewards.answer import check_math, extract_answer, gsm8k_gold


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
