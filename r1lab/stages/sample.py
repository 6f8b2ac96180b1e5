"""``r1lab sample``: rejection sampling from Dev-2, plus non-reasoning data: stage C's SFT file.

The report (§8.2) samples the RL checkpoint several times per prompt and keeps

* by rules where the answer can be checked (math-verify against the gold), else by the judge
  given the reference answer (a generative reward: DeepSeek-V3 compares);
* only readable chains of thought: no mixed languages, no over-long paragraphs, no code
  blocks (and, here, none that loop);
* after de-duplication;

and mixes in non-reasoning data (writing, QA, translation) answered by DeepSeek-V3, with a
short chain of thought where it helps and none for "hello". Here the general prompts are the
embedded world's (:mod:`r1lab.world.general`) answered by the judge, at ``general_share`` of
the mixture.

``runs/sample/`` gets ``sft.jsonl`` (the mixture, shuffled), ``samples.json`` (the sampled
traces, reused by a rerun), the judge's reply cache and ``summary.json`` with every filter's
in/out counts.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from r1lab.config import at_least, in_range, option, section, to_dict
from r1lab.data.filters import (
    FilterConfig,
    Funnel,
    cap_per_key,
    consistent,
    dedupe,
    has_code_block,
    has_long_paragraph,
    is_repetitive,
    readable,
    thought_of,
)
from r1lab.data.tasks import TaskConfig
from r1lab.judge.client import JudgeConfig
from r1lab.judge.oracle import OracleConfig
from r1lab.runs import RunConfig
from r1lab.stages.sampling import SamplingConfig

__all__ = ["SampleConfig", "reasoning_examples", "general_examples", "run_sample"]

DEFAULT_MODEL = "runs/stage-b/final"


@dataclass
class SampleConfig:
    """``r1lab sample``: Dev-2 samples → rules or judge → readability filters → + general data."""

    model: str = option(DEFAULT_MODEL, "model to sample from (Dev-2: the stage-B result)")
    task: TaskConfig = section(TaskConfig, split="train", limit=1024, seed=1)
    sampling: SamplingConfig = section(SamplingConfig)
    filters: FilterConfig = section(FilterConfig)
    per_prompt: int = option(
        1, "kept traces per prompt at most", report="several", check=at_least(1)
    )
    general_share: float = option(
        0.25,
        "share of non-reasoning (general) examples in the mixture",
        report="200k of 800k = 0.25",
        check=in_range(0, 1, high_open=True),
    )
    general_seed: int = option(0, "seed of the general prompts' draw")
    judge: JudgeConfig = section(JudgeConfig)
    oracle: OracleConfig = section(OracleConfig)
    run: RunConfig = section(RunConfig)


def _verifiable(gold: str) -> bool:
    from r1lab.rewards.answer import numeric_answer

    return numeric_answer(gold)


def reasoning_examples(
    records: list[dict[str, Any]], languages: dict[str, str], cfg: SampleConfig, judge: Any
) -> tuple[list[dict[str, Any]], Funnel]:
    """Reasoning examples from sampled ``records`` (one per prompt, with ``samples``), and the
    funnel that made them. A sample's correctness is the rule's (``correct``, math-verify)
    where the gold is a number, else the judge's given the gold."""
    f, fc = Funnel(), cfg.filters
    items = [
        {"id": r["id"], "question": r["question"], "gold": r["gold"],
         "language": languages[r["id"]], "response": s["text"], "rule": s["correct"]}
        for r in records for s in r["samples"]
    ]  # fmt: skip
    f.record("sampled", items, items)
    judged = [x for x in items if not _verifiable(x["gold"])]
    verdicts = judge.correct([(x["question"], x["gold"], x["response"]) for x in judged])
    for x, v in zip(judged, verdicts, strict=True):
        x["rule"] = bool(v)  # a judge that failed every try keeps nothing
    f.record("judged (no rule)", judged, judged)
    items = f.keep("correct", items, lambda x: x["rule"])
    items = f.keep("readable", items, lambda x: readable(x["response"]))
    items = f.keep(
        "one_language",
        items,
        lambda x: consistent(thought_of(x["response"]), x["language"], fc.min_language),
    )
    items = f.keep(
        "short_paragraphs",
        items,
        lambda x: not has_long_paragraph(thought_of(x["response"]), fc.max_paragraph_chars),
    )
    items = f.keep("no_code", items, lambda x: not has_code_block(thought_of(x["response"])))
    items = f.keep(
        "no_repetition",
        items,
        lambda x: (
            not is_repetitive(
                thought_of(x["response"]), fc.max_line_repeats, fc.ngram, fc.max_ngram_repeats
            )
        ),
    )
    items = f.record("deduplicated", items, dedupe(items, lambda x: (x["id"], x["response"])))
    items = f.record("per_prompt", items, cap_per_key(items, lambda x: x["id"], cfg.per_prompt))
    examples = [
        {"prompt": x["question"], "response": x["response"], "id": x["id"],
         "language": x["language"], "source": "reasoning"}
        for x in items
    ]  # fmt: skip
    return examples, f


def general_examples(n: int, seed: int, judge: Any, funnel: Funnel) -> list[dict[str, Any]]:
    """``n`` general prompts of the embedded world answered by the judge (failed answers are
    counted in ``funnel`` and dropped)."""
    from r1lab.world.general import generate_general

    problems = generate_general(n, seed, "train")
    answers = judge.answer([p.question for p in problems])
    items = [(p, a) for p, a in zip(problems, answers, strict=True)]
    kept = funnel.keep("general answered", items, lambda x: x[1] is not None)
    return [
        {"prompt": p.question, "response": a, "id": p.id, "language": p.meta["language"],
         "source": f"general/{p.meta['kind']}"}
        for p, a in kept
    ]  # fmt: skip


def run_sample(cfg: SampleConfig, resume: bool = False) -> dict[str, Any]:
    """Build stage C's SFT mixture; returns the summary (also ``summary.json``)."""
    from r1lab.data.io import write_jsonl
    from r1lab.judge.session import judge_session
    from r1lab.stages.sampling import sample_stage

    started = time.time()
    hint = "build it with the stage-B GRPO run, or set model=<folder>"
    run, folder, records, languages = sample_stage(cfg, "sample", hint, resume)
    with judge_session(cfg.judge, cfg.oracle, run.path / "judge_cache.sqlite") as judge:
        reasoning, funnel = reasoning_examples(records, languages, cfg, judge)
        n_general = round(len(reasoning) * cfg.general_share / (1 - cfg.general_share))
        general = general_examples(n_general, cfg.general_seed, judge, funnel)
        judge_stats = dict(judge.stats)
    mixture = reasoning + general
    random.Random(cfg.run.seed).shuffle(mixture)
    out = run.path / "sft.jsonl"
    write_jsonl(out, mixture)
    summary = {
        "stage": "sample",
        "examples": len(mixture),
        "reasoning": len(reasoning),
        "general": len(general),
        "sources": dict(Counter(x["source"] for x in mixture)),
        "data": str(out),
        "funnel": funnel.counts(),
        "judge": judge_stats,
        "model": str(folder),
        "minutes": round((time.time() - started) / 60, 2),
        "config": to_dict(cfg),
    }
    run.write_summary(summary)
    run.close()
    print(funnel.table())
    print(
        f"sample: {len(reasoning)} reasoning + {len(general)} general examples in {out} "
        f"({summary['minutes']:.1f} min)"
    )
    return summary
