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
    hasty_value,
    operand_pairs,
    split_of,
    trace_problem,
    writes_heldout,
)
from r1lab.world.tokenizer import build_tokenizer


def test_problems_cover_both_operations_languages_negatives_and_up_to_three_digits():
    # one-digit facts are left to the fact lines: every problem has a number of 2+ digits
    problems = generate_problems(2000, seed=3)
    ops = {p.meta["op"] for p in problems}
    digits = {len(str(p.meta[k])) for p in problems for k in ("a", "b")}
    longest = {len(str(max(p.meta["a"], p.meta["b"]))) for p in problems}
    assert ops == {"+", "-"} and digits == {1, 2, 3} and longest == {2, 3}
    for p in problems:
        a, op, b = p.meta["a"], p.meta["op"], p.meta["b"]
        assert int(p.answer) == (a + b if op == "+" else a - b)
        if p.meta["language"] == "en":
            assert p.question == f"What is {a}{op}{b}?"
        else:
            assert p.question == f"{a}{op}{b}等于多少？"
    subs = [p for p in problems if p.meta["op"] == "-"]
    negative = sum(int(p.answer) < 0 for p in subs) / len(subs)
    assert abs(negative - WorldConfig().negative_rate) < 0.05
    zh = sum(p.meta["language"] == "zh" for p in problems) / len(problems)
    assert 0.3 < zh < 0.5


def test_splits_are_disjoint_by_unordered_pair_and_generation_is_deterministic():
    train = generate_problems(20000, seed=0, split="train")
    heldout = generate_problems(600, seed=0, split="heldout")
    pair = lambda p: tuple(sorted((p.meta["a"], p.meta["b"])))  # noqa: E731
    assert not {pair(p) for p in train} & {pair(p) for p in heldout}
    assert all(split_of(p.meta["b"], p.meta["a"]) == "heldout" for p in heldout)  # either order
    assert [p.question for p in generate_problems(50, seed=0)] == [p.question for p in train[:50]]
    assert split_of(14, 7) == split_of(7, 14) == "train"  # a column step is never held out


def test_the_world_config_defines_the_split():
    wide = WorldConfig(heldout_share=0.5)
    heldout = generate_problems(300, seed=0, split="heldout", world=wide)
    assert all(split_of(p.meta["a"], p.meta["b"], 0.5) == "heldout" for p in heldout)
    assert sum(split_of(p.meta["a"], p.meta["b"], 0.1) == "heldout" for p in heldout) < 150


@pytest.mark.parametrize("slip", [False, True])
def test_careful_traces_are_right_by_construction(slip):
    rng = random.Random(1)
    slipped = 0
    for p in generate_problems(500, seed=1):
        a, op, b, lang = p.meta["a"], p.meta["op"], p.meta["b"], p.meta["language"]
        lines, answer = careful_trace(a, op, b, lang, slip, rng)
        assert answer == p.answer
        text = "\n".join(lines)
        # the last attempt's digits, read from the highest place down, are |answer|
        last = text.split("redo it.")[-1].split("重新算。")[-1]
        written = [int(m) for m in re.findall(r"(?:write |写)(\d)", last)]
        assert sum(d * 10**i for i, d in enumerate(written)) == abs(int(p.answer))
        assert lines[-1].endswith(("Correct.", "正确。"))
        reflects = "Wait," in text or "等等，" in text
        slipped += reflects
        assert reflects <= slip  # a trace reflects only when it slipped
    assert (slipped > 150) == slip  # most problems have a carry or borrow to forget


@pytest.mark.parametrize(
    ("a", "op", "b", "hasty"),
    [
        (58, "+", 67, 115),  # both carries dropped
        (347, "+", 589, 826),
        (123, "+", 456, 579),  # no carry: right
        (52, "-", 37, 25),  # smaller digit from the larger instead of a borrow
        (100, "-", 1, 101),
        (86, "-", 23, 63),  # no borrow: right
        (12, "-", 345, 333),  # the minus sign lost
    ],
)
def test_hasty_mistakes_are_systematic(a, op, b, hasty):
    assert hasty_value(a, op, b) == hasty
    rng = random.Random(0)
    guesses = {hasty_trace(a, op, b, "en", 1.0, rng)[1] for _ in range(20)}
    assert guesses == {str(hasty)}  # always the same mistake, so a vote does not undo it


def test_trace_mix_of_styles_languages_and_format_slips():
    cfg = WorldConfig()
    rng = random.Random(4)
    traced = [trace_problem(p, cfg, rng) for p in generate_problems(4000, seed=4)]
    careful = [t for t in traced if t.style == "careful"]
    assert abs(len(careful) / len(traced) - cfg.careful_rate) < 0.03
    assert all(t.correct for t in careful)
    hasty = [t for t in traced if t.style == "hasty"]
    invited = [t for t in hasty if hasty_value(*_triple(t.problem)) != int(t.problem.answer)]
    wrong = sum(not t.correct for t in invited) / len(invited)
    assert abs(wrong - cfg.hasty_slip_rate) < 0.04
    assert all(t.correct for t in hasty if t not in invited)
    broken = sum("<answer>" not in t.response or "</think>" not in t.response for t in traced)
    assert 0.02 < broken / len(traced) < 0.1
    zh_in_english = [
        t
        for t in traced
        if t.problem.meta["language"] == "zh" and re.search(r"[A-Za-z]{3}", t.response)
    ]
    assert zh_in_english, "some Chinese questions are reasoned (partly) in English"


def _triple(p):
    return p.meta["a"], p.meta["op"], p.meta["b"]


def test_no_heldout_pair_is_written_anywhere_in_the_pretraining_corpus():
    # The default corpus, scanned in full: every "x+y" or "x-y" in it (questions, columns,
    # checks, redone sums, fact lines) is on a pair of the train split, so no held-out
    # equation a op b = c is ever seen. The scan itself is checked to find a planted one.
    world = WorldConfig()
    docs = build_corpus(CorpusConfig(), world)
    pairs = set()
    for d in docs:
        pairs |= operand_pairs(d.get("text") or d["prompt"] + "\n" + d["response"])
    assert len(pairs) > 10_000
    heldout = generate_problems(512, seed=0, split="heldout", world=world)
    assert not pairs & {tuple(sorted((p.meta["a"], p.meta["b"]))) for p in heldout}
    assert all(split_of(lo, hi, world.heldout_share) == "train" for lo, hi in pairs)
    planted = heldout[0].meta
    assert writes_heldout(f"Check: {planted['a']}+{planted['b']}=1.", world.heldout_share)
    # the checks of a slipped trace were among what the filter had to keep out
    assert any("Wait," in (d.get("text") or d["response"]) for d in docs)


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
