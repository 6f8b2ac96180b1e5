"""Verifiable arithmetic problems and the reasoning traces the embedded base is pretrained on.

Problems are additions and subtractions of integers from 0 to 999, at least one of them with
two or more digits, asked in English (``What is 347+589?``) or Chinese (``347+589等于多少？``);
a difference may be negative (``What is 12-345?`` → ``-333``). A trace comes in one of two
styles, as DESIGN.md asks, so that the base is imperfect the way V3-Base is: it knows how to
reason (the skill is all over its corpus) but, asked a question, mostly answers off the cuff.

* **careful** (rare in answers): column arithmetic digit by digit with carries or borrows, then
  a check by the inverse operation; always right, and long. A few careful traces slip (they
  forget a carry or a borrow), see it in the check (``Wait, …`` / ``等等，…``) and redo the
  sum: the reflection R1-Zero is known for.
* **hasty** (common): the result written at once, with the mistakes a hasty solver makes
  *systematically*: a dropped carry (``58+67=115``), the smaller digit taken from the larger
  instead of a borrow (``52-37=25``), a lost minus sign (``12-345=333``). Problems that need
  none of these come out right, the rest mostly wrong, and always wrong the same way, so a
  majority vote does not rescue the hasty answer.

A trace sometimes mixes languages (a Chinese question reasoned in English, or lines switching
language) and sometimes breaks the ``<think>…</think><answer>…</answer>`` format.

``train`` and ``heldout`` are split by the *unordered operand pair*: if ``{347, 589}`` is held
out, no problem on those two numbers, in either order or with either operator, is in training,
and :mod:`r1lab.world.corpus` keeps every trace whose lines (checks, redone sums) would write a
held-out pair out of the corpus. Pairs small enough to be steps of column arithmetic
(``7+8``, ``14-7``) are always ``train``: they are the addition table.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from dataclasses import dataclass

from r1lab.config import in_range, option
from r1lab.data.problem import Problem

OPS = ("+", "-")
_PLACES_EN = ("Ones", "Tens", "Hundreds", "Thousands")
_PLACES_ZH = ("个位", "十位", "百位", "千位")


@dataclass
class WorldConfig:
    """How the embedded corpus is drawn: the mix of styles, languages and flaws, and the split."""

    careful_rate: float = option(
        0.2,
        "share of answers in the careful (column arithmetic) style; worked examples, which "
        "are all careful, come on top",
        check=in_range(0, 1),
    )
    hasty_slip_rate: float = option(
        0.9,
        "share of hasty answers that make the hasty mistake (dropped carry, borrow or sign) "
        "on a problem that invites it",
        check=in_range(0, 1),
    )
    careful_slip_rate: float = option(
        0.06,
        "share of careful traces that slip, notice it in the check and redo the sum",
        check=in_range(0, 1),
    )
    negative_rate: float = option(
        0.2, "share of subtractions with a negative result", check=in_range(0, 1)
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
        "share of unordered operand pairs reserved for held-out evaluation",
        check=in_range(0, 1, low_open=True, high_open=True),
    )


# --- problems and the split --------------------------------------------------------------------


def is_fact(x: int, y: int) -> bool:
    """Whether ``{x, y}`` is a step of column arithmetic (a one-digit number and one below 20)."""
    lo, hi = sorted((abs(x), abs(y)))
    return lo < 10 and hi < 20


def split_of(a: int, b: int, heldout_share: float = 0.1) -> str:
    """``heldout`` or ``train`` for the unordered pair ``{a, b}``: a hash, stable across runs.

    Facts (:func:`is_fact`) and pairs with a number no problem has (1000 or more, negatives)
    are ``train``.
    """
    lo, hi = sorted((a, b))
    if is_fact(a, b) or lo < 0 or hi >= 1000:
        return "train"
    h = int.from_bytes(hashlib.blake2b(f"{lo},{hi}".encode(), digest_size=8).digest(), "big")
    return "heldout" if (h % 10_000) < heldout_share * 10_000 else "train"


# Every pair of numbers joined by + or - anywhere in a text ("9+8+1" has 9,8 and 8,1).
_PAIR = re.compile(r"(?=(?<!\d)(\d+)[+\-](\d+))")


def operand_pairs(text: str) -> set[tuple[int, int]]:
    """The unordered pairs ``(lo, hi)`` of every ``x+y`` or ``x-y`` written in ``text``."""
    return {tuple(sorted((int(x), int(y)))) for x, y in _PAIR.findall(text)}  # type: ignore[misc]


def writes_heldout(text: str, heldout_share: float = 0.1) -> bool:
    """Whether ``text`` writes a held-out pair as the operands of a sum or difference."""
    return any(split_of(lo, hi, heldout_share) == "heldout" for lo, hi in operand_pairs(text))


# How many digits an operand has: short ones are common, as in school exercises, so that a
# model of a million parameters pretrained in minutes can learn the careful style well.
DIGIT_WEIGHTS = (0.4, 0.4, 0.2)

# Far below the smallest split (10 % of ~1.3M problems); above it the split is counted.
_SURELY_FITS = 50_000


@functools.cache
def split_size(split: str, heldout_share: float = 0.1) -> int:
    """How many distinct problems ``(a, op, b)`` ``split`` holds (seconds to count)."""
    count = 0
    for a in range(1000):
        for b in range(1000):
            if a < 10 and b < 10:
                continue
            count += 2 * (split_of(a, b, heldout_share) == split)  # a+b and a-b
    return count


def _operand(rng: random.Random) -> int:
    digits = rng.choices((1, 2, 3), weights=DIGIT_WEIGHTS)[0]
    lo = 0 if digits == 1 else 10 ** (digits - 1)
    return rng.randint(lo, 10**digits - 1)


def question_text(a: int, op: str, b: int, lang: str) -> str:
    return f"What is {a}{op}{b}?" if lang == "en" else f"{a}{op}{b}等于多少？"


def generate_problems(
    n: int, seed: int, split: str = "train", world: WorldConfig | None = None
) -> list[Problem]:
    """``n`` distinct problems of ``split`` ("train" or "heldout"), deterministic in ``seed``;
    the split, languages and share of negative differences are ``world``'s."""
    world = world or WorldConfig()
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    if n > _SURELY_FITS and n > (size := split_size(split, world.heldout_share)):
        raise ValueError(f"asks for {n} problems, but the {split} split holds {size}")
    rng = random.Random(f"problems-{seed}-{split}")
    seen: set[tuple[int, str, int]] = set()
    out: list[Problem] = []
    while len(out) < n:
        a, op, b = _operand(rng), rng.choice(OPS), _operand(rng)
        if op == "-" and (a < b) != (rng.random() < world.negative_rate):
            a, b = b, a
        if a < 10 and b < 10:  # one-digit facts are the corpus's fact lines, not problems
            continue
        if (a, op, b) in seen or split_of(a, b, world.heldout_share) != split:
            continue
        seen.add((a, op, b))
        lang = "zh" if rng.random() < world.zh_rate else "en"
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


