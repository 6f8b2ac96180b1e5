"""Cold start (stage A data) and rejection sampling (stage C data): each filter keeps and drops
what it should, with the oracle judge served over HTTP as in a real run."""

from __future__ import annotations

import json
import random

import pytest

from r1lab.data.filters import Funnel
from r1lab.judge.client import JudgeConfig
from r1lab.judge.oracle import OracleConfig
from r1lab.judge.session import judge_session
from r1lab.rewards.rules import language_share, think_content
from r1lab.stages.coldstart import ColdStartConfig, build_coldstart
from r1lab.stages.sample import SampleConfig, general_examples, reasoning_examples
from r1lab.world.problems import careful_trace, render_response

# 347+589 asked in Chinese; 936 is right.
QUESTION = "347+589等于多少？"


def _trace(lang: str, a: int = 347, op: str = "+", b: int = 589, slip: bool = False) -> str:
    lines, answer = careful_trace(a, op, b, lang, slip, random.Random(0))
    return render_response(lines, answer)


def _mixed() -> str:
    en, zh = _trace("en"), _trace("zh")
    en_lines = think_content(en).splitlines()
    zh_lines = think_content(zh).splitlines()
    lines = [e if i % 2 else z for i, (e, z) in enumerate(zip(en_lines, zh_lines, strict=True))]
    return render_response(lines, "936")


CASES = {
    "kept_zh": _trace("zh"),
    "kept_en_translated": _trace("en"),  # wholly English: the rewriter translates it
    "wrong": _trace("en").replace("<answer>936</answer>", "<answer>826</answer>"),
    "broken_format": _trace("zh").replace("</think>", ""),
    "hasty": render_response(["很快：347+589=936。"], "936"),
    "looping": render_response(["我来一步一步算。"] * 3 + ["所以347+589=936。"], "936"),
    "mixed": _mixed(),
    # a line none of the world's: the rewriter cannot read it
    "garbled": render_response(
        ["我来一步一步算。", "个位：七加九得十六。", "所以347+589=936。"], "936"
    ),
}


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    cache = tmp_path_factory.mktemp("judge") / "cache.sqlite"
    with judge_session(JudgeConfig(backoff=0), OracleConfig(error_rate=0), cache) as j:
        yield j


def _records(cases: dict[str, str], question: str = QUESTION, gold: str = "936") -> list[dict]:
    return [
        {"id": name, "question": question, "gold": gold, "samples": [{"text": text}]}
        for name, text in cases.items()
    ]


def test_coldstart_keeps_correct_readable_one_language_traces_in_the_questions_language(judge):
    records = _records(CASES)
    languages = {name: "zh" for name in CASES}
    examples, queue, funnel = build_coldstart(records, languages, ColdStartConfig(), judge)
    assert sorted(x["id"] for x in examples) == ["kept_en_translated", "kept_zh"]
    counts = funnel.counts()
    assert counts["sampled"] == {"in": 8, "out": 8}
    assert counts["correct"]["out"] == 7  # wrong
    assert counts["readable"]["out"] == 6  # broken format
    assert counts["long_cot"]["out"] == 5  # hasty
    assert counts["no_repetition"]["out"] == 4  # looping
    assert counts["no_mixing"]["out"] == 3  # mixed
    assert counts["rewritten"] == {"in": 3, "out": 2}  # garbled: the rewriter fails on it
    assert counts["recheck"]["out"] == 2
    assert judge.stats["failed"] >= 1  # the failed rewrite was retried, then counted
    for x in examples:
        assert x["prompt"] == QUESTION
        assert x["response"] == _trace("zh")  # the English trace, translated line by line
        assert language_share(think_content(x["response"]), "zh") == 1.0
    translated = next(q for q in queue if q["id"] == "kept_en_translated")
    assert translated["original"] == _trace("en") and translated["rewritten"] == _trace("zh")
    assert translated["gold"] == "936"


