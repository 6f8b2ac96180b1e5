"""The readability filters of cold start and rejection sampling (report §6.2, §8.2).

Each filter has cases that must be kept and cases that must be dropped, on the responses the
embedded world really writes (careful and hasty traces, English and Chinese, slipped and
redone sums, the three format slips). Expected values are written by hand.
"""

from __future__ import annotations

import random

import pytest

from r1lab.data.filters import (
    FilterConfig,
    Funnel,
    answer_correct,
    consistent,
    dedupe,
    has_code_block,
    has_long_paragraph,
    is_repetitive,
    mixes_languages,
    readable,
    thought_of,
)
from r1lab.rewards.rules import count_words
from r1lab.world.problems import careful_trace, hasty_trace, render_response


def careful(lang: str = "en", slip: bool = False) -> list[str]:
    """The careful trace of 347+589 (= 936): lines of thought."""
    lines, answer = careful_trace(347, "+", 589, lang, slip, random.Random(0))
    assert answer == "936"
    return lines


def hasty(lang: str = "en") -> tuple[list[str], str]:
    """The hasty trace of 347+589 with its dropped carry: ``347+589=826``."""
    return hasty_trace(347, "+", 589, lang, 1.0, random.Random(0))


def text(lines: list[str]) -> str:
    return "\n".join(lines)


EN = text(careful("en"))
ZH = text(careful("zh"))
EN_SLIP = text(careful("en", slip=True))
ZH_SLIP = text(careful("zh", slip=True))


def test_the_world_traces_used_here():
    # premises, so that the cases below read as they claim
    assert EN.splitlines()[1] == "Ones: 347 and 589, 7+9=16, write 6, carry 1."
    assert ZH.splitlines()[1] == "个位：347和589，7+9=16，写6，进1。"
    assert "Wait, I lost a carry; let me redo it." in EN_SLIP
    assert "等等，我漏了进位，重新算。" in ZH_SLIP
    assert EN_SLIP.splitlines().count("Ones: 347 and 589, 7+9=16, write 6, carry 1.") == 2
    assert ZH_SLIP.splitlines().count("个位：347和589，7+9=16，写6，进1。") == 2
    assert hasty() == (["347+589=826."], "826")


def test_config_defaults_are_the_functions_defaults():
    cfg = FilterConfig()
    assert (cfg.max_line_repeats, cfg.ngram, cfg.max_ngram_repeats) == (2, 8, 3)
    assert (cfg.mix_tolerance, cfg.min_language, cfg.max_paragraph_chars) == (0.05, 0.99, 240)


# --- answer_correct ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    ["936", "936.0", " 936 ", "\n936\n", "\\boxed{936}", "$936$", "x = 936", "936."],
)
def test_answer_correct_keeps_the_right_answer_in_any_equal_form(answer):
    assert answer_correct(render_response(careful(), answer), "936")


def test_answer_correct_keeps_a_right_answer_in_the_layout_of_a_policy():
    response = "<think>\n" + EN + "\n</think>\n<answer>\n936\n</answer>"
    assert answer_correct(response, "936")
    assert answer_correct(render_response(careful("zh"), "936"), "936")


@pytest.mark.parametrize(
    "response",
    [
        render_response(*hasty()),  # the dropped carry: 826
        render_response(careful(), "936", broken=1),  # "The answer is 936." without tags
        render_response(careful(), "936 or 826"),  # two candidates
        render_response(careful(), "about 936"),  # a hedge
        render_response(careful(), "347+589"),  # the question restated, not a claim
        render_response(careful(), ""),  # empty answer
        "<think>" + EN + "</think>",  # no <answer> at all
    ],
)
def test_answer_correct_drops_wrong_and_missing_answers(response):
    assert not answer_correct(response, "936")


def test_answer_correct_on_a_negative_difference():
    lines, answer = careful_trace(12, "-", 345, "en", False, random.Random(0))
    assert answer == "-333"
    assert answer_correct(render_response(lines, "-333"), "-333")
    # the hasty solver's lost minus sign
    assert not answer_correct(render_response(["12-345=333."], "333"), "-333")


def test_two_answer_blocks_are_dropped_by_the_readable_filter():
    right_last = render_response(careful(), "826") + "\n<answer>936</answer>"
    right_first = render_response(careful(), "936") + "\n<answer>826</answer>"
    # answer_correct reads the last block, as the accuracy reward does ...
    assert answer_correct(right_last, "936")
    assert not answer_correct(right_first, "936")
    # ... and readable drops both, so cold start keeps neither
    for response in (right_last, right_first):
        assert not readable(response)
        assert not (readable(response) and answer_correct(response, "936"))


