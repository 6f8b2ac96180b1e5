"""Scoring responses per problem: greedy pass@1, pass@1 and pass@k of k samples, cons@k, format,
length, language and reflection.

* **greedy_pass@1**: the share of problems whose greedy (T = 0) response is right: the base's
  best single decoding, the baseline a sampled metric must beat.
* **pass@1** (the report's, averaged over k samples): per problem the share of its k samples
  whose ``<answer>`` equals the gold by math-verify, then the mean over problems.
* **pass@j** for j in :data:`PASS_AT` up to k: the chance that at least one of j samples is
  right, by the unbiased estimator of Chen et al. (2021), ``1 - C(k-c, j) / C(k, j)`` for
  ``c`` right samples of ``k``, averaged over problems.
* **cons@k**: per problem, a majority vote among the k extracted answers (equal answers are
  grouped: same normalised text, same number, or equal by math-verify); the problem counts
  when the winning answer is right. Samples without an answer do not vote. A tie goes to the
  answer that appeared first, so the vote is deterministic.

* **reflection_rate**: the share of samples whose chain of thought says ``Wait,`` or ``等等，``
  (the "aha" the report saw grow in R1-Zero).

Code problems (``meta["tests"]``) are right when the program passes every test in the sandbox
(:mod:`r1lab.eval.code`, which runs them; here they arrive as verdicts); their cons@k votes
among the extracted programs, and the verdicts are counted (``verdict_passed``, ``_failed``,
``_timeout``, ``_crashed``).

Everything here works on text, so it scores predictions from any source, a model or a file.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from r1lab.data.problem import Problem
from r1lab.eval.code import verdict_counts, verdict_kind
from r1lab.rewards.answer import check_math, extract_answer
from r1lab.rewards.rules import LANGUAGES, format_ok, language_share, think_content

PASS_AT = (4, 16)
REFLECTION = re.compile(r"\b[Ww]ait,|等等，")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


@dataclass
class EvalResult:
    """Aggregate metrics, the same per language (when the task has several), and one record
    per problem with its samples."""

    metrics: dict[str, float] = field(default_factory=dict)
    by_language: dict[str, dict[str, float]] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "by_language": self.by_language}


def _timeout() -> int:
    # math-verify bounds parsing with SIGALRM, which only the main thread may set; elsewhere
    # its timeout would raise and every answer would score 0 (see rewards.rules.accuracy).
    return 5 if threading.current_thread() is threading.main_thread() else 0


def _plain_dollars(text: str) -> str:
    # "\$" is a literal dollar sign (a unit: MATH-500 golds such as "\$18.90"), but check_math
    # takes any "$" for a math delimiter and then finds nothing to parse.
    return text.replace("\\$", "")


def check_answer(pred: str | None, gold: str) -> bool:
    """True when the extracted answer ``pred`` equals ``gold`` by math-verify."""
    if pred is None or not pred.strip():
        return False
    return check_math(_plain_dollars(pred), _plain_dollars(gold), _timeout())


def answer_key(answer: str) -> str:
    """A normalised form for grouping: typographic spacing, ``\\$``, surrounding ``$``, a final
    period and thousands separators removed. Equal keys mean equal answers."""
    s = _plain_dollars(answer).replace("\\!", "").replace("\\,", "")
    s = " ".join(s.split()).strip("$ ").rstrip(".")
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    return s


def same_answer(a: str, b: str) -> bool:
    """Whether two extracted answers are the same, cheaply where possible (text, numbers),
    by math-verify otherwise."""
    ka, kb = answer_key(a), answer_key(b)
    if ka == kb:
        return True
    if _NUMBER.fullmatch(ka) and _NUMBER.fullmatch(kb):
        try:
            return Decimal(ka) == Decimal(kb)
        except InvalidOperation:
            return False
    return check_answer(a, b)


def majority_vote(answers: list[str | None]) -> tuple[str | None, int]:
    """The most common answer (its first occurrence as written) and its votes; ``(None, 0)``
    when no sample has an answer. Ties go to the answer that appeared first."""
    reps: list[str] = []
    votes: list[int] = []
    group_of_key: dict[str, int] = {}
    for a in answers:
        if a is None or not a.strip():
            continue
        key = answer_key(a)
        g = group_of_key.get(key)
        if g is None:
            # greedy: join the first group whose representative is equal (groups are built in
            # order of first appearance, so the result does not depend on dict order)
            g = next((i for i, rep in enumerate(reps) if same_answer(rep, a)), None)
            if g is None:
                reps.append(a)
                votes.append(0)
                g = len(reps) - 1
            group_of_key[key] = g
        votes[g] += 1
    if not reps:
        return None, 0
    best = max(range(len(reps)), key=lambda i: (votes[i], -i))
    return reps[best], votes[best]


def pass_at(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with ``c`` right samples out of ``n`` (``k <= n``)."""
    if not 0 < k <= n:
        raise ValueError(f"pass@{k} needs 1 <= k <= n samples, got n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def has_reflection(text: str) -> bool:
    """Whether the chain of thought (or, without one, the text) holds a reflection marker."""
    return REFLECTION.search(think_content(text) or text) is not None


def score_problem(
    problem: Problem,
    texts: list[str],
    num_tokens: list[int] | None = None,
    finish_reasons: list[str] | None = None,
    greedy: str | None = None,
    code: list[Any] | None = None,
    greedy_code: Any = None,
) -> dict[str, Any]:
    """The record of one problem: each sample's answer and verdict, pass@1 and the vote, and
    the greedy response's when given. ``code`` (and ``greedy_code``) are the sandbox's
    verdicts of a code problem's responses: they decide what is right, and the vote is
    among the programs."""
    from r1lab.rewards.code import extract_program

    verdicts: dict[str, bool] = {}  # k samples often repeat an answer; check each text once

    def correct(ans: str | None) -> bool:
        if ans is None:
            return False
        if ans not in verdicts:
            verdicts[ans] = check_answer(ans, problem.answer)
        return verdicts[ans]

    language = problem.meta.get("language")
    samples = []
    for i, text in enumerate(texts):
        ans = extract_program(text) if code is not None else extract_answer(text)
        sample: dict[str, Any] = {
            "text": text,
            "answer": ans,
            "correct": code[i].passed if code is not None else correct(ans),
            "format_ok": format_ok(text),
            "reflection": has_reflection(text),
        }
        if code is not None:
            sample["verdict"] = verdict_kind(code[i])
            sample["reason"] = code[i].reason
        if language in LANGUAGES:
            sample["language_consistency"] = _language_consistency(text, language)
        if num_tokens is not None:
            sample["tokens"] = num_tokens[i]
        if finish_reasons is not None:
            sample["finish_reason"] = finish_reasons[i]
        samples.append(sample)
    if code is not None:  # programs vote as written; the winner's verdict is the vote's
        programs = [s["answer"] for s in samples]
        majority = max(
            programs, key=lambda a: (programs.count(a), -programs.index(a)), default=None
        )
        votes = programs.count(majority) if majority is not None else 0
        verdicts = {s["answer"]: s["correct"] for s in samples}
    else:
        majority, votes = majority_vote([s["answer"] for s in samples])
    record: dict[str, Any] = {
        "id": problem.id,
        "language": language,
        "question": problem.question,
        "gold": problem.answer,
        "pass@1": _mean([float(s["correct"]) for s in samples]),
        "right": sum(s["correct"] for s in samples),
        "majority": majority,
        "votes": votes,
        "majority_correct": correct(majority),
        "samples": samples,
    }
    if greedy is not None and greedy_code is not None:
        record["greedy"] = {
            "text": greedy,
            "answer": extract_program(greedy),
            "correct": greedy_code.passed,
            "verdict": verdict_kind(greedy_code),
        }
    elif greedy is not None:
        answer = extract_answer(greedy)
        record["greedy"] = {"text": greedy, "answer": answer, "correct": correct(answer)}
    return record


def _language_consistency(text: str, language: str) -> float:
    # as the stage-B reward: target-language share of the chain of thought, 0 without one
    # and for one with no words at all
    cot = think_content(text)
    if cot is None:
        return 0.0
    share = language_share(cot, language)
    return 0.0 if share is None else share


def aggregate(records: list[dict[str, Any]], k: int) -> dict[str, float]:
    """Task-level metrics from problem records (see the module docstring)."""
    samples = [s for r in records for s in r["samples"]]
    out: dict[str, float] = {"problems": len(records), "k": k}
    if records and all("greedy" in r for r in records):
        out["greedy_pass@1"] = _mean([float(r["greedy"]["correct"]) for r in records])
    out["pass@1"] = _mean([r["pass@1"] for r in records])
    for j in PASS_AT:
        if records and all(len(r["samples"]) >= j for r in records):
            out[f"pass@{j}"] = _mean([pass_at(len(r["samples"]), r["right"], j) for r in records])
    out.update(
        {
            f"cons@{k}": _mean([float(r["majority_correct"]) for r in records]),
            "format_rate": _mean([float(s["format_ok"]) for s in samples]),
            "answer_rate": _mean([float(s["answer"] is not None) for s in samples]),
            "reflection_rate": _mean([float(s["reflection"]) for s in samples]),
        }
    )
    if samples and all("language_consistency" in s for s in samples):
        out["language_consistency"] = _mean([s["language_consistency"] for s in samples])
    if samples and all("tokens" in s for s in samples):
        out["mean_tokens"] = _mean([float(s["tokens"]) for s in samples])
    if samples and all("finish_reason" in s for s in samples):
        out["truncation_rate"] = _mean([float(s["finish_reason"] == "length") for s in samples])
    if any("verdict" in s for s in samples):
        out.update({f"verdict_{k}": n for k, n in verdict_counts(samples).items()})
    return out


def score_predictions(
    problems: list[Problem],
    predictions: list[list[str]],
    num_tokens: list[list[int]] | None = None,
    finish_reasons: list[list[str]] | None = None,
    greedy: Sequence[str] | None = None,
    progress: bool = False,
) -> EvalResult:
    """Score ``predictions[i]`` (the k response texts for ``problems[i]``).

    ``num_tokens`` and ``finish_reasons`` (same shape), when given, add the mean response
    length and the truncation rate; ``greedy`` (one text per problem) adds greedy pass@1.
    Per-language metrics are added when the problems are in more than one language. The
    programs of code problems run in the sandbox first (``progress``: with a bar).
    """
    if len(predictions) != len(problems):
        raise ValueError(f"{len(predictions)} prediction lists for {len(problems)} problems")
    if greedy is not None and len(greedy) != len(problems):
        raise ValueError(f"{len(greedy)} greedy responses for {len(problems)} problems")
    code: list[Any] = [None] * len(problems)
    greedy_code: list[Any] | None = None
    if any(p.meta.get("tests") for p in problems):
        from r1lab.eval.code import code_verdicts

        code, greedy_code = code_verdicts(problems, predictions, greedy, progress)
    records = [
        score_problem(
            p,
            texts,
            num_tokens[i] if num_tokens is not None else None,
            finish_reasons[i] if finish_reasons is not None else None,
            greedy[i] if greedy is not None else None,
            code[i],
            greedy_code[i] if greedy_code is not None else None,
        )
        for i, (p, texts) in enumerate(zip(problems, predictions, strict=True))
    ]
    k = max((len(t) for t in predictions), default=0)
    result = EvalResult(metrics=aggregate(records, k), records=records)
    languages = sorted({r["language"] for r in records if r["language"]})
    if len(languages) > 1:
        result.by_language = {
            lang: aggregate([r for r in records if r["language"] == lang], k) for lang in languages
        }
    return result


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
