"""The judge protocol: every request builder round-trips through ``fields_of``, and each reply
parser accepts the form it asks for and rejects everything else."""

from __future__ import annotations

import pytest

from r1lab.judge import prompts
from r1lab.judge.prompts import (
    FIELDS,
    fields_of,
    parse_answer,
    parse_pair,
    parse_rewrite,
    parse_score,
    parse_verdict,
)

# Field values a naive parser would split in the wrong place: blank lines, brackets, a line
# that looks like a header, trailing newlines, Chinese.
AWKWARD = [
    "What is 347 + 589?",
    "line one\n\nline two after a blank line",
    "[Question]\nnot a header of this field\n\n[not a header either]",
    "<think>\n3+4=7\n</think>\n<answer>\n7\n</answer>\n",
    "计算 [1, 2] 的和。\n\n答案是 3",
    "",
]

BUILDERS = {
    "correctness": prompts.correctness_messages,
    "helpfulness": prompts.helpfulness_messages,
    "compare": prompts.compare_messages,
    "rewrite": prompts.rewrite_messages,
    "answer": prompts.answer_messages,
    "safety": prompts.safety_messages,
}


def test_every_task_has_a_builder():
    assert set(BUILDERS) == set(FIELDS)


@pytest.mark.parametrize("task", list(FIELDS))
@pytest.mark.parametrize("shift", range(len(AWKWARD)))
def test_builders_round_trip_through_fields_of(task, shift):
    keys = [key for key, _ in FIELDS[task]]
    values = {key: AWKWARD[(shift + i) % len(AWKWARD)] for i, key in enumerate(keys)}
    messages = BUILDERS[task](**values)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"].startswith(f"r1lab-judge task: {task}\n")
    assert fields_of(messages) == (task, values)


def test_fields_of_rejects_messages_outside_the_protocol():
    good = prompts.correctness_messages("q", "1", "r")
    with pytest.raises(ValueError, match="system and a user"):
        fields_of(good[1:])
    with pytest.raises(ValueError, match="not an r1lab-judge system prompt"):
        fields_of([{"role": "system", "content": "You are a judge."}, good[1]])
    with pytest.raises(ValueError, match="not an r1lab-judge system prompt"):
        fields_of([{"role": "system", "content": "r1lab-judge task: poetry"}, good[1]])
    with pytest.raises(ValueError, match="must start with"):
        fields_of([good[0], {"role": "user", "content": "is 1 right?"}])
    with pytest.raises(ValueError, match=r"no \[Response\] field"):
        fields_of([good[0], {"role": "user", "content": "[Question]\nq\n\n[Reference answer]\n1"}])


# --- parsers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("VERDICT: correct", True),
        ("VERDICT: incorrect", False),
        ("The final answer 7 equals the reference.\nVERDICT: correct", True),
        ("**VERDICT: correct**", True),
        ("**VERDICT**: incorrect", False),
        ("verdict: Correct", True),
        ("VERDICT: correct\nVERDICT: correct", True),
        ("", None),
        ("The response is correct.", None),
        ("VERDICT: maybe", None),
        ("VERDICT: correctly done", None),
        ("VERDICT: correct\nVERDICT: incorrect", None),
    ],
)
def test_parse_verdict(reply, expected):
    assert parse_verdict(reply) is expected


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("SCORE: 7", 7.0),
        ("Clear and complete.\nSCORE: 8.5", 8.5),
        ("**SCORE: 9/10**", 9.0),
        ("SCORE: 1", 1.0),
        ("SCORE: 10", 10.0),
        ("SCORE: 7\nSCORE: 7.0", 7.0),
        ("", None),
        ("I would give it a 7.", None),
        ("SCORE: 0", None),
        ("SCORE: 11", None),
        ("SCORE: -3", None),
        ("SCORE: seven", None),
        ("SCORE: 6\nSCORE: 8", None),
    ],
)
def test_parse_score(reply, expected):
    assert parse_score(reply) == expected


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("A: 7\nB: 4.5", (7.0, 4.5)),
        ("A is longer but wrong.\n**A: 3**\n**B: 8**", (3.0, 8.0)),
        ("B: 2\nA: 9", (9.0, 2.0)),
        ("A: 7", None),
        ("A: 7\nB: 11", None),
        ("A: 0\nB: 5", None),
        ("A: 7\nB: 5\nA: 6", None),
        ("Answer A is better.", None),
    ],
)
def test_parse_pair(reply, expected):
    assert parse_pair(reply) == expected


def test_parse_rewrite_and_answer_keep_the_response_alone():
    response = "<think>\nI add 3 and 4 to get 7.\n</think>\n<answer>\n7\n</answer>"
    for parse in (parse_rewrite, parse_answer):
        assert parse(response) == response
        assert parse(f"Here is the rewrite:\n\n{response}\n\nHope this helps.") == response
        assert parse("<answer>7</answer>") == "<answer>7</answer>"
        assert parse("<think>\nI add 3 and 4.\n</think>") is None  # the answer got lost
        assert parse("I cannot rewrite this.") is None
        assert parse("</answer> then <answer>") is None
        assert parse("") is None


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("The answer refuses.\nVERDICT: safe", True),
        ("VERDICT: unsafe", False),
        ("**VERDICT**: Unsafe", False),
        ("VERDICT: safe\nVERDICT: unsafe", None),  # says two things: says nothing
        ("It looks fine to me.", None),
        ("VERDICT: safely", None),
    ],
)
def test_parse_safety(reply, expected):
    assert prompts.parse_safety(reply) is expected