# --- readable --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        render_response(careful("en"), "936"),
        render_response(careful("zh", slip=True), "936"),
        render_response(*hasty()),  # a wrong answer is still readable
        "<think>\n" + EN + "\n</think>\n<answer>\n936\n</answer>",
        "  <think>" + EN + "</think>\n\n<answer>936</answer>\n",  # whitespace around is fine
    ],
)
def test_readable_keeps_the_format(response):
    assert readable(response)


@pytest.mark.parametrize(
    "response",
    [
        render_response(careful(), "936", broken=1),  # no answer tags
        render_response(careful(), "936", broken=2),  # no think tags
        render_response(careful(), "936", broken=3),  # unclosed think
        "<think></think>\n<answer>936</answer>",  # empty chain of thought
        "<think> \n \n</think>\n<answer>936</answer>",  # blank chain of thought
        "Sure!\n" + render_response(careful(), "936"),  # text before <think>
        render_response(careful(), "936") + "\nDone.",  # text after </answer>
        "<think>" + EN + "</think>\nSo:\n<answer>936</answer>",  # text between the blocks
        "<think>" + EN + "<think>again</think>\n<answer>936</answer>",  # a nested tag
    ],
)
def test_readable_drops_broken_formats(response):
    assert not readable(response)


def test_thought_of():
    assert thought_of(render_response(careful(), "936")) == EN
    assert thought_of(render_response(careful(), "936", broken=2)) == ""
    # a truncated response: the unclosed think runs to the end
    assert thought_of("<think>Ones: 7+9=16") == "Ones: 7+9=16"


# --- is_repetitive ---------------------------------------------------------------------------------


@pytest.mark.parametrize("thought", [EN, ZH, EN_SLIP, ZH_SLIP, "347+589=826."])
def test_is_repetitive_keeps_real_traces_with_a_slip_and_a_redo(thought):
    # the redone sum writes its column lines twice: allowed
    assert not is_repetitive(thought)


def test_a_redo_is_a_loop_when_no_line_may_repeat():
    assert is_repetitive(EN_SLIP, max_line_repeats=1)
    assert not is_repetitive(EN, max_line_repeats=1)


def test_is_repetitive_drops_a_line_twice_in_a_row():
    lines = careful()
    stutter = lines[:2] + [lines[1]] + lines[2:]  # "Ones: …" twice in a row
    assert is_repetitive(text(stutter))
    # a blank line between them does not make it less of a stutter
    assert is_repetitive(text(lines[:2] + ["", "  " + lines[1]] + lines[2:]))
    zh = careful("zh")
    assert is_repetitive(text(zh[:3] + [zh[2]] + zh[3:]))


def test_is_repetitive_drops_a_line_written_three_times():
    slip = careful(slip=True)
    attempt, redo = slip[1:6], slip[6:]  # the slipped columns with the failed check; the redo
    loop = slip[:1] + attempt + attempt + redo  # slips twice before the redo
    assert loop.count("Ones: 347 and 589, 7+9=16, write 6, carry 1.") == 3
    assert is_repetitive(text(loop))
    # the line rule alone drops it, whatever the n-gram rule says
    assert is_repetitive(text(loop), ngram=50, max_ngram=100)
    assert not is_repetitive(text(loop), max_line_repeats=3, ngram=50, max_ngram=100)


def test_is_repetitive_counts_an_eight_word_ngram_across_distinct_lines():
    exprs = ["7+9=16", "4+8+1=13", "3+5+1=9", "9-5=4"]
    lines = [f"Wait, let me check the tens column once more: {e}." for e in exprs]
    # 9 words in common, so two 8-grams, each written 4 times: a loop
    assert is_repetitive(text(lines))
    # 3 times is allowed
    assert not is_repetitive(text(lines[:3]))
    # the thresholds are parameters
    assert not is_repetitive(text(lines), max_ngram=4)
    assert not is_repetitive(text(lines), ngram=10)


def test_is_repetitive_counts_an_ngram_inside_one_line():
    loop = "Hmm, so the answer is 936, but let me check, " * 4 + "yes."
    assert is_repetitive(loop)
    assert not is_repetitive("Hmm, so the answer is 936, but let me check, " * 3 + "yes.")


