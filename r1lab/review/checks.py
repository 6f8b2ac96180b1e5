"""The readability filters' verdicts on one trace, recomputed for the reviewer to see.

A review queue holds only traces that passed every filter of cold start, so the verdicts on
its rewrites are a reminder; they matter on the original (why a trace wholly in the other
language was kept: the rewriter translated it), on an SFT file written with other
thresholds, and most on a reviewer's own edit, where a lost ``</think>`` or a changed answer
would otherwise go unseen into stage A.

math-verify times its parsing out with ``SIGALRM``, which only the main thread can set; off
the main thread its timeout raises and :func:`~r1lab.rewards.answer.check_math` reads that as
"wrong". So the verdicts of the file's traces are computed once, in the main thread, before
serving (:func:`file_checks`), and an edit's in the request's thread without a timeout
(:func:`text_checks` sees which thread it is in): a reviewer's answer is a short line, not a
model's runaway output.
"""

from __future__ import annotations

import logging
import threading

from r1lab.data.filters import (
    FilterConfig,
    consistent,
    has_code_block,
    has_long_paragraph,
    is_repetitive,
    mixes_languages,
    readable,
    thought_of,
)
from r1lab.review.items import Item
from r1lab.rewards.answer import check_math, extract_answer
from r1lab.rewards.rules import LANGUAGES

__all__ = ["CHECKS", "file_checks", "text_checks"]

# name -> what a pass means, in the page's order
CHECKS = {
    "correct": "the <answer> equals the gold (math-verify)",
    "readable": "<think>…</think><answer>…</answer> and nothing else",
    "one_language": "the chain of thought is in the question's language",
    "no_mixing": "the chain of thought does not switch between English and Chinese",
    "no_repetition": "no line or n-gram loops",
    "short_paragraphs": "no paragraph of the chain of thought over the length limit",
    "no_code": "no code block in the chain of thought",
}


def _not_the_timeout_note(record: logging.LogRecord) -> bool:
    # math-verify warns on every call without a timeout; here that is the intent
    return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_not_the_timeout_note)


def text_checks(
    text: str, gold: str | None, language: str, fc: FilterConfig
) -> dict[str, bool | None]:
    """Each check of :data:`CHECKS` on ``text``: True (passes), False, or None where it does
    not apply (no gold to compare with, a language the rules do not know)."""
    thought = thought_of(text)
    timeout = 5 if threading.current_thread() is threading.main_thread() else 0
    return {
        "correct": None if gold is None else check_math(extract_answer(text), gold, timeout),
        "readable": readable(text),
        "one_language": (
            consistent(thought, language, fc.min_language) if language in LANGUAGES else None
        ),
        "no_mixing": not mixes_languages(thought, fc.mix_tolerance),
        "no_repetition": not is_repetitive(
            thought, fc.max_line_repeats, fc.ngram, fc.max_ngram_repeats
        ),
        "short_paragraphs": not has_long_paragraph(thought, fc.max_paragraph_chars),
        "no_code": not has_code_block(thought),
    }


def file_checks(items: list[Item], fc: FilterConfig) -> dict[str, dict[str, dict]]:
    """``{item key: {"original": checks, "rewritten": checks}}`` for every item (no
    ``original`` for an SFT file's). Call it in the main thread (see the module's note)."""
    out: dict[str, dict[str, dict]] = {}
    for item in items:
        checks = {"rewritten": text_checks(item.rewritten, item.gold, item.language, fc)}
        if item.original is not None:
            checks["original"] = text_checks(item.original, item.gold, item.language, fc)
        out[item.key] = checks
    return out