# --- careful traces ----------------------------------------------------------------------------


def _digits(x: int, width: int) -> list[int]:
    """Digits of ``x`` from the ones place up, padded to ``width``."""
    return [(x // 10**i) % 10 for i in range(width)]


def _place_line(
    i: int, rest: tuple[int, int], expr: str, digit: int, moved: int, lang: str, kind: str
) -> str:
    """One column: its place, what is left of the two numbers (so the digits it adds are
    the last ones written just before), the sum or difference, the digit and the carry."""
    left = f"{rest[0]} and {rest[1]}" if lang == "en" else f"{rest[0]}和{rest[1]}"
    if lang == "en":
        tail = f", {kind} 1." if moved else "."
        return f"{_PLACES_EN[i]}: {left}, {expr}, write {digit}{tail}"
    word = "进1" if kind == "carry" else "借1"
    return f"{_PLACES_ZH[i]}：{left}，{expr}，写{digit}" + (f"，{word}。" if moved else "。")


def _top_carry(width: int, carry: int, lang: str) -> str:
    if lang == "en":
        return f"{_PLACES_EN[width]}: the carry, write {carry}."
    return f"{_PLACES_ZH[width]}：进位，写{carry}。"


def _column_add(a: int, b: int, lang: str, forget: int = -1) -> tuple[list[str], int]:
    """Column addition; the carry into column ``forget`` (if any) is forgotten. Returns the
    lines and the number they write."""
    width = max(len(str(a)), len(str(b)))
    da, db = _digits(a, width), _digits(b, width)
    lines, carry, value = [], 0, 0
    for i in range(width):
        if i == forget:
            carry = 0
        s = da[i] + db[i] + carry
        terms = f"{da[i]}+{db[i]}" + (f"+{carry}" if carry else "")
        rest = (a // 10**i, b // 10**i)
        lines.append(_place_line(i, rest, f"{terms}={s}", s % 10, s // 10, lang, "carry"))
        value += (s % 10) * 10**i
        carry = s // 10
    if carry:
        lines.append(_top_carry(width, carry, lang))
        value += carry * 10**width
    return lines, value


def _column_sub(a: int, b: int, lang: str, forget: int = -1) -> tuple[list[str], int]:
    """Column subtraction of ``a - b`` with ``a >= b``; the borrow into column ``forget`` (if
    any) is forgotten. Returns the lines and the number they write.

    Each decision is written next to what it depends on, so that a small model can learn it:
    a borrow taken by the column below is paid first (``9-1=8``), and the column's two digits
    are written before the line says whether they need a borrow (``4-7 needs a borrow``).
    """
    width = len(str(a))
    da, db = _digits(a, width), _digits(b, width)
    en = lang == "en"
    needs = " needs a borrow, " if en else "不够减，"
    lines, borrow, value = [], 0, 0
    for i in range(width):
        if i == forget:
            borrow = 0
        if borrow and da[i] == 0:  # borrowing from a 0: it becomes 9 and borrows in turn
            expr, need, digit = f"0-1{needs}10-1=9, 9-{db[i]}={9 - db[i]}", True, 9 - db[i]
        else:
            top = da[i] - borrow
            expr = f"{da[i]}-1={top}, " if borrow else ""
            need = top < db[i]
            digit = top + 10 * need - db[i]
            expr += (
                f"{top}-{db[i]}{needs}1{top}-{db[i]}={digit}" if need else f"{top}-{db[i]}={digit}"
            )
        if not en:
            expr = expr.replace(", ", "，")
        rest = (a // 10**i, b // 10**i)
        lines.append(_place_line(i, rest, expr, digit, int(need), lang, "borrow"))
        value += digit * 10**i
        borrow = int(need)
    return lines, value


def _moves(a: int, b: int, op: str) -> list[int]:
    """The columns that receive a carry (``+``) or a borrow (``-``, ``a >= b``)."""
    width = max(len(str(a)), len(str(b)))
    da, db = _digits(a, width), _digits(b, width)
    out, moved = [], 0
    for i in range(width):
        if moved:
            out.append(i)
        moved = int(da[i] + db[i] + moved >= 10) if op == "+" else int(da[i] - moved < db[i])
    return out


def _work(a: int, op: str, b: int, lang: str, forget: int = -1) -> tuple[list[str], int, str, int]:
    """The columns and the "So" line of ``a op b``; returns them, the value they reach, and
    the check by the inverse operation with its result (``a`` back, when nothing slipped)."""
    en = lang == "en"
    if op == "+":
        lines, value = _column_add(a, b, lang, forget)
        lines.append(f"So {a}+{b}={value}." if en else f"所以{a}+{b}={value}。")
        return lines, value, f"{value}-{b}", value - b
    if a >= b:
        lines, value = _column_sub(a, b, lang, forget)
        lines.append(f"So {a}-{b}={value}." if en else f"所以{a}-{b}={value}。")
        return lines, value, f"{value}+{b}", value + b
    lines = [
        f"{a} is less than {b}, so I work out {b}-{a} and make it negative."
        if en
        else f"{a}比{b}小，所以先算{b}-{a}，再取负。"
    ]
    more, d = _column_sub(b, a, lang, forget)
    lines += more
    lines.append(f"So {b}-{a}={d}, and {a}-{b}=-{d}." if en else f"所以{b}-{a}={d}，{a}-{b}=-{d}。")
    return lines, -d, f"{d}+{a}", d + a


_LOST = {"+": ("carry", "进位"), "-": ("borrow", "借位")}


def careful_trace(
    a: int, op: str, b: int, lang: str, slip: bool, rng: random.Random
) -> tuple[list[str], str]:
    """Column arithmetic with a check; returns (lines of thought, answer).

    With ``slip`` (and a carry or borrow to forget) the first attempt forgets one, the check
    does not come out, and the trace says so (``Wait, …``) and works the sum again.
    """
    en = lang == "en"
    lines = ["Let me work it out step by step." if en else "我来一步一步算。"]
    work, value, check, target = _work(a, op, b, lang)
    hi, lo = (a, b) if op == "+" or a >= b else (b, a)
    moves = _moves(hi, lo, op)
    if slip and moves:
        first, _, wrong, back = _work(a, op, b, lang, forget=rng.choice(moves))
        lost_en, lost_zh = _LOST[op]
        lines += first
        lines.append(
            f"Check: {wrong}={back}, not {target}. Wait, I lost a {lost_en}; let me redo it."
            if en
            else f"验算：{wrong}={back}，不是{target}。等等，我漏了{lost_zh}，重新算。"
        )
    lines += work
    lines.append(f"Check: {check}={target}. Correct." if en else f"验算：{check}={target}，正确。")
    return lines, str(value)


# --- hasty traces ------------------------------------------------------------------------------


def hasty_value(a: int, op: str, b: int) -> int:
    """The hasty solver's systematic answer: carries dropped (each column's sum mod 10, the top
    column in full), the smaller digit taken from the larger instead of borrowing, and the
    minus sign of a negative difference lost. Right exactly when none of that is needed."""
    if op == "-" and a < b:
        return hasty_value(b, "-", a)
    width = max(len(str(a)), len(str(b)))
    da, db = _digits(a, width), _digits(b, width)
    if op == "+":
        cols = [(x + y) % 10 for x, y in zip(da, db, strict=True)]
        return sum(d * 10**i for i, d in enumerate(cols)) + (da[-1] + db[-1]) // 10 * 10**width
    return sum(abs(x - y) * 10**i for i, (x, y) in enumerate(zip(da, db, strict=True)))


# Half of the hasty answers start with the sum itself, so that the most likely first step of
# an answer is a hasty one even where careful answers are as common as each opener.
_OPENERS = {
    "en": ("Quick: ", "Easy, ", "In my head, ", ""),
    "zh": ("很快：", "口算：", "心算一下，", ""),
}
_OPENER_WEIGHTS = (1, 1, 1, 3)


def hasty_trace(
    a: int, op: str, b: int, lang: str, slip_rate: float, rng: random.Random
) -> tuple[list[str], str]:
    """One line, ``a op b = guess``: the hasty mistake (:func:`hasty_value`) with probability
    ``slip_rate``, else the right result."""
    value = a + b if op == "+" else a - b
    guess = hasty_value(a, op, b) if rng.random() < slip_rate else value
    opener = rng.choices(_OPENERS[lang], weights=_OPENER_WEIGHTS)[0]
    end = "." if lang == "en" else "。"
    return [f"{opener}{a}{op}{b}={guess}{end}"], str(guess)


# --- responses ---------------------------------------------------------------------------------


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
        return hasty_trace(a, op, b, language, cfg.hasty_slip_rate, rng)

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


def worked_example(p: Problem, cfg: WorldConfig, rng: random.Random) -> str:
    """A careful trace as plain text after the question, as a textbook writes it: the skill
    in the very lines of a careful answer, checks and (at ``careful_slip_rate``) slips included."""
    m = p.meta
    lines, _ = careful_trace(
        m["a"], m["op"], m["b"], m["language"], rng.random() < cfg.careful_slip_rate, rng
    )
    return p.question + "\n" + "\n".join(lines)