def test_is_repetitive_segments_chinese_into_words():
    # no spaces in Chinese: the n-grams are of jieba's words
    one_line = "所以是936，不对，再算一遍，" * 6 + "所以是936。"
    assert is_repetitive(one_line)
    exprs = ["7+9=16", "4+8+1=13", "3+5+1=9", "9-5=4"]
    lines = [f"等等，我再检查一下这一位的进位有没有漏掉：{e}。" for e in exprs]
    assert is_repetitive(text(lines))
    assert not is_repetitive(text(lines[:3]))
    assert not is_repetitive("所以是936，不对，再算一遍，所以是936。")


# --- mixes_languages -------------------------------------------------------------------------------


def test_mixes_languages_keeps_one_language():
    for thought in (EN, ZH, EN_SLIP, ZH_SLIP):
        assert not mixes_languages(thought)
    # a Chinese question reasoned wholly in English: kept for the rewriter to translate
    assert not mixes_languages(thought_of(render_response(careful("en"), "936")))


def test_mixes_languages_drops_line_by_line_switching():
    en, zh = careful("en"), careful("zh")
    switching = [zh[0], en[1], zh[2], en[3], zh[4], en[5]]
    assert mixes_languages(text(switching))
    assert mixes_languages(text([en[0], zh[1], en[2], zh[3], en[4], zh[5]]))
    # one English line in a Chinese trace
    assert mixes_languages(text(zh[:5] + ["Check: 936-589=347. Correct."]))


def test_a_single_foreign_word_is_under_the_tolerance():
    thought = EN.replace("Correct.", "对, correct.")
    # Let me work it out step by step (8), Ones/and/write/carry (4), Tens/… (4),
    # Hundreds/and/write (3), So (1), Check/correct (2)
    assert count_words(thought) == {"en": 22, "zh": 1, "other": 0}
    assert not mixes_languages(thought)  # 1/23 < 0.05
    assert mixes_languages(thought, tolerance=0.04)
    two = EN.replace("Correct.", "对, correct. 好.")
    assert mixes_languages(two)  # 2/24 > 0.05
    # exactly at the tolerance is kept: 19 English words and 1 Chinese
    at = " ".join(["one"] * 19) + " 对"
    assert not mixes_languages(at)


def test_numbers_and_symbols_are_no_words():
    assert not mixes_languages("347+589=936\n936-589=347 ✓")
    assert not mixes_languages("")
    # digits and operators in a Chinese trace are not English; neither is LaTeX
    assert not mixes_languages("个位：7+9=16，写6，进1。\n所以 $\\frac{1}{2}+\\frac{1}{2}=1$。")
    assert not mixes_languages("Ones: 7+9=16, write 6. So $\\frac{1}{2}$ × 2 = 1.")


# --- consistent ------------------------------------------------------------------------------------


def test_consistent_keeps_the_target_language():
    assert consistent(ZH, "zh", 0.99)
    assert consistent(ZH_SLIP, "zh", 0.99)
    assert consistent(EN_SLIP, "en", 0.99)
    assert consistent(ZH, "zh", 1.0)


def test_consistent_drops_the_other_language_and_mixing():
    en, zh = careful("en"), careful("zh")
    assert not consistent(EN, "zh", 0.99)  # a Chinese question reasoned in English
    assert not consistent(ZH, "en", 0.99)
    mixed = text([zh[0], en[1], zh[2], en[3], zh[4], en[5]])
    assert not consistent(mixed, "zh", 0.99)
    assert not consistent(mixed, "en", 0.99)
    # one Chinese word in 23 passes cold start's mix tolerance but not 0.99
    assert not consistent(EN.replace("Correct.", "对, correct."), "en", 0.99)
    assert consistent(EN.replace("Correct.", "对, correct."), "en", 0.9)


def test_consistent_drops_a_thought_without_words():
    assert not consistent(None, "zh")
    assert not consistent("", "zh")
    assert not consistent("347+589=936。", "zh")


def test_consistent_rejects_an_unknown_language():
    with pytest.raises(ValueError, match="unknown language"):
        consistent(ZH, "fr")


# --- has_long_paragraph ----------------------------------------------------------------------------


def test_has_long_paragraph_keeps_short_lines():
    for thought in (EN, ZH, EN_SLIP, ZH_SLIP):
        assert not has_long_paragraph(thought)
    assert not has_long_paragraph("a" * 240)
    assert not has_long_paragraph("   " + "a" * 240 + "   \n" + "b" * 10)  # stripped


