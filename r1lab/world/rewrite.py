"""The embedded world's rewriter: what the oracle judge does when asked to make a trace readable.

The report has DeepSeek-V3 rewrite R1-Zero's reasoning (§6.2): same content, the question's
language, first person, readable. The embedded world writes every reasoning line from a small
set of templates (:mod:`r1lab.world.problems`), so a rewriter can *read* a line in either
language and *write* it in the other, the way a translator would, without solving anything:

* each line of the chain of thought is parsed as one of the world's line kinds (a column, a
  check, a "So" line, ...) in English or Chinese and rendered in the target language, numbers
  and arithmetic kept exactly as written (a wrong step stays wrong: the re-check after the
  rewrite is what catches a wrong answer);
* a hasty opener (``Quick:``, ``口算：``) is dropped, and a line repeated right after itself
  is written once;
* the response is rendered in the corpus's ``<think>…</think><answer>…</answer>`` format.

A line it cannot read (a model's garbled line) or a response without a final answer makes the
rewrite fail (None), as a real rewriter fails on some inputs: the stage counts and drops it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from r1lab.rewards.answer import extract_answer
from r1lab.rewards.rules import think_content
from r1lab.world.problems import render_response

__all__ = ["parse_line", "render_line", "rewrite_response"]

_PLACES = {"Ones": "个位", "Tens": "十位", "Hundreds": "百位", "Thousands": "千位"}
_PLACES_EN = {zh: en for en, zh in _PLACES.items()}
_N = r"-?\d+"
_SUM = r"-?\d+[+\-]\d+(?:=-?\d+)?"  # "347+589" or "347+589=936"
_EXPR_EN = r"[\d+\-=, ]+?(?: needs a borrow, [\d+\-=, ]+?)*"
_EXPR_ZH = r"[\d+\-=，]+?(?:不够减，[\d+\-=，]+?)*"


def _expr_zh(expr: str) -> str:
    return expr.replace(" needs a borrow, ", "不够减，").replace(", ", "，")


def _expr_en(expr: str) -> str:
    return expr.replace("不够减，", " needs a borrow, ").replace("，", ", ")


# Each line kind: its English and Chinese pattern (named groups are the slots) and how to
# write it in either language from the slots, with the slots normalised to English forms.
_Render = Callable[[dict[str, str]], str]
_KINDS: list[tuple[str, str, str, _Render, _Render]] = [
    (
        "start",
        r"Let me work it out step by step\.",
        r"我来一步一步算。",
        lambda s: "Let me work it out step by step.",
        lambda s: "我来一步一步算。",
    ),
    (
        "column",
        rf"(?P<place>Ones|Tens|Hundreds|Thousands): (?P<x>\d+) and (?P<y>\d+), "
        rf"(?P<expr>{_EXPR_EN}), write (?P<d>\d)(?:, (?P<moved>carry|borrow) 1)?\.",
        rf"(?P<place>个位|十位|百位|千位)：(?P<x>\d+)和(?P<y>\d+)，(?P<expr>{_EXPR_ZH})，"
        rf"写(?P<d>\d)(?:，(?P<moved>进|借)1)?。",
        lambda s: (
            f"{s['place']}: {s['x']} and {s['y']}, {s['expr']}, write {s['d']}"
            + (f", {s['moved']} 1." if s["moved"] else ".")
        ),
        lambda s: (
            f"{_PLACES[s['place']]}：{s['x']}和{s['y']}，{_expr_zh(s['expr'])}，写{s['d']}"
            + (f"，{'进' if s['moved'] == 'carry' else '借'}1。" if s["moved"] else "。")
        ),
    ),
    (
        "top_carry",
        r"(?P<place>Tens|Hundreds|Thousands): the carry, write (?P<d>\d)\.",
        r"(?P<place>十位|百位|千位)：进位，写(?P<d>\d)。",
        lambda s: f"{s['place']}: the carry, write {s['d']}.",
        lambda s: f"{_PLACES[s['place']]}：进位，写{s['d']}。",
    ),
    (
        "negative",
        rf"(?P<a>\d+) is less than (?P<b>\d+), so I work out (?P<e>{_SUM}) and make it negative\.",
        rf"(?P<a>\d+)比(?P<b>\d+)小，所以先算(?P<e>{_SUM})，再取负。",
        lambda s: f"{s['a']} is less than {s['b']}, so I work out {s['e']} and make it negative.",
        lambda s: f"{s['a']}比{s['b']}小，所以先算{s['e']}，再取负。",
    ),
    (
        "so_negative",
        rf"So (?P<e>{_SUM}), and (?P<f>{_SUM})\.",
        rf"所以(?P<e>{_SUM})，(?P<f>{_SUM})。",
        lambda s: f"So {s['e']}, and {s['f']}.",
        lambda s: f"所以{s['e']}，{s['f']}。",
    ),
    (
        "so",
        rf"So (?P<e>{_SUM})\.",
        rf"所以(?P<e>{_SUM})。",
        lambda s: f"So {s['e']}.",
        lambda s: f"所以{s['e']}。",
    ),
    (
        "slip",
        rf"Check: (?P<e>{_SUM}), not (?P<t>{_N})\. Wait, I lost a (?P<lost>carry|borrow); "
        r"let me redo it\.",
        rf"验算：(?P<e>{_SUM})，不是(?P<t>{_N})。等等，我漏了(?P<lost>进位|借位)，重新算。",
        lambda s: f"Check: {s['e']}, not {s['t']}. Wait, I lost a {s['lost']}; let me redo it.",
        lambda s: (
            f"验算：{s['e']}，不是{s['t']}。等等，我漏了"
            f"{'进位' if s['lost'] == 'carry' else '借位'}，重新算。"
        ),
    ),
    (
        "check",
        rf"Check: (?P<e>{_SUM})\. Correct\.",
        rf"验算：(?P<e>{_SUM})，正确。",
        lambda s: f"Check: {s['e']}. Correct.",
        lambda s: f"验算：{s['e']}，正确。",
    ),
    (
        "guess",  # a hasty line; its opener is dropped
        rf"(?:Quick: |Easy, |In my head, )?(?P<e>{_SUM})\.",
        rf"(?:很快：|口算：|心算一下，)?(?P<e>{_SUM})。",
        lambda s: f"{s['e']}.",
        lambda s: f"{s['e']}。",
    ),
]
_COMPILED = [
    (name, re.compile(en), re.compile(zh), to_en, to_zh) for name, en, zh, to_en, to_zh in _KINDS
]


def parse_line(line: str) -> tuple[str, dict[str, str]] | None:
    """``(kind, slots)`` of a reasoning line written in either language, the slots in their
    English forms; None for a line that is none of the world's kinds."""
    line = line.strip()
    for name, en, zh, _, _ in _COMPILED:
        m = en.fullmatch(line)
        if m:
            return name, {k: v or "" for k, v in m.groupdict().items()}
        m = zh.fullmatch(line)
        if m:
            slots = {k: v or "" for k, v in m.groupdict().items()}
            if "place" in slots:
                slots["place"] = _PLACES_EN[slots["place"]]
            if "expr" in slots:
                slots["expr"] = _expr_en(slots["expr"])
            if slots.get("moved"):
                slots["moved"] = "carry" if slots["moved"] == "进" else "borrow"
            if slots.get("lost"):
                slots["lost"] = "carry" if slots["lost"] == "进位" else "borrow"
            return name, slots
    return None


def render_line(kind: str, slots: dict[str, str], language: str) -> str:
    """The line ``(kind, slots)`` written in ``language`` (``en`` or ``zh``)."""
    _, _, _, to_en, to_zh = next(k for k in _COMPILED if k[0] == kind)
    return to_en(slots) if language == "en" else to_zh(slots)


def rewrite_response(response: str, language: str) -> str | None:
    """``response`` rewritten readably in ``language``, same steps and answer; None when it has
    no final answer, no chain of thought, or a line the rewriter cannot read."""
    answer = extract_answer(response)
    thought = think_content(response)
    if answer is None or not answer.strip() or thought is None:
        return None
    lines: list[str] = []
    for raw in thought.splitlines():
        if not raw.strip():
            continue
        parsed = parse_line(raw)
        if parsed is None:
            return None
        line = render_line(*parsed, language)
        if not lines or lines[-1] != line:
            lines.append(line)
    if not lines:
        return None
    return render_response(lines, answer.strip())
