"""The report's rule-based rewards: accuracy, format and language consistency.

R1-Zero is trained on ``accuracy + format``; stage B adds ``language``. All three read only
the completion text and ``Sample.meta``, and return one float in [0, 1] per sample.
"""

from __future__ import annotations

import functools
import re
import threading
from typing import Any

from r1lab.rewards.answer import check_math, extract_answer
from r1lab.rewards.base import Sample, reward

# --- format -------------------------------------------------------------------------------

_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_FORMAT = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.DOTALL)


def format_ok(completion: str, empty_thought: bool = False) -> bool:
    """True when the completion is, in full, ``<think>…</think>`` then ``<answer>…</answer>``.

    Precisely: optional whitespace, ``<think>``, any text, ``</think>``, optional
    whitespace, ``<answer>``, any text, ``</answer>``, optional whitespace, end. Each of the
    four tags occurs exactly once (a nested or repeated tag fails), tags are case-sensitive,
    and the chain of thought is not empty (nor only whitespace) unless ``empty_thought``
    allows it (a prompt that needs no thinking: "hello", a refusal); the answer may be empty
    (accuracy scores it 0). Text before ``<think>``, between the blocks or after
    ``</answer>`` fails.
    """
    m = _FORMAT.fullmatch(completion)
    return (
        m is not None
        and (empty_thought or bool(m.group(1).strip()))
        and not any(t in m.group(1) or t in m.group(2) for t in _TAGS)
    )


@reward("format")
def format_reward(samples: list[Sample]) -> list[float]:
    """1.0 when :func:`format_ok` holds for the completion, else 0.0. A prompt whose
    ``meta["needs_thought"]`` is False (a greeting, an unsafe request) may have an empty
    chain of thought: the report answers "hello" without one."""
    return [
        1.0 if format_ok(s.completion, not s.meta.get("needs_thought", True)) else 0.0
        for s in samples
    ]


# --- accuracy -----------------------------------------------------------------------------


@reward("accuracy")
def accuracy(samples: list[Sample]) -> list[float]:
    """The report's accuracy reward (notes §3.1): for math, 1.0 when the last
    ``<answer>…</answer>`` block equals ``meta["answer"]`` by math-verify; for code (a
    problem with ``meta["tests"]``), 1.0 when the program passes every test in the sandbox
    (the ``code`` reward).

    0.0 for a wrong, missing or unparsable answer, and for samples without a gold answer
    (prompts of other tasks in a mixed batch).
    """
    code_rows = [i for i, s in enumerate(samples) if s.meta.get("tests")]
    out = _math_accuracy([s for s in samples if not s.meta.get("tests")])
    if code_rows:
        from r1lab.rewards.code import code  # lazy: math runs never start a sandbox

        for i, score in zip(code_rows, code([samples[i] for i in code_rows]), strict=True):
            out.insert(i, score)
    return out


def _math_accuracy(samples: list[Sample]) -> list[float]:
    # math-verify bounds parsing with SIGALRM, which only the main thread may set; elsewhere
    # check_math would swallow the error and score every answer 0. Off the main thread the
    # caller must bound the time (RewardPool runs this in worker processes for that reason).
    timeout = 5 if threading.current_thread() is threading.main_thread() else 0
    out = []
    for s in samples:
        gold = s.meta.get("answer")
        ok = gold is not None and check_math(extract_answer(s.completion), str(gold), timeout)
        out.append(1.0 if ok else 0.0)
    return out


# --- language consistency -----------------------------------------------------------------

LANGUAGES = ("en", "zh")

# Han ideographs: CJK Unified (+ Extension A), Compatibility, and the supplementary planes.
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
# Latin letters, accented ones included, without × (U+00D7) and ÷ (U+00F7).
_LATIN = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"
_HAN_RUN = re.compile(f"[{_HAN}]+")
_LATIN_WORD = re.compile(f"[{_LATIN}]+")
_LETTERS = re.compile(r"[^\W\d_]+")
# Math is language-neutral: $$…$$, $…$ on one line, \(…\), \[…\], and \commands such as \frac
# (whose names would otherwise read as English words).
_MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]*\$|\\\(.*?\\\)|\\\[.*?\\\]|\\[A-Za-z]+", re.DOTALL)
_THINK = re.compile(r"<think>(.*?)(?:</think>|\Z)", re.DOTALL)
_THINK_BLOCK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL)