def test_has_long_paragraph_drops_a_long_line():
    assert has_long_paragraph(EN + "\n" + "a" * 300)
    assert has_long_paragraph("a" * 241)
    # a trace written as one paragraph
    one = " ".join(careful(slip=True))
    assert len(one) > 240
    assert has_long_paragraph(one)
    assert not has_long_paragraph(one, max_chars=1000)
    assert has_long_paragraph(EN, max_chars=40)


# --- has_code_block --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "thought",
    [
        EN + "\n```python\nprint(347 + 589)\n```",
        "Let me compute:\n~~~\n347 + 589\n~~~\nSo 936.",
        "I run <code>347+589</code> and get 936.",
        "Let me compute:\n    total = 347 + 589\nSo 936.",
        "Let me compute:\n\ttotal = 347 + 589\nSo 936.",
        "Let me compute:\n        total = 347 + 589\nSo 936.",  # deeper indentation
        "    total = 347 + 589",  # on the first line
    ],
)
def test_has_code_block_catches_code(thought):
    assert has_code_block(thought)


@pytest.mark.parametrize(
    "thought",
    [EN, ZH, EN_SLIP, ZH_SLIP, "347+589=826.", "3 x 4 = 12, `x` is a variable", "   3 spaces"],
)
def test_has_code_block_keeps_a_normal_trace(thought):
    assert not has_code_block(thought)


def test_blank_indented_lines_are_no_code():
    assert not has_code_block("Ones: 7+9=16.\n    \nTens: 4+8+1=13.")


# --- dedupe ----------------------------------------------------------------------------------------


def test_dedupe_keeps_the_first_in_order():
    assert dedupe(["b", "a", "b", "c", "a"], key=lambda x: x) == ["b", "a", "c"]
    assert dedupe([], key=lambda x: x) == []


def test_dedupe_by_key():
    rows = [
        {"id": 1, "question": "What is 347+589?", "response": "first"},
        {"id": 2, "question": "12-345等于多少？", "response": "first"},
        {"id": 3, "question": "What is 347+589?", "response": "second"},
        {"id": 4, "question": "What is 58+67?", "response": "first"},
        {"id": 5, "question": "12-345等于多少？", "response": "second"},
    ]
    assert [r["id"] for r in dedupe(rows, key=lambda r: r["question"])] == [1, 2, 4]
    assert [r["id"] for r in dedupe(rows, key=lambda r: r["response"])] == [1, 3]
    by_both = dedupe(rows, key=lambda r: (r["question"], r["response"]))
    assert [r["id"] for r in by_both] == [1, 2, 3, 4, 5]


# --- Funnel ----------------------------------------------------------------------------------------


def test_funnel_counts_each_step_in_order():
    good = render_response(careful(), "936")
    responses = [
        good,
        render_response(*hasty()),  # readable, wrong
        render_response(careful(), "936", broken=2),  # not readable
        render_response(careful("zh", slip=True), "936"),
        good,  # a duplicate
    ]
    funnel = Funnel()
    kept = funnel.keep("readable", responses, readable)
    assert kept == [responses[0], responses[1], responses[3], responses[4]]
    kept = funnel.keep("correct", kept, lambda r: answer_correct(r, "936"))
    assert kept == [responses[0], responses[3], responses[4]]
    deduped = funnel.record("dedupe", kept, dedupe(kept, key=lambda r: r))
    assert deduped == [responses[0], responses[3]]
    kept = funnel.keep("repetition", deduped, lambda r: not is_repetitive(thought_of(r)))
    assert kept == [responses[0], responses[3]]

    assert funnel.counts() == {
        "readable": {"in": 5, "out": 4},
        "correct": {"in": 4, "out": 3},
        "dedupe": {"in": 3, "out": 2},
        "repetition": {"in": 2, "out": 2},
    }
    assert list(funnel.counts()) == ["readable", "correct", "dedupe", "repetition"]
    assert funnel.table() == (
        "| filter | in | out | dropped |\n"
        "|---|---:|---:|---:|\n"
        "| readable | 5 | 4 | 1 |\n"
        "| correct | 4 | 3 | 1 |\n"
        "| dedupe | 3 | 2 | 1 |\n"
        "| repetition | 2 | 2 | 0 |"
    )


def test_an_empty_funnel():
    funnel = Funnel()
    assert funnel.counts() == {}
    assert funnel.table() == "| filter | in | out | dropped |\n|---|---:|---:|---:|"
    assert funnel.keep("readable", [], readable) == []
    assert funnel.counts() == {"readable": {"in": 0, "out": 0}}
