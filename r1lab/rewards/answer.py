"""Pulling the final answer out of a response and checking it against the gold with math-verify."""

from __future__ import annotations

import re

from math_verify import parse, verify

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_GSM8K_GOLD = re.compile(r"####\s*(.+?)\s*$", re.DOTALL)


def extract_answer(completion: str) -> str | None:
    """The content of the last ``<answer>…</answer>`` block, stripped; None when there is none."""
    found = _ANSWER.findall(completion)
    return found[-1].strip() if found else None


def gsm8k_gold(solution: str) -> str:
    """GSM8K's gold answer: what follows the last ``####``, without thousands separators."""
    m = _GSM8K_GOLD.search(solution)
    if not m:
        raise ValueError("no '#### <answer>' line")
    return m.group(1).replace(",", "").strip()


_MATH_MODE = re.compile(r"(?<!\\)\$")


def _as_math(text: str) -> str:
    # math-verify finds LaTeX inside $…$ or \boxed{}; a bare string such as "x^2+1" or
    # "\frac{1}{2}" parses best when wrapped as inline math.
    # An escaped "\$" (a price) is not math mode, so it does not count.
    text = text.strip()
    if _MATH_MODE.search(text) or "\\boxed" in text:
        return text
    return f"${text}$"


def check_math(pred: str | None, gold: str, timeout_seconds: int = 5) -> bool:
    """True when ``pred`` is mathematically equal to ``gold`` according to math-verify."""
    if pred is None or not pred.strip():
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
