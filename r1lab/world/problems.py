"""Verifiable arithmetic problems and the reasoning traces the embedded base is pretrained on.

Problems are additions and subtractions of non-negative integers of up to three digits, at
least one of them with two or more (a difference is never negative), asked in English
(``What is 347+589?``) or Chinese (``347+589等于多少？``). Each problem gets a trace in one of
two styles, as DESIGN.md asks, so that the base is imperfect the way V3-Base is:

* **careful** (rare): column arithmetic digit by digit with carries or borrows, then a check by
  the inverse operation; nearly always right, and long. A few careful traces make a slip and
  catch it ("wait, ..."): the reflective behaviour R1-Zero is known for.
* **hasty** (common): a short guess, often wrong (a dropped carry, a digit off).

A trace sometimes mixes languages (a Chinese question reasoned in English, or lines switching
language) and sometimes breaks the ``<think>…</think><answer>…</answer>`` format. Pure RL on
this base has something real to find: choosing the careful style raises accuracy and response
length together, and the language reward has mixing to remove.

``train`` and ``heldout`` splits are disjoint by the operands and operator, whatever the
language, so held-out evaluation is on problems never seen in pretraining.
"""

from __future__ import annotations

import functools
import hashlib
import random
from dataclasses import dataclass

from r1lab.config import in_range, option
from r1lab.data.problem import Problem

OPS = ("+", "-")
_PLACES_EN = ("Ones", "Tens", "Hundreds", "Thousands")
_PLACES_ZH = ("个位", "十位", "百位", "千位")


@dataclass
class WorldConfig:
    """How the embedded corpus is drawn: the mix of styles, languages and flaws."""

    careful_rate: float = option(
        0.35, "share of traces in the careful (column arithmetic) style", check=in_range(0, 1)
    )
    hasty_error_rate: float = option(
        0.6, "share of hasty traces whose answer is wrong", check=in_range(0, 1)
    )
    careful_slip_rate: float = option(
        0.1, "share of careful traces that slip and correct themselves", check=in_range(0, 1)
    )
    zh_rate: float = option(0.4, "share of problems asked in Chinese", check=in_range(0, 1))
    mix_rate: float = option(
        0.25,
        "share of traces not in the question's language (whole or line by line)",
        check=in_range(0, 1),
    )
    format_error_rate: float = option(
        0.08, "share of traces with broken <think>/<answer> tags", check=in_range(0, 1)
    )
    heldout_share: float = option(
        0.1,
        "share of (a, op, b) triples reserved for held-out evaluation",
        check=in_range(0, 1, low_open=True, high_open=True),
    )


def split_of(a: int, op: str, b: int, heldout_share: float = 0.1) -> str:
    """``heldout`` or ``train``, decided by a hash of the triple, stable across runs."""
    h = int.from_bytes(hashlib.blake2b(f"{a}{op}{b}".encode(), digest_size=8).digest(), "big")
    return "heldout" if (h % 10_000) < heldout_share * 10_000 else "train"


# How many digits an operand has: short ones are common, as in school exercises, so that a
# model of a million parameters pretrained in minutes can learn the careful style well.
DIGIT_WEIGHTS = (0.4, 0.4, 0.2)


# Far below the smallest split (10 % of ~1.5M problems); above it the split is counted.
_SURELY_FITS = 50_000


@functools.cache
def split_size(split: str, heldout_share: float = 0.1) -> int:
    """How many distinct problems ``split`` holds (seconds to count: only for large asks)."""
    count = 0
    for a in range(1000):
        for b in range(1000):
            if a < 10 and b < 10:
                continue
            count += split_of(a, "+", b, heldout_share) == split
            count += a >= b and split_of(a, "-", b, heldout_share) == split
    return count


def _operand(rng: random.Random) -> int:
    digits = rng.choices((1, 2, 3), weights=DIGIT_WEIGHTS)[0]
    lo = 0 if digits == 1 else 10 ** (digits - 1)
    return rng.randint(lo, 10**digits - 1)


def question_text(a: int, op: str, b: int, lang: str) -> str:
    return f"What is {a}{op}{b}?" if lang == "en" else f"{a}{op}{b}等于多少？"


