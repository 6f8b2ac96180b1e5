"""The embedded code world: specs, hidden tests that catch the trap, the split, the corpus."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from r1lab.data.tasks import TaskConfig, load_task
from r1lab.errors import UserError
from r1lab.model_card import world_of
from r1lab.world.code import (
    CodeWorldConfig,
    Spec,
    build_code_corpus,
    generate_code_problems,
    program,
    spec_of,
    split_of,
    trace_code_problem,
    value,
)
from r1lab.world.problems import WorldConfig


def _passes(source: str, tests: list[str]) -> bool:
    # our own generated programs (never model output): safe to run here
    scope: dict = {}
    exec(source, scope)
    try:
        for t in tests:
            exec(t, scope)
    except AssertionError:
        return False
    return True


def test_values_by_hand():
    assert value(Spec("count", "at least", 5), [5, 6, 1]) == 2
    assert value(Spec("count", "greater than", 5), [5, 6, 1]) == 1
    assert value(Spec("sum", "at most", 5), [5, 6, 1]) == 6
    assert value(Spec("range", "included", 3), 5) == 3 + 4 + 5
    assert value(Spec("range", "excluded", 3), 5) == 3 + 4
    assert value(Spec("affine", "plus-times", 2, 3), 4) == 18
    assert value(Spec("affine", "times-plus", 2, 3), 4) == 11
    assert value(Spec("slice", "last", 2), [1, 2, 3]) == [2, 3]
    assert value(Spec("clip", "floor", 3), [1, 5]) == [0, 2]
    assert program(Spec("count", "at least", 5), "f") == (
        "def f(xs):\n    return sum(1 for v in xs if v >= 5)\n"
    )
    assert "v > 5" in program(Spec("count", "at least", 5), "f", hasty_slip=True)


def test_references_pass_and_every_trap_is_caught():
    problems = generate_code_problems(600, 0, "train") + generate_code_problems(200, 0, "heldout")
    traps = 0
    for p in problems:
        spec, name = spec_of(p), p.meta["entry_point"]
        assert _passes(p.answer, p.meta["tests"]), p.question
        if spec.trap:
            traps += 1
            assert not _passes(program(spec, name, hasty_slip=True), p.meta["tests"]), p.question
        else:  # the plain variant's hasty program is the right one
            assert program(spec, name, hasty_slip=True) == p.answer
    assert 0.6 < traps / len(problems) < 0.8  # trap_rate 0.7
    assert len(problems[0].meta["tests"]) == 5
    assert Counter(spec_of(p).family for p in problems).keys() == {
        "count", "sum", "range", "affine", "slice", "clip",
    }  # fmt: skip


def test_split_is_by_spec_and_the_corpus_holds_no_heldout_spec():
    cfg = CodeWorldConfig(conversations=400, worked_examples=200)
    heldout = {spec_of(p) for p in generate_code_problems(300, 0, "heldout")}
    assert all(split_of(s) == "heldout" for s in heldout)
    questions = {d.get("prompt") or d["text"].split("\n")[0] for d in build_code_corpus(cfg)}
    held_questions = {p.question for p in generate_code_problems(300, 0, "heldout")}
    assert not questions & held_questions
    train = {spec_of(p) for p in generate_code_problems(2000, 0, "train")}
    assert not train & heldout


def test_styles_mix_as_configured():
    cfg = CodeWorldConfig()
    rng = random.Random(0)
    traced = [trace_code_problem(p, cfg, rng) for p in generate_code_problems(2000, 1, "train")]
    careful = [t for t in traced if t.style == "careful"]
    assert 0.17 < len(careful) / len(traced) < 0.23
    assert all(t.correct for t in careful)
    hasty_traps = [t for t in traced if t.style == "hasty" and spec_of(t.problem).trap]
    assert 0.05 < sum(t.correct for t in hasty_traps) / len(hasty_traps) < 0.15
    assert all(": v >=" in t.response for t in careful if "at least" in t.problem.question)


def test_embedded_code_task_and_the_world_it_needs():
    problems = load_task(TaskConfig(name="embedded-code", limit=20))
    assert len(problems) == 20 and all(p.meta["task"] == "embedded-code" for p in problems)
    assert problems[0].question.startswith("Write a Python function ")
    with pytest.raises(UserError, match="built in the arithmetic world"):
        load_task(TaskConfig(name="embedded-code"), WorldConfig())
    with pytest.raises(UserError, match="built in the code world"):
        load_task(TaskConfig(name="embedded"), CodeWorldConfig())
    card = {"world": {"kind": "code", "careful_rate": 0.5}}
    assert world_of(card) == CodeWorldConfig(careful_rate=0.5)
    assert isinstance(world_of({"world": {"careful_rate": 0.5}}), WorldConfig)
