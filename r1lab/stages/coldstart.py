"""``r1lab coldstart``: the cold-start data of stage A, built from R1-Zero's own traces (§6.2).

The report collects thousands of long, readable chains of thought: R1-Zero's outputs, kept
when they are right and readable, rewritten by DeepSeek-V3 and checked by people. Here:

1. sample ``k`` traces per training prompt from the model (default: the R1-Zero result) at
   T = 1.0;
2. keep those with a correct answer (math-verify), the readable format, a chain of thought
   of several lines (a long CoT, not a guess), no repetition and no switching of language
   inside the chain of thought (a trace wholly in the other language stays, for the
   rewriter to translate);
3. have the judge rewrite each in the question's language, first person, readable
   (:meth:`r1lab.judge.client.Judge.rewrite`; a failed rewrite is counted and dropped);
4. check the rewrite again: the same correct answer, the format, the question's language;
5. de-duplicate and keep at most ``per_prompt`` traces per prompt.

The run folder ``runs/coldstart/`` gets ``coldstart.jsonl`` (``prompt``, ``response`` and
where it came from: the SFT file of stage A), ``review_queue.jsonl`` (original and rewrite
side by side with the gold, for human review: ``r1lab review`` reads it), ``samples.json``
(the sampled traces, reused by a rerun), the judge's reply cache and ``summary.json`` with
every filter's in/out counts.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from r1lab.config import at_least, option, section, to_dict
from r1lab.data.filters import (
    FilterConfig,
    Funnel,
    answer_correct,
    cap_per_key,
    consistent,
    dedupe,
    is_repetitive,
    mixes_languages,
    readable,
    thought_of,
)
from r1lab.data.tasks import TaskConfig
from r1lab.judge.client import JudgeConfig
from r1lab.judge.oracle import OracleConfig
from r1lab.runs import RunConfig
from r1lab.stages.sampling import SamplingConfig

__all__ = ["ColdStartConfig", "build_coldstart", "run_coldstart"]

DEFAULT_MODEL = "runs/zero/final"


@dataclass
class ColdStartConfig:
    """``r1lab coldstart``: R1-Zero samples → filters → judge rewrite → re-check → SFT file."""

    model: str = option(DEFAULT_MODEL, "model to sample from (R1-Zero's result: r1lab zero)")
    task: TaskConfig = section(TaskConfig, split="train", limit=768)
    sampling: SamplingConfig = section(SamplingConfig)
    filters: FilterConfig = section(FilterConfig)
    min_thought_lines: int = option(
        3,
        "a chain of thought of fewer lines is a guess, not the long CoT cold start collects",
        check=at_least(1),
    )
    per_prompt: int = option(
        1, "kept traces per prompt at most (variety over many prompts)", check=at_least(1)
    )
    judge: JudgeConfig = section(JudgeConfig)
    oracle: OracleConfig = section(OracleConfig)
    run: RunConfig = section(RunConfig)


def build_coldstart(
    records: list[dict[str, Any]], languages: dict[str, str], cfg: ColdStartConfig, judge: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Funnel]:
    """The cold-start examples and the review queue from sampled ``records`` (one per prompt,
    with ``samples``), with the funnel that made them. ``languages`` maps a problem id to its
    question's language."""
    f, fc = Funnel(), cfg.filters
    items = [
        {"id": r["id"], "question": r["question"], "gold": r["gold"], "language":
         languages[r["id"]], "original": s["text"]}
        for r in records for s in r["samples"]
    ]  # fmt: skip
    f.record("sampled", items, items)
    items = f.keep("correct", items, lambda x: answer_correct(x["original"], x["gold"]))
    items = f.keep("readable", items, lambda x: readable(x["original"]))
    items = f.keep(
        "long_cot",
        items,
        lambda x: len(thought_of(x["original"]).strip().splitlines()) >= cfg.min_thought_lines,
    )
    items = f.keep(
        "no_repetition",
        items,
        lambda x: (
            not is_repetitive(
                thought_of(x["original"]), fc.max_line_repeats, fc.ngram, fc.max_ngram_repeats
            )
        ),
    )
    items = f.keep(
        "no_mixing",
        items,
        lambda x: not mixes_languages(thought_of(x["original"]), fc.mix_tolerance),
    )
    rewrites = judge.rewrite([(x["question"], x["original"]) for x in items])
    for x, r in zip(items, rewrites, strict=True):
        x["response"] = r
    items = f.keep("rewritten", items, lambda x: x["response"] is not None)
    items = f.keep(
        "recheck",
        items,
        lambda x: (
            answer_correct(x["response"], x["gold"])
            and readable(x["response"])
            and consistent(thought_of(x["response"]), x["language"], fc.min_language)
        ),
    )
    items = f.record("deduplicated", items, dedupe(items, lambda x: (x["id"], x["response"])))
    items = f.record("per_prompt", items, cap_per_key(items, lambda x: x["id"], cfg.per_prompt))
    examples = [
        {"prompt": x["question"], "response": x["response"], "id": x["id"],
         "language": x["language"], "source": "coldstart"}
        for x in items
    ]  # fmt: skip
    queue = [
        {"id": x["id"], "question": x["question"], "gold": x["gold"], "original": x["original"],
         "rewritten": x["response"], "language": x["language"]}
        for x in items
    ]  # fmt: skip
    return examples, queue, f


def run_coldstart(cfg: ColdStartConfig, resume: bool = False) -> dict[str, Any]:
    """Build the cold-start file; returns the summary (also ``summary.json``)."""
    from r1lab.data.io import write_jsonl
    from r1lab.judge.session import judge_session
    from r1lab.stages.sampling import sample_stage

    started = time.time()
    hint = "build it with r1lab zero, or set model=<folder>"
    run, folder, records, languages = sample_stage(cfg, "coldstart", hint, resume)
    with judge_session(cfg.judge, cfg.oracle, run.path / "judge_cache.sqlite") as judge:
        examples, queue, funnel = build_coldstart(records, languages, cfg, judge)
        judge_stats = dict(judge.stats)
    out = run.path / "coldstart.jsonl"
    write_jsonl(out, examples)
    write_jsonl(run.path / "review_queue.jsonl", queue)
    summary = {
        "stage": "coldstart",
        "examples": len(examples),
        "prompts": len(records),
        "data": str(out),
        "languages": dict(Counter(x["language"] for x in examples)),
        "funnel": funnel.counts(),
        "judge": judge_stats,
        "model": str(folder),
        "minutes": round((time.time() - started) / 60, 2),
        "config": to_dict(cfg),
    }
    run.write_summary(summary)
    run.close()
    print(funnel.table())
    print(f"coldstart: {len(examples)} examples in {out} ({summary['minutes']:.1f} min)")
    return summary