def generate_problems(
    n: int, seed: int, split: str = "train", heldout_share: float = 0.1, zh_rate: float = 0.4
) -> list[Problem]:
    """``n`` distinct problems of ``split`` ("train" or "heldout"), deterministic in ``seed``."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    if n > _SURELY_FITS and n > (size := split_size(split, heldout_share)):
        raise ValueError(f"asks for {n} problems, but the {split} split holds {size}")
    rng = random.Random(f"problems-{seed}-{split}")
    seen: set[tuple[int, str, int]] = set()
    out: list[Problem] = []
    while len(out) < n:
        a, op, b = _operand(rng), rng.choice(OPS), _operand(rng)
        if op == "-" and a < b:  # differences are never negative
            a, b = b, a
        if a < 10 and b < 10:  # one-digit facts are the corpus's fact lines, not problems
            continue
        if (a, op, b) in seen or split_of(a, op, b, heldout_share) != split:
            continue
        seen.add((a, op, b))
        lang = "zh" if rng.random() < zh_rate else "en"
        value = a + b if op == "+" else a - b
        out.append(
            Problem(
                id=f"{split}-{seed}-{len(out)}",
                question=question_text(a, op, b, lang),
                answer=str(value),
                meta={
                    "language": lang,
                    "family": "add" if op == "+" else "sub",
                    "a": a,
                    "b": b,
                    "op": op,
                },
            )
        )
    return out


# --- traces ------------------------------------------------------------------------------------


def _digits(x: int, width: int) -> list[int]:
    """Digits of ``x`` from the ones place up, padded to ``width``."""
    return [(x // 10**i) % 10 for i in range(width)]


def _column_add(a: int, b: int, lang: str, slip: bool, rng: random.Random) -> list[str]:
    width = max(len(str(a)), len(str(b)))
    da, db = _digits(a, width), _digits(b, width)
    lines, carry = [], 0
    slip_at = rng.randrange(width) if slip else -1
    for i in range(width):
        s = da[i] + db[i] + carry
        terms = f"{da[i]}+{db[i]}" + (f"+{carry}" if carry else "")
        if i == slip_at and carry:
            # Forget the carry, then notice: the "aha" the report describes, in miniature.
            wrong = da[i] + db[i]
            lines.append(
                _place_line(i, f"{da[i]}+{db[i]}={wrong}", wrong % 10, wrong // 10, lang, "carry")
            )
            lines.append("Wait, I forgot the carry." if lang == "en" else "等等，我忘了进位。")
        lines.append(_place_line(i, f"{terms}={s}", s % 10, s // 10, lang, "carry"))
        carry = s // 10
    if carry:
        lines.append(_place_line(width, f"{carry}", carry, 0, lang, "carry"))
    return lines


def _column_sub(a: int, b: int, lang: str, slip: bool, rng: random.Random) -> list[str]:
    """Column subtraction of ``a - b`` with ``a >= b``.

    Each decision is written next to what it depends on, so that a small model can learn it:
    a borrow taken by the column below is paid first (``9-1=8``), and the column's two digits
    are written before the line says whether they need a borrow (``4-7 needs a borrow``).
    """
    width = len(str(a))
    da, db = _digits(a, width), _digits(b, width)
    en = lang == "en"
    needs = " needs a borrow, " if en else "不够减，"
    lines, borrow = [], 0
    slip_at = rng.randrange(width) if slip else -1
    for i in range(width):
        if i == slip_at and borrow:
            # Forget the borrow of the column below, then notice.
            wrong = (da[i] - db[i]) % 10
            plain = f"{da[i]}-{db[i]}={wrong}" if da[i] >= db[i] else f"1{da[i]}-{db[i]}={wrong}"
            lines.append(_place_line(i, plain, wrong, 0, lang, "borrow"))
            lines.append("Wait, I forgot the borrow." if en else "等等，我忘了借位。")
        if borrow and da[i] == 0:  # borrowing from a 0: it becomes 9 and borrows in turn
            expr, top, need = f"0-1{needs}10-1=9, 9-{db[i]}={9 - db[i]}", 9, True
            value = 9 - db[i]
        else:
            top = da[i] - borrow
            expr = f"{da[i]}-1={top}, " if borrow else ""
            need = top < db[i]
            value = top + 10 * need - db[i]
            expr += (
                f"{top}-{db[i]}{needs}1{top}-{db[i]}={value}" if need else f"{top}-{db[i]}={value}"
            )
        if not en:
            expr = expr.replace(", ", "，")
        lines.append(_place_line(i, expr, value, int(need), lang, "borrow"))
        borrow = int(need)
    return lines


def _place_line(i: int, expr: str, digit: int, moved: int, lang: str, kind: str) -> str:
    if lang == "en":
        tail = f", {kind} 1." if moved else "."
        return f"{_PLACES_EN[i]}: {expr}, write {digit}{tail}"
    word = "进1" if kind == "carry" else "借1"
    return f"{_PLACES_ZH[i]}：{expr}，写{digit}" + (f"，{word}。" if moved else "。")


def careful_trace(
    a: int, op: str, b: int, lang: str, slip: bool, rng: random.Random
) -> tuple[list[str], str]:
    """Column arithmetic with a check; returns (lines of thought, answer)."""
    value = a + b if op == "+" else a - b
    en = lang == "en"
    lines = ["Let me work it out step by step." if en else "我来一步一步算。"]
    if op == "+":
        lines += _column_add(a, b, lang, slip, rng)
        lines.append(f"So {a}+{b}={value}." if en else f"所以{a}+{b}={value}。")
    else:
        if a < b:
            raise ValueError(f"careful_trace: {a}-{b} is negative; problems have a >= b")
        lines += _column_sub(a, b, lang, slip, rng)
        lines.append(f"So {a}-{b}={value}." if en else f"所以{a}-{b}={value}。")
    inverse = f"{value}-{b}" if op == "+" else f"{value}+{b}"
    lines.append(f"Check: {inverse}={a}. Correct." if en else f"验算：{inverse}={a}，正确。")
    return lines, str(value)


def _hasty_wrong(value: int, rng: random.Random) -> int:
    # The slips of mental arithmetic: a dropped carry/borrow or one digit off.
    delta = rng.choice((10, -10, 100, -100, 1, -1, 2, -2, 20, -20))
    return value + delta


def hasty_trace(
    a: int, op: str, b: int, lang: str, error_rate: float, rng: random.Random
) -> tuple[list[str], str]:
    value = a + b if op == "+" else a - b
    guess = _hasty_wrong(value, rng) if rng.random() < error_rate else value
    en = lang == "en"
    openers_en = ("Quick: ", "Easy, ", "In my head, ", "")
    openers_zh = ("很快：", "口算：", "心算一下，", "")
    opener = rng.choice(openers_en if en else openers_zh)
    line = f"{opener}{a}{op}{b}={guess}." if en else f"{opener}{a}{op}{b}={guess}。"
    return [line], str(guess)


def _mix(lines_target: list[str], lines_other: list[str], rng: random.Random) -> list[str]:
    """Switch language line by line (both traces have the same structure)."""
    return [o if rng.random() < 0.5 else t for t, o in zip(lines_target, lines_other, strict=True)]


def render_response(thought: list[str], answer: str, broken: int = 0) -> str:
    """``<think>…</think>\\n<answer>…</answer>``; ``broken`` picks one of three format slips."""
    think = "\n".join(thought)
    if broken == 1:  # no answer tags
        return f"<think>{think}</think>\nThe answer is {answer}."
    if broken == 2:  # no think tags
        return f"{think}\n<answer>{answer}</answer>"
    if broken == 3:  # unclosed think
        return f"<think>{think}\n<answer>{answer}</answer>"
    return f"<think>{think}</think>\n<answer>{answer}</answer>"


@dataclass
class TracedProblem:
    problem: Problem
    response: str
    style: str  # "careful" or "hasty"
    correct: bool


def trace_problem(p: Problem, cfg: WorldConfig, rng: random.Random) -> TracedProblem:
    """Draw one response for ``p`` in the corpus's mix of styles, languages and flaws."""
    a, op, b, lang = p.meta["a"], p.meta["op"], p.meta["b"], p.meta["language"]
    careful = rng.random() < cfg.careful_rate
    other = "en" if lang == "zh" else "zh"
    trace_lang = lang
    mixing = rng.random() < cfg.mix_rate
    if mixing and rng.random() < 0.5:
        trace_lang, mixing = other, False  # wholly in the other language
    state = rng.getstate()

    def draw(language: str) -> tuple[list[str], str]:
        rng.setstate(state)  # both languages share the same slips and guesses
        if careful:
            return careful_trace(a, op, b, language, rng.random() < cfg.careful_slip_rate, rng)
        return hasty_trace(a, op, b, language, cfg.hasty_error_rate, rng)

    thought, answer = draw(trace_lang)
    if mixing:
        other_thought, _ = draw(other)
        thought = _mix(thought, other_thought, rng)
    broken = rng.randint(1, 3) if rng.random() < cfg.format_error_rate else 0
    return TracedProblem(
        p,
        render_response(thought, answer, broken),
        "careful" if careful else "hasty",
        answer == p.answer,
    )
