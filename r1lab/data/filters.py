"""The readability filters of cold-start building and rejection sampling (report §6.2, §8.2).

Each filter is a small pure predicate on one response (or its chain of thought) that says
whether it is *kept*; :class:`Funnel` applies them in order and counts what each one kept,
so that a stage summary can say where its data went. The thresholds are :class:`FilterConfig`.

Cold start keeps R1-Zero traces that are correct, in the readable format, not looping and not
switching language inside the chain of thought; a trace wholly in the other language is kept
for the rewriter to translate. Rejection sampling is stricter on language (the RL that made
Dev-2 had a language reward) and also drops over-long paragraphs and code blocks in the
reasoning.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from r1lab.config import at_least, in_range, option
from r1lab.rewards.answer import check_math, extract_answer
from r1lab.rewards.rules import (
    _HAN_RUN,
    _jieba,
    count_words,
    format_ok,
    language_share,
    think_content,
)

__all__ = [
    "FilterConfig",
    "Funnel",
    "answer_correct",
    "cap_per_key",
    "consistent",
    "dedupe",
    "has_code_block",
    "has_long_paragraph",
    "is_repetitive",
    "mixes_languages",
    "readable",
    "thought_of",
]

T = TypeVar("T")


@dataclass
class FilterConfig:
    """Thresholds of the readability filters."""

    max_line_repeats: int = option(
        2,
        "a line written more often than this is a loop (a slipped and redone sum writes its "
        "columns twice, so 2 is allowed); two identical lines in a row are always one",
        check=at_least(1),
    )
    ngram: int = option(8, "words in the n-grams the repetition filter counts", check=at_least(2))
    max_ngram_repeats: int = option(
        3,
        "an n-gram of words written more often than this (within lines or across them) is a loop",
        check=at_least(1),
    )
    mix_tolerance: float = option(
        0.05,
        "cold start: drop a chain of thought whose minority language (of English and Chinese) "
        "has more than this share of its words; one wholly in the other language is kept for "
        "the rewriter to translate",
        check=in_range(0, 0.5),
    )
    min_language: float = option(
        0.99,
        "the share of target-language words a kept chain of thought needs (after the rewrite "
        "in cold start; of Dev-2's samples in rejection sampling)",
        check=in_range(0, 1),
    )
    max_paragraph_chars: int = option(
        240,
        "rejection sampling: drop a chain of thought with a paragraph (a line) longer than this "
        "many characters",
        check=at_least(1),
    )


# --- the predicates: True keeps ----------------------------------------------------------------


def answer_correct(response: str, gold: str) -> bool:
    """The response's ``<answer>`` equals the gold by math-verify (as the accuracy reward)."""
    return check_math(extract_answer(response), gold)


def readable(response: str) -> bool:
    """``<think>…</think><answer>…</answer>`` and nothing else, with a chain of thought."""
    return format_ok(response)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


_HAN_SPLIT = re.compile(f"({_HAN_RUN.pattern})")


def _words(text: str) -> list[str]:
    """The words of ``text`` for the n-gram count: Chinese (written without spaces) segmented
    by jieba, as the language reward counts it; everything else split at whitespace."""
    words: list[str] = []
    for i, part in enumerate(_HAN_SPLIT.split(text)):
        words += _jieba().cut(part) if i % 2 else part.split()
    return words


def is_repetitive(text: str, max_line_repeats: int = 2, ngram: int = 8, max_ngram: int = 3) -> bool:
    """Whether ``text`` loops: the same line twice in a row, a line more than
    ``max_line_repeats`` times, or an ``ngram``-word sequence more than ``max_ngram`` times
    (Chinese words as jieba segments them)."""
    lines = _lines(text)
    if any(a == b for a, b in zip(lines, lines[1:], strict=False)):
        return True
    if lines and max(Counter(lines).values()) > max_line_repeats:
        return True
    words = _words(text)
    grams = Counter(tuple(words[i : i + ngram]) for i in range(len(words) - ngram + 1))
    return bool(grams) and max(grams.values()) > max_ngram


def mixes_languages(thought: str, tolerance: float = 0.05) -> bool:
    """Whether the chain of thought switches between English and Chinese: its minority
    language has more than ``tolerance`` of their words. One language alone is not mixing."""
    counts = count_words(thought)
    en, zh = counts["en"], counts["zh"]
    return en + zh > 0 and min(en, zh) / (en + zh) > tolerance


def consistent(thought: str | None, language: str, min_share: float = 0.99) -> bool:
    """At least ``min_share`` of the chain of thought's words are in ``language``; a chain of
    thought with no words (or none at all) is not consistent, as the language reward says."""
    if thought is None:
        return False
    share = language_share(thought, language)
    return share is not None and share >= min_share


def has_long_paragraph(thought: str, max_chars: int = 240) -> bool:
    """Whether a paragraph (a line) of the chain of thought is longer than ``max_chars``."""
    return any(len(line) > max_chars for line in _lines(thought))


_CODE = re.compile(r"```|~~~|<code>|^(?: {4}|\t)[ \t]*\S", re.MULTILINE)


def has_code_block(thought: str) -> bool:
    """Whether the chain of thought holds a code block: a fenced one (```, ~~~), ``<code>``,
    or an indented line (four spaces or more, or a tab), as Markdown writes code."""
    return bool(_CODE.search(thought))


def thought_of(response: str) -> str:
    """The chain of thought of a response, "" when it has none."""
    return think_content(response) or ""


# --- applying them ------------------------------------------------------------------------------


def dedupe(items: Iterable[T], key: Callable[[T], Hashable]) -> list[T]:
    """``items`` without the repeats of a key (the first one stays), in order."""
    seen: set[Hashable] = set()
    out = []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out


def cap_per_key(items: Iterable[T], key: Callable[[T], Hashable], n: int) -> list[T]:
    """``items`` with at most ``n`` of each key (the first ones stay), in order."""
    seen: Counter[Hashable] = Counter()
    out = []
    for item in items:
        seen[key(item)] += 1
        if seen[key(item)] <= n:
            out.append(item)
    return out


class Funnel:
    """Filters applied in order, each one's in/out counts kept for the stage summary."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def keep(self, name: str, items: list[T], predicate: Callable[[T], bool]) -> list[T]:
        """The items ``predicate`` keeps, counted under ``name``."""
        kept = [x for x in items if predicate(x)]
        return self.record(name, items, kept)

    def record(self, name: str, before: list[Any], after: list[T]) -> list[T]:
        """Count a step done elsewhere (a rewrite, a de-duplication) under ``name``."""
        self.steps.append({"filter": name, "in": len(before), "out": len(after)})
        return after

    def counts(self) -> dict[str, dict[str, int]]:
        """``{filter: {"in": n, "out": m}}`` in the order applied."""
        return {s["filter"]: {"in": s["in"], "out": s["out"]} for s in self.steps}

    def table(self) -> str:
        """The funnel as a Markdown table."""
        rows = ["| filter | in | out | dropped |", "|---|---:|---:|---:|"]
        for s in self.steps:
            rows.append(f"| {s['filter']} | {s['in']} | {s['out']} | {s['in'] - s['out']} |")
        return "\n".join(rows)
