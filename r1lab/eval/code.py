"""Scoring code responses: each program runs against its problem's tests in the sandbox.

A code problem (``meta["tests"]``: HumanEval, MBPP, the embedded code world, a jsonl file
with tests) is right when its program passes every test, as the ``code`` reward decides
(:mod:`r1lab.rewards.code`). The verdicts are counted by kind: ``passed``, ``failed`` (a test
failed or raised), ``timeout`` and ``crashed`` (the program did not load, or was killed for
a resource limit).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from r1lab.data.problem import Problem
from r1lab.rewards.sandbox import Verdict

VERDICTS = ("passed", "failed", "timeout", "crashed")


def verdict_kind(v: Verdict) -> str:
    """``passed``, ``failed``, ``timeout`` or ``crashed`` (the sandbox's error and killed)."""
    return v.status if v.status in ("passed", "failed", "timeout") else "crashed"


def is_code(problem: Problem) -> bool:
    return bool(problem.meta.get("tests"))


def code_verdicts(
    problems: Sequence[Problem],
    predictions: Sequence[Sequence[str]],
    greedy: Sequence[str] | None = None,
    progress: bool = True,
) -> tuple[list[list[Verdict] | None], list[Verdict | None] | None]:
    """The verdict of every response of every code problem (None for the others), and of
    each greedy response. All programs are queued at once on the process's sandbox pool, so
    they run while the rest are still being queued."""
    from tqdm.auto import tqdm

    from r1lab.rewards.code import default_pool, submit_completion

    pool = default_pool()
    futures: list[list[Any] | None] = []
    greedy_futures: list[Any] = []
    for i, (p, texts) in enumerate(zip(problems, predictions, strict=True)):
        if not is_code(p):
            futures.append(None)
            greedy_futures.append(None)
            continue
        futures.append([submit_completion(pool, t, p.meta) for t in texts])
        greedy_futures.append(submit_completion(pool, greedy[i], p.meta) if greedy else None)
    total = sum(len(f) for f in futures if f) + sum(f is not None for f in greedy_futures)
    bar = tqdm(total=total, desc="eval: sandbox", unit="program", disable=not progress or None)

    def result(fut: Any) -> Verdict | None:
        if fut is None:
            return None
        v = fut.result()
        bar.update()
        return v

    verdicts = [None if f is None else [result(x) for x in f] for f in futures]
    greedy_verdicts = [result(f) for f in greedy_futures] if greedy else None
    bar.close()
    return verdicts, greedy_verdicts  # type: ignore[return-value]


def verdict_counts(samples: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many samples got each verdict kind (samples without one are not counted)."""
    counts = dict.fromkeys(VERDICTS, 0)
    for s in samples:
        if "verdict" in s:
            counts[s["verdict"]] += 1
    return counts