def test_coldstart_dedupes_and_caps_per_prompt(judge):
    records = [
        {"id": "p", "question": QUESTION, "gold": "936",
         "samples": [{"text": _trace("zh")}, {"text": _trace("zh")}, {"text": _trace("en")}]},
    ]  # fmt: skip
    examples, _, funnel = build_coldstart(records, {"p": "zh"}, ColdStartConfig(), judge)
    # the English trace rewrites to the very Chinese one: three traces, one example
    assert funnel.counts()["deduplicated"] == {"in": 3, "out": 1}
    assert len(examples) == 1
    slipped = _trace("zh", slip=True)
    records[0]["samples"].append({"text": slipped})
    examples, _, funnel = build_coldstart(records, {"p": "zh"}, ColdStartConfig(), judge)
    assert funnel.counts()["per_prompt"] == {"in": 2, "out": 1}
    assert len(examples) == 1


def test_rejection_sampling_drops_mixed_long_paragraph_and_code(judge):
    long_line = "我来一步一步算，" * 40 + "好。"
    cases = {
        "kept": _trace("zh"),
        "wrong": _trace("zh").replace("<answer>936</answer>", "<answer>826</answer>"),
        "en_for_zh": _trace("en"),  # no rewriter here: the language must already be right
        "long_paragraph": render_response([long_line, "所以347+589=936。"], "936"),
        "code": render_response(["我来一步一步算。", "```", "347+589=936", "```"], "936"),
        "looping": render_response(["我来一步一步算。"] * 2 + ["所以347+589=936。"], "936"),
    }
    records = _records(cases)
    for r in records:
        r["samples"][0]["correct"] = r["id"] != "wrong"  # the rule's verdict (math-verify)
    examples, funnel = reasoning_examples(
        records, {name: "zh" for name in cases}, SampleConfig(), judge
    )
    assert [x["id"] for x in examples] == ["kept"]
    counts = funnel.counts()
    assert counts["correct"]["out"] == 5
    assert counts["one_language"]["out"] == 4
    assert counts["short_paragraphs"]["out"] == 3
    assert counts["no_code"]["out"] == 2
    assert counts["no_repetition"]["out"] == 1
    assert counts["judged (no rule)"] == {"in": 0, "out": 0}


def test_rejection_sampling_asks_the_judge_where_no_rule_applies(judge):
    # a gold that is no single number: the judge decides, given the reference answer
    question, gold = "Where does the line y = 2x meet the line x = 1?", "(1, 2)"
    right = "<think>I put x = 1 into y = 2x.</think>\n<answer>(1, 2)</answer>"
    wrong = "<think>I put x = 1 into y = 2x.</think>\n<answer>(2, 1)</answer>"
    records = [
        {"id": "right", "question": question, "gold": gold,
         "samples": [{"text": right, "correct": False}]},
        {"id": "wrong", "question": question, "gold": gold,
         "samples": [{"text": wrong, "correct": True}]},
    ]  # fmt: skip
    examples, funnel = reasoning_examples(
        records, {"right": "en", "wrong": "en"}, SampleConfig(), judge
    )
    assert funnel.counts()["judged (no rule)"] == {"in": 2, "out": 2}
    assert [x["id"] for x in examples] == ["right"]


def test_general_data_is_judge_written_with_no_thought_for_greetings(judge):
    funnel = Funnel()
    examples = general_examples(40, 0, judge, funnel)
    assert len(examples) == 40 and funnel.counts()["general answered"]["out"] == 40
    kinds = {x["source"] for x in examples}
    assert {"general/greeting", "general/unsafe", "general/list"} <= kinds
    for x in examples:
        thought = (think_content(x["response"]) or "").strip()
        if x["source"] in ("general/greeting", "general/unsafe"):
            assert thought == "", x
        else:
            assert thought, x
    assert json.dumps(examples, ensure_ascii=False)  # plain data: writable as JSONL


@pytest.mark.parametrize("stage", ["coldstart", "sample"])
def test_a_missing_model_is_a_one_line_error_that_writes_nothing(stage, tmp_path, capsys):
    from r1lab.cli import main

    code = main([stage, f"model={tmp_path / 'nowhere'}", f"run.output_dir={tmp_path / 'runs'}"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nowhere: no model there" in err
    assert not (tmp_path / "runs").exists()
