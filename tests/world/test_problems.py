"""The embedded world: problems, careful and hasty traces, the corpus and its packing."""

from __future__ import annotations

import random
import re

import pytest

from r1lab.data.packing import pack, padding_efficiency
from r1lab.stages.pretrain import PretrainStageConfig
from r1lab.training.sft import tokenize_examples
from r1lab.world.corpus import CorpusConfig, build_corpus
from r1lab.world.problems import (
    WorldConfig,
    careful_trace,
    generate_problems,
    hasty_trace,
    split_of,
    trace_problem,
)
from r1lab.world.tokenizer import build_tokenizer


def test_problems_cover_both_operations_languages_and_up_to_three_digits():
    # one-digit facts are left to the fact lines: every problem has a number of 2+ digits
    problems = generate_problems(2000, seed=3)
    ops = {p.meta["op"] for p in problems}
    digits = {len(str(p.meta[k])) for p in problems for k in ("a", "b")}
    longest = {len(str(max(p.meta["a"], p.meta["b"]))) for p in problems}
    assert ops == {"+", "-"} and digits == {1, 2, 3} and longest == {2, 3}
    for p in problems:
        a, op, b = p.meta["a"], p.meta["op"], p.meta["b"]
        assert int(p.answer) == (a + b if op == "+" else a - b) and int(p.answer) >= 0
        if p.meta["language"] == "en":
            assert p.question == f"What is {a}{op}{b}?"
        else:
            assert p.question == f"{a}{op}{b}等于多少？"
    zh = sum(p.meta["language"] == "zh" for p in problems) / len(problems)
    assert 0.3 < zh < 0.5


def test_splits_are_disjoint_and_generation_is_deterministic():
    train = generate_problems(3000, seed=0, split="train")
    heldout = generate_problems(600, seed=0, split="heldout")
    triple = lambda p: (p.meta["a"], p.meta["op"], p.meta["b"])  # noqa: E731
    assert not {triple(p) for p in train} & {triple(p) for p in heldout}
    assert all(split_of(*triple(p)) == "heldout" for p in heldout)
    assert [p.question for p in generate_problems(50, seed=0)] == [p.question for p in train[:50]]


@pytest.mark.parametrize("slip", [False, True])
def test_careful_traces_are_right_by_construction(slip):
    rng = random.Random(1)
    for p in generate_problems(500, seed=1):
        a, op, b, lang = p.meta["a"], p.meta["op"], p.meta["b"], p.meta["language"]
        lines, answer = careful_trace(a, op, b, lang, slip, rng)
        assert answer == p.answer
        # every written digit, read from the highest place down, is the answer
        written = [int(m) for line in lines for m in re.findall(r"(?:write |写)(\d)", line)]
        if slip:  # a slip writes a wrong digit first and then the right one for that place
            assert len(written) >= len(str(max(a, b)))
        else:
            value = sum(d * 10**i for i, d in enumerate(written))
            assert value == int(p.answer)


def test_hasty_traces_err_at_the_configured_rate():
    rng = random.Random(2)
    problems = generate_problems(2000, seed=2)
    wrong = sum(
        hasty_trace(p.meta["a"], p.meta["op"], p.meta["b"], "en", 0.6, rng)[1] != p.answer
        for p in problems
    )
    assert 0.55 < wrong / len(problems) < 0.65


def test_trace_mix_of_styles_languages_and_format_slips():
    cfg = WorldConfig()
    rng = random.Random(4)
    traced = [trace_problem(p, cfg, rng) for p in generate_problems(3000, seed=4)]
    careful = [t for t in traced if t.style == "careful"]
    assert abs(len(careful) / len(traced) - cfg.careful_rate) < 0.03
    assert sum(t.correct for t in careful) / len(careful) > 0.97
    hasty = [t for t in traced if t.style == "hasty"]
    assert abs(sum(t.correct for t in hasty) / len(hasty) - (1 - cfg.hasty_error_rate)) < 0.04
    broken = sum("<answer>" not in t.response or "</think>" not in t.response for t in traced)
    assert 0.02 < broken / len(traced) < 0.1
    zh_in_english = [
        t
        for t in traced
        if t.problem.meta["language"] == "zh" and re.search(r"[A-Za-z]{3}", t.response)
    ]
    assert zh_in_english, "some Chinese questions are reasoned (partly) in English"


def test_padding_efficiency_on_the_embedded_corpus():
    cfg = PretrainStageConfig()
    docs = build_corpus(
        CorpusConfig(conversations=1400, worked_examples=700, fact_lines=1000), cfg.world
    )
    tokenizer = build_tokenizer(
        (d.get("text") or d["prompt"] + "\n" + d["response"] for d in docs), 512
    )
    lengths = [len(s["input_ids"]) for s in tokenize_examples(tokenizer, docs)]
    budget = cfg.sft.token_budget
    assert padding_efficiency(lengths, pack(lengths, budget), budget) >= 0.95