@functools.cache
def _jieba() -> Any:
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def chinese_words(run: str) -> int:
    """How many words a run of Han characters is, as jieba segments it (``验算正确`` is two:
    验算 / 正确)."""
    return sum(1 for w in _jieba().cut(run) if w.strip())


def count_words(text: str) -> dict[str, int]:
    """Words of ``text`` by language: ``{"en": …, "zh": …, "other": …}``.

    Chinese is written without spaces, so each maximal run of Han ideographs is segmented
    into words by jieba (a dictionary segmenter; ``我来一步一步算`` is 我来 / 一步 / 一步 / 算, four
    words). An ``en`` word is a maximal run of Latin letters (so ``x`` in ``2x`` is one
    word, ``don't`` two).
    A maximal run of letters of any other script (Cyrillic, kana, Hangul, …) is one ``other``
    word. Digits, punctuation, symbols and math (``$…$``, ``\\(…\\)``, ``\\[…\\]``, LaTeX
    ``\\commands``) are no words: they belong to no language. A bare variable written
    outside math delimiters counts as a Latin word, as we cannot tell it from ``a`` or ``I``.
    """
    text = _MATH.sub(" ", text)
    zh = sum(chinese_words(run) for run in _HAN_RUN.findall(text))
    en = len(_LATIN_WORD.findall(text))
    rest = _LATIN_WORD.sub(" ", _HAN_RUN.sub(" ", text))
    return {"en": en, "zh": zh, "other": len(_LETTERS.findall(rest))}


def language_share(text: str, language: str) -> float | None:
    """Share of the words of ``text`` that are in ``language`` (``"en"`` or ``"zh"``):
    the report's target-language words / all words; None when ``text`` has no words.
    """
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r} (known: {', '.join(LANGUAGES)})")
    counts = count_words(text)
    total = sum(counts.values())
    return counts[language] / total if total else None


def think_content(completion: str) -> str | None:
    """The chain of thought: the contents of all ``<think>`` blocks joined by newlines; an
    unclosed ``<think>`` (a truncated response) runs to the end. None when there is none.
    """
    blocks = _THINK.findall(completion)
    return "\n".join(blocks) if blocks else None


def target_language(sample: Sample) -> str:
    """``meta["language"]``, or else the language most of the prompt's words are in."""
    language = sample.meta.get("language")
    if language:
        return language
    counts = count_words(sample.prompt)
    return "zh" if counts["zh"] > counts["en"] else "en"


@reward("language")
def language(samples: list[Sample]) -> list[float]:
    """Language consistency (stage B): target-language words / all words of the chain of
    thought, with words as in :func:`count_words`.

    0.0 without a ``<think>`` block, and for one with no words at all (empty, or digits and
    math only): there is no chain of thought in the target language to reward, and
    ``<think></think>`` must not earn what a consistent one does. A prompt that needs no
    thinking (``meta["needs_thought"]`` False: a greeting, a refusal) is scored on what
    follows an empty chain of thought instead, so that answering "hello" at once, in the
    user's language, earns what a consistent chain of thought does. The target is
    :func:`target_language`.
    """
    out = []
    for s in samples:
        cot = think_content(s.completion)
        if s.meta.get("needs_thought", True) is False and not (cot or "").strip():
            cot = _THINK_BLOCK.sub(" ", s.completion).replace("<answer>", " ")
            cot = cot.replace("</answer>", " ")
        if cot is None:
            out.append(0.0)
            continue
        share = language_share(cot, target_language(s))
        out.append(0.0 if share is None else share)
    return out
