"""Rule-based rewards, pinned by hand-counted cases."""

from __future__ import annotations

import threading

import pytest

from r1lab.rewards.base import Sample, get_reward
from r1lab.rewards.rules import (
    accuracy,
    count_words,
    format_ok,
    format_reward,
    language,
    language_share,
    target_language,
    think_content,
)


def s(completion: str, **meta) -> Sample:
    return Sample(prompt="q", completion=completion, meta=meta)


def test_registered_by_name():
    assert get_reward("accuracy") is accuracy
    assert get_reward("format") is format_reward
    assert get_reward("language") is language


# --- format -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "<think>a</think><answer>1</answer>",
        "  <think>\nstep 1\nstep 2\n</think>\n\n<answer> 2 </answer>\n",
        "<think>.</think><answer></answer>",  # an empty answer is well formed (and wrong)
    ],
)
def test_format_ok(text):
    assert format_ok(text)


@pytest.mark.parametrize(
    "text",
    [
        "<answer>1</answer><think>a</think>",  # answer first
        "<think>a</think><answer>1</answer> more",  # text after </answer>
        "Sure! <think>a</think><answer>1</answer>",  # text before <think>
        "<think>a</think> so <answer>1</answer>",  # text between the blocks
        "<think>a<think>b</think><answer>1</answer>",  # two <think>
        "<think>a</think>b</think><answer>1</answer>",  # two </think>
        "<think>a</think><answer>1</answer><answer>2</answer>",  # two answers
        "<think>a</think><answer>1 <answer>2</answer>",  # nested answer
        "<think>a</think>",  # no answer
        "<think>a</think><answer>1",  # unclosed answer (truncated)
        "<THINK>a</THINK><answer>1</answer>",  # tags are case-sensitive
        "the answer is 1",
        "<think></think><answer>1</answer>",  # no chain of thought
        "<think> \n </think>\n<answer>1</answer>",  # only whitespace
    ],
)
def test_format_fails(text):
    assert not format_ok(text)


def test_format_reward_values():
    assert format_reward([s("<think>a</think><answer>1</answer>"), s("1")]) == [1.0, 0.0]


# --- accuracy -----------------------------------------------------------------------------


def test_accuracy():
    samples = [
        s("<think>3 of 4</think><answer>\\frac{3}{4}</answer>", answer="3/4"),
        s("<think>…</think><answer>4</answer>", answer="3/4"),
        s("<answer>1</answer> then <answer>18</answer>", answer="18"),  # the last block counts
        s("18", answer="18"),  # no answer block
        s("<answer>18</answer>", answer=18),  # gold given as a number
        s("<answer>18</answer>"),  # no gold answer: another task's prompt
    ]
    assert accuracy(samples) == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]


def test_accuracy_off_the_main_thread():
    # math-verify's SIGALRM timeout cannot be armed here; the answer must still be checked
    out: list[list[float]] = []
    t = threading.Thread(target=lambda: out.append(accuracy([s("<answer>7</answer>", answer="7")])))
    t.start()
    t.join()
    assert out == [[1.0]]


# --- language -----------------------------------------------------------------------------


def test_count_words():
    # en: Let, x (of 2x), be, don, t, stop, rd (of 3rd) = 7; zh: 我们 (one word) = 1;
    # other: Это = 1; numbers, '=', '+', ',' and the math span '$\frac{a}{b}$' are no words
    text = "Let 2x be 4, don't stop 3rd 我们 Это 1+1=2 $\\frac{a}{b}$"
    assert count_words(text) == {"en": 7, "zh": 1, "other": 1}
    assert count_words("  12 + 3 = 15 ... ") == {"en": 0, "zh": 0, "other": 0}


@pytest.mark.parametrize(
    ("text", "counts"),
    [
        # jieba: 我来 / 一步 / 一步 / 算 = 4 words, not 6 characters
        ("我来一步一步算。", {"en": 0, "zh": 4, "other": 0}),
        # 验算 / 正确 = 2; the equation is no words
        ("验算：936-589=347，正确。", {"en": 0, "zh": 2, "other": 0}),
        # a line of a mixed trace: Tens, write, carry = 3 en; 所以 = 1 zh
        ("Tens: 4+8+1=13, write 3, carry 1. 所以347+589=936。", {"en": 3, "zh": 1, "other": 0}),
        # Chinese glued to Latin: 答案 / 是 = 2 zh, answer = 1 en
        ("answer答案是936", {"en": 1, "zh": 2, "other": 0}),
    ],
)
def test_chinese_is_counted_in_words(text, counts):
    assert count_words(text) == counts


def test_math_and_latex_commands_are_neutral():
    # after removing '$\frac{a}{b} = x$', '\(y\)' and '\sqrt': "Let  so  是 2"
    # → en: Let, so = 2; zh: 是 = 1 → en share 2/3
    text = "Let $\\frac{a}{b} = x$ so \\(y\\) 是 \\sqrt 2"
    assert count_words(text) == {"en": 2, "zh": 1, "other": 0}
    assert language_share(text, "en") == pytest.approx(2 / 3)


def test_language_english():
    # en words: First, Then, we, double, it = 5 of 5 → en 1.0, zh 0.0
    cot = "<think>First, 2 + 3 = 5. Then we double it: 5 × 2 = 10.</think><answer>10</answer>"
    assert language([s(cot, language="en"), s(cot, language="zh")]) == [1.0, 0.0]


def test_language_chinese():
    # 先 / 算 / 再 / 乘以 / 得 (jieba), no others → zh 1.0
    cot = "<think>先算 2 + 3 = 5，再乘以 2 得 10。</think><answer>10</answer>"
    assert language([s(cot, language="zh"), s(cot, language="en")]) == [1.0, 0.0]


def test_language_mixed():
    # zh: 我们, 所以, 是 = 3 words (not 5 characters); en: compute, answer = 2 → zh 3/5
    cot = "<think>我们 compute 2+3=5, 所以 answer 是 5</think><answer>5</answer>"
    zh, en = language([s(cot, language="zh"), s(cot, language="en")])
    assert zh == pytest.approx(3 / 5)
    assert en == pytest.approx(2 / 5)


def test_language_other_script_counts_against_target():
    # en: test = 1; other: Это = 1 → en 1/2
    assert language([s("<think>Это test</think>", language="en")]) == [0.5]


def test_language_edge_cases():
    samples = [
        s("The answer is 2", language="en"),  # no chain of thought → 0
        s("<think>1 + 1 = 2</think><answer>2</answer>", language="zh"),  # no words → 0
        s("<think></think><answer>2</answer>", language="en"),  # empty → 0, not 1
        s("<think>we think and think", language="en"),  # unclosed (truncated): 4/4
        # only the think blocks count: 'Answer' and '答案' outside are ignored
        s("<think>好</think> Answer <answer>答案</answer>", language="zh"),
    ]
    assert language(samples) == [0.0, 0.0, 0.0, 1.0, 1.0]


def test_target_language_falls_back_to_prompt():
    assert target_language(Sample("计算 1+1 等于多少?", "", {})) == "zh"
    assert target_language(Sample("What is 1+1?", "", {})) == "en"
    assert target_language(Sample("计算", "", {"language": "en"})) == "en"


def test_think_content_and_unknown_language():
    assert think_content("<think>a</think> x <think>b</think>") == "a\nb"
    assert think_content("no thinking") is None
    with pytest.raises(ValueError, match="fr"):
        language_share("bonjour", "fr")
