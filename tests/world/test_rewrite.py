"""The embedded rewriter: a trace read in either language and written in the question's."""

from __future__ import annotations

import random

from r1lab.world.problems import careful_trace, generate_problems, hasty_trace, render_response
from r1lab.world.rewrite import parse_line, rewrite_response


def _careful(p, lang: str, slip: bool, seed: int) -> str:
    m = p.meta
    return render_response(*careful_trace(m["a"], m["op"], m["b"], lang, slip, random.Random(seed)))


def test_careful_traces_translate_line_by_line_both_ways():
    # the same draw in both languages is the same trace: a translation must give the other
    for i, p in enumerate(generate_problems(400, seed=3)):
        en, zh = _careful(p, "en", i % 3 == 0, i), _careful(p, "zh", i % 3 == 0, i)
        assert rewrite_response(en, "zh") == zh
        assert rewrite_response(zh, "en") == en
        assert rewrite_response(en, "en") == en


def test_a_hasty_opener_goes_and_a_line_repeated_at_once_is_written_once():
    response = render_response(["Quick: 12+34=46.", "Quick: 12+34=46."], "46")
    assert rewrite_response(response, "zh") == "<think>12+34=46。</think>\n<answer>46</answer>"
    lines, answer = hasty_trace(58, "+", 67, "zh", 1.0, random.Random(0))
    assert rewrite_response(render_response(lines, answer), "en") == (
        "<think>58+67=115.</think>\n<answer>115</answer>"  # a wrong step stays wrong
    )


def test_what_the_rewriter_cannot_read_fails():
    assert rewrite_response("<think>Let me think hard.</think>\n<answer>3</answer>", "en") is None
    assert rewrite_response("<think>So 1+2=3.</think>", "en") is None  # no final answer
    assert rewrite_response("<answer>3</answer>", "en") is None  # no chain of thought
    assert parse_line("个位：7和9，7+9=16，写6，进1。") == (
        "column",
        {"place": "Ones", "x": "7", "y": "9", "expr": "7+9=16", "d": "6", "moved": "carry"},
    )
    assert parse_line("Ones: 7 plus 9.") is None
