"""Pulling the final answer out of a response and checking it against the gold with math-verify.

An answer is a claim, not a calculation: when the gold is a number (``936``, ``-333``, ``0.5``,
``\\frac{1}{2}``), the answer must be one number too. An unevaluated expression (``347+589``,
the question restated), two candidates (``936 or 826``), a hedge (``about 936``) or text
around the number other than a unit (``936 dollars``) is wrong, even where math-verify would
evaluate it to the gold. See :func:`numeric_answer`.
"""

from __future__ import annotations

import re

from math_verify import parse, verify

_OPEN, _CLOSE = "<answer>", "</answer>"
_GSM8K_GOLD = re.compile(r"####\s*(.+?)\s*$", re.DOTALL)


def extract_answer(completion: str) -> str | None:
    """The content of the last ``<answer>…</answer>`` block, stripped; None when there is none."""
    last = answer_block(completion)
    return last.strip() if last is not None else None


def answer_block(completion: str) -> str | None:
    """The content of the last ``<answer>…</answer>`` block as written; None when there is none."""
    # Blocks are matched left to right, each to the nearest "</answer>" (as a lazy regex
    # would), in one pass: a regex scan restarts at every unclosed "<answer>" and so takes
    # quadratic time on a response full of them.
    last, pos = None, 0
    while (start := completion.find(_OPEN, pos)) >= 0:
        end = completion.find(_CLOSE, start + len(_OPEN))
        if end < 0:
            break
        last, pos = completion[start + len(_OPEN) : end], end + len(_CLOSE)
    return last


def gsm8k_gold(solution: str) -> str:
    """GSM8K's gold answer: what follows the last ``####``, without thousands separators."""
    m = _GSM8K_GOLD.search(solution)
    if not m:
        raise ValueError("no '#### <answer>' line")
    return m.group(1).replace(",", "").strip()


_MATH_MODE = re.compile(r"(?<!\\)\$")

_SIGN = r"[-−]?"
_PLAIN = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
_FRAC = r"\\[dt]?frac\{\d+\}\{\d+\}|\\[dt]?frac\d\d|\d+/\d+"
_NUMBER = re.compile(rf"{_SIGN}(?:{_FRAC}|{_PLAIN})(?:\\?%)?")
# A unit after the number: words of letters (dollars, cm, km/h, 元), nothing that hedges.
# Each word is a maximal run of letters (the lookaheads), so that a run has one reading
# only: "(?:[a-z]+)+" would try every split of a long word before failing (exponential).
_WORD = r"[^\W\d_]+(?![^\W\d_])"
_UNIT = re.compile(rf"(?:\\text\{{[^{{}}]*\}}|\\mbox\{{[^{{}}]*\}}|{_WORD}(?:/{_WORD})?|\s)+")
_HEDGES = frozenset(
    [
        "or",
        "and",
        "about",
        "around",
        "approximately",
        "approx",
        "roughly",
        "nearly",
        "almost",
        "maybe",
        "perhaps",
        "probably",
        "likely",
        "possibly",
        "either",
        "to",
        "plus",
        "minus",
        "times",
        "not",
    ]
)
_HEDGES_ZH = ("或", "大约", "约", "左右", "可能", "也许", "大概", "到", "至", "加", "减", "不")
_WRAPPERS = (
    (re.compile(r"^\\\((.*)\\\)$", re.DOTALL), 1),
    (re.compile(r"^\\\[(.*)\\\]$", re.DOTALL), 1),
    (re.compile(r"^\\(?:boxed|fbox)\{(.*)\}$", re.DOTALL), 1),
)
_ASSIGN = re.compile(r"^[A-Za-z]\s*=\s*")


def _unwrap(text: str) -> str:
    """``text`` without surrounding ``$…$``, ``\\(…\\)``, ``\\[…\\]``, ``\\boxed{…}``, spaces,
    a final period and a leading ``x =``; an escaped ``\\$`` (a price) goes too."""
    text = text.replace("\\$", "").replace("\\!", "").replace("\\,", ",")
    changed = True
    while changed:
        changed = False
        text = text.strip().rstrip("。.").strip()
        # $…$ and $$…$$ (by hand: the regex "^\$+(.*?)\$+$" is cubic in a run of "$")
        if len(text) >= 2 and text[0] == "$" and text[-1] == "$":
            text, changed = text.strip("$"), True
        for pattern, group in _WRAPPERS:
            m = pattern.match(text)
            if m:
                text, changed = m.group(group), True
        m = _ASSIGN.match(text)
        if m:
            text, changed = text[m.end() :], True
    return text


def numeric_answer(text: str) -> bool:
    """Whether ``text`` is a single number: an integer, decimal, fraction (``3/4``,
    ``\\frac{3}{4}``) or percentage, with an optional sign and thousands separators, wrapped
    or not in math delimiters or ``\\boxed{}``, and optionally followed by a unit. Nothing
    before the number but ``x =``; no second number, operator or hedging word."""
    body = _unwrap(text)
    m = _NUMBER.match(body)
    if m is None:
        return False
    rest = body[m.end() :]
    if rest and not _UNIT.fullmatch(rest):
        return False
    words = {w.lower() for w in re.findall(r"[A-Za-z]+", rest)}
    return not (words & _HEDGES) and not any(h in rest for h in _HEDGES_ZH)


def _as_math(text: str) -> str:
    # math-verify finds LaTeX inside $…$ or \boxed{}; a bare string such as "x^2+1" or
    # "\frac{1}{2}" parses best when wrapped as inline math.
    # An escaped "\$" (a price) is not math mode, so it does not count.
    text = text.strip()
    if _MATH_MODE.search(text) or "\\boxed" in text:
        return text
    return f"${text}$"


def check_math(pred: str | None, gold: str, timeout_seconds: int = 5) -> bool:
    """True when ``pred`` is mathematically equal to ``gold`` according to math-verify, and,
    when the gold is a number, ``pred`` is one number too (:func:`numeric_answer`)."""
    if pred is None or not pred.strip():
        return False
    if numeric_answer(gold) and not numeric_answer(pred):
        return False
    try:
        gold_parsed = parse(_as_math(gold), parsing_timeout=timeout_seconds)
        if verify(
            gold_parsed,
            parse(_as_math(pred), parsing_timeout=timeout_seconds),
            timeout_seconds=timeout_seconds,
        ):
            return True
        # plain text such as "18 dollars" reads as a product in math mode: let math-verify
        # find the number in the text instead
        raw = parse(pred, parsing_timeout=timeout_seconds)
        return bool(raw) and bool(verify(gold_parsed, raw, timeout_seconds=timeout_seconds))
    except Exception:
        return False
