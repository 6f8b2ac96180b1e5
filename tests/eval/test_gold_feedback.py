"""Acceptance: the data path from the real GSM8K and MATH-500 files to math-verify is right.

Each file's gold answer, as written in the file, is fed back as the model's answer: every
problem must score, and answers shuffled across problems must (nearly) all fail.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from r1lab.data.tasks import TaskConfig, load_task
from r1lab.eval.metrics import score_predictions


def _respond(answer: str) -> str:
    return f"<think>I worked it out.</think>\n<answer>{answer}</answer>"


def _golds_as_written(path: Path, task: str) -> list[str]:
    # read independently of load_task, so that its extraction is under test too
    rows = [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    if task == "gsm8k":
        return [r["answer"].rsplit("####", 1)[1].strip() for r in rows]  # "1,450,000" stays so
    return [r["answer"] for r in rows]


@pytest.mark.parametrize(
    ("task", "rel", "count"),
    [("gsm8k", "gsm8k/test.jsonl", 1319), ("math500", "math500/test.jsonl", 500)],
)
def test_gold_answers_score_one_and_shuffled_near_zero(shared_data, task, rel, count):
    problems = load_task(TaskConfig(name=task, data_dir=str(shared_data)))
    golds = _golds_as_written(shared_data / rel, task)
    assert len(problems) == len(golds) == count

    result = score_predictions(problems, [[_respond(g)] for g in golds])
    failed = [
        (r["id"], r["gold"], r["samples"][0]["answer"]) for r in result.records if not r["pass@1"]
    ]
    assert failed == []
    assert result.metrics["pass@1"] == 1.0
    assert result.metrics["cons@1"] == 1.0
    assert result.metrics["format_rate"] == 1.0

    order = list(range(count))
    random.Random(0).shuffle(order)
    shuffled = score_predictions(problems, [[_respond(golds[j])] for j in order])
    # a few problems share their answer by chance (small integers are common)
    assert shuffled.metrics["pass@1"] < 0.1
