"""The embedded code world: tiny Python functions, the tests that check them, and the traces
a code base is pretrained on (``r1lab pretrain kind=code``, task ``embedded-code``).

A problem asks for one small function in words (``Write a Python function count_hits(xs) that
returns how many numbers in the list xs are at least 37.``); its hidden tests call it on a few
inputs drawn so that they tell a right program from the usual wrong one. Six families, each
with a variant that sets a trap and one that does not:

========  ===========================================  ==================================
family    trap variant (and the hasty mistake)          plain variant
========  ===========================================  ==================================
count     "at least A" / "at most A" (``>`` / ``<``)    "greater than A" / "less than A"
sum       as count, summing the numbers                  as count
range     "from A to n, n included" (``range(A, n)``)   "n excluded"
affine    "x plus A, times B" (``x + A * B``)           "x times A plus B"
slice     "the last A elements" (``xs[A:]``)            "the first A elements"
clip      "minus A, never below 0" (no ``max``)         "minus A"
========  ===========================================  ==================================

As in the arithmetic world (:mod:`r1lab.world.problems`) a response comes in two styles:

* **careful** (rare in answers): the thought reads the spec word by word (``at least 37
  includes 37: v >= 37.``), checks the function on one input, and the code is right;
* **hasty** (common): a word or two of thought and the code at once, with the trap's mistake
  at ``hasty_slip_rate``; right on the plain variants.

Worked examples (the careful reading as plain text, a textbook's) teach the skill without the
habit, so RL on the tests' verdict can teach the base to choose it. ``train`` and ``heldout``
are split by the problem's *spec* (family, variant and constants): a held-out spec is never in
the corpus, under any function name.
"""

from __future__ import annotations

import functools
import hashlib
import random
from dataclasses import dataclass
from typing import Any

from r1lab.config import at_least, in_range, option
from r1lab.data.problem import Problem

__all__ = [
    "CodeWorldConfig",
    "build_code_corpus",
    "generate_code_problems",
    "trace_code_problem",
]

KIND = "code"  # the world's name in a model card
TASK = "embedded-code"


@dataclass
class CodeWorldConfig:
    """How the embedded code corpus is drawn: the mix of styles and flaws, the split, its size."""

    careful_rate: float = option(
        0.2,
        "share of answers in the careful style (the spec read word by word, a check); "
        "worked examples, all careful, come on top",
        check=in_range(0, 1),
    )
    hasty_slip_rate: float = option(
        0.9,
        "share of hasty answers to a trap variant that fall into the trap",
        check=in_range(0, 1),
    )
    format_error_rate: float = option(
        0.08, "share of answers with broken <think>/<answer> tags", check=in_range(0, 1)
    )
    heldout_share: float = option(
        0.15,
        "share of specs (family, variant, constants) reserved for held-out evaluation",
        check=in_range(0, 1, low_open=True, high_open=True),
    )
    trap_rate: float = option(
        0.7, "share of problems in a family's trap variant", check=in_range(0, 1)
    )
    tests: int = option(5, "hidden tests per problem", check=at_least(1))
    conversations: int = option(
        10000, "corpus: chat documents (request + traced answer)", check=at_least(0)
    )
    worked_examples: int = option(
        5000, "corpus: plain-text documents of careful readings", check=at_least(0)
    )
    seed: int = option(0, "seed of the corpus draw")


# --- the families --------------------------------------------------------------------------------

# comparison phrase -> (operator, the hasty operator, "includes"/"excludes" the bound)
_CMP = {
    "greater than": (">", ">", "excludes"),
    "at least": (">=", ">", "includes"),
    "less than": ("<", "<", "excludes"),
    "at most": ("<=", "<", "includes"),
}
_NAMES = {
    "count": ("count_hits", "how_many", "count_items"),
    "sum": ("sum_hits", "total_of", "add_some"),
    "range": ("range_sum", "sum_up", "total_to"),
    "affine": ("apply", "compute", "value_of"),
    "slice": ("take", "part_of", "pick"),
    "clip": ("shift_all", "lower_all", "reduce_all"),
}
FAMILIES = tuple(_NAMES)


@dataclass(frozen=True)
class Spec:
    """What a function must do: a family, its variant and its constants."""

    family: str
    variant: str
    a: int
    b: int = 0

    @property
    def trap(self) -> bool:
        return self.variant in ("at least", "at most", "included", "plus-times", "last", "floor")


def _specs(family: str) -> list[Spec]:
    """Every spec of a family, in a fixed order."""
    if family in ("count", "sum"):
        return [Spec(family, v, a) for v in _CMP for a in range(1, 100)]
    if family == "range":
        return [Spec(family, v, a) for v in ("included", "excluded") for a in range(21)]
    if family == "affine":
        pairs = [(a, b) for a in range(2, 10) for b in range(2, 10) if a != b]
        return [Spec(family, v, a, b) for v in ("plus-times", "times-plus") for a, b in pairs]
    if family == "slice":
        return [Spec(family, v, a) for v in ("last", "first") for a in range(1, 10)]
    return [Spec(family, v, a) for v in ("floor", "plain") for a in range(1, 61)]


@functools.cache
def specs_in(split: str, heldout_share: float = 0.15) -> dict[str, list[Spec]]:
    """Family -> the specs of ``split``."""
    return {f: [s for s in _specs(f) if split_of(s, heldout_share) == split] for f in FAMILIES}


def split_of(spec: Spec, heldout_share: float = 0.15) -> str:
    """``heldout`` or ``train`` for a spec: a hash, stable across runs and function names."""
    key = f"{spec.family}|{spec.variant}|{spec.a}|{spec.b}".encode()
    h = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")
    return "heldout" if (h % 10_000) < heldout_share * 10_000 else "train"


def _arg(spec: Spec) -> str:
    return {"range": "n", "affine": "x"}.get(spec.family, "xs")


def question_text(spec: Spec, name: str) -> str:
    head = f"Write a Python function {name}({_arg(spec)}) that returns "
    a, b = spec.a, spec.b
    if spec.family == "count":
        return head + f"how many numbers in the list xs are {spec.variant} {a}."
    if spec.family == "sum":
        return head + f"the sum of the numbers in the list xs that are {spec.variant} {a}."
    if spec.family == "range":
        return head + f"the sum of the integers from {a} to n, n {spec.variant}."
    if spec.family == "affine":
        if spec.variant == "plus-times":
            return head + f"x plus {a}, times {b}."
        return head + f"x times {a} plus {b}."
    if spec.family == "slice":
        return head + f"the {spec.variant} {a} elements of the list xs."
    tail = ", but never below 0" if spec.variant == "floor" else ""
    return head + f"a new list with each number in the list xs minus {a}{tail}."


def body(spec: Spec, hasty_slip: bool = False) -> str:
    """The function's one line of body; ``hasty_slip`` writes the trap's mistake."""
    a, b = spec.a, spec.b
    slip = hasty_slip and spec.trap
    if spec.family in ("count", "sum"):
        op, hasty_op, _ = _CMP[spec.variant]
        what = "1" if spec.family == "count" else "v"
        return f"return sum({what} for v in xs if v {hasty_op if slip else op} {a})"
    if spec.family == "range":
        end = "n" if slip or spec.variant == "excluded" else "n + 1"
        return f"return sum(range({a}, {end}))"
    if spec.family == "affine":
        if spec.variant == "times-plus":
            return f"return x * {a} + {b}"
        return f"return x + {a} * {b}" if slip else f"return (x + {a}) * {b}"
    if spec.family == "slice":
        if spec.variant == "first":
            return f"return xs[:{a}]"
        return f"return xs[{a}:]" if slip else f"return xs[-{a}:]"
    if spec.variant == "floor" and not slip:
        return f"return [max(v - {a}, 0) for v in xs]"
    return f"return [v - {a} for v in xs]"


def program(spec: Spec, name: str, hasty_slip: bool = False) -> str:
    return f"def {name}({_arg(spec)}):\n    {body(spec, hasty_slip)}\n"


def value(spec: Spec, arg: Any) -> Any:
    """What the right function returns for ``arg`` (computed here, never by running code)."""
    a, b = spec.a, spec.b
    if spec.family in ("count", "sum"):
        op = _CMP[spec.variant][0]
        keep = {
            ">": lambda v: v > a,
            ">=": lambda v: v >= a,
            "<": lambda v: v < a,
            "<=": lambda v: v <= a,
        }[op]
        return sum((1 if spec.family == "count" else v) for v in arg if keep(v))
    if spec.family == "range":
        return sum(range(a, arg + 1 if spec.variant == "included" else arg))
    if spec.family == "affine":
        return (arg + a) * b if spec.variant == "plus-times" else arg * a + b
    if spec.family == "slice":
        return arg[:a] if spec.variant == "first" else arg[-a:]
    return [max(v - a, 0) if spec.variant == "floor" else v - a for v in arg]


def test_inputs(spec: Spec, count: int, rng: random.Random) -> list[Any]:
    """Distinct-where-possible inputs that tell the right function from the trap's mistake:
    a list holds the bound itself and numbers below it; a slice's list is longer than the
    slice and not twice it."""
    if spec.family == "range":
        return [spec.a + d for d in _distinct(range(13), count, rng)]
    if spec.family == "affine":
        return _distinct(range(1, 21), count, rng)
    out: list[Any] = []
    for i in range(count):
        if spec.family == "slice":
            length = rng.choice([n for n in range(spec.a + 1, spec.a + 7) if n != 2 * spec.a])
            out.append([rng.randint(0, 99) for _ in range(length)])
            continue
        xs = [rng.randint(0, 99) for _ in range(rng.randint(2, 6))]
        if i % 2 == 0:
            xs.insert(rng.randint(0, len(xs)), spec.a)
        if spec.family == "clip":
            xs.insert(rng.randint(0, len(xs)), rng.randint(0, spec.a - 1))
        out.append(xs)
    return out


def _distinct(values: range, count: int, rng: random.Random) -> list[int]:
    drawn = rng.sample(values, min(count, len(values)))
    return drawn + [rng.choice(values) for _ in range(count - len(drawn))]


def generate_code_problems(
    n: int, seed: int, split: str = "train", world: CodeWorldConfig | None = None
) -> list[Problem]:
    """``n`` problems of ``split``, deterministic in ``seed``; ``meta`` holds the tests, the
    entry point and the spec."""
    world = world or CodeWorldConfig()
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    rng = random.Random(f"code-problems-{seed}-{split}")
    by_family = specs_in(split, world.heldout_share)
    families = [f for f in FAMILIES if by_family[f]]
    if not families:
        raise ValueError(f"the {split} split of the code world holds no problems")
    out: list[Problem] = []
    while len(out) < n:
        # families equally often, the trap variant at trap_rate, then a spec of the split
        # (a spec recurs under other names and tests)
        family = rng.choice(families)
        trap = rng.random() < world.trap_rate
        specs = [s for s in by_family[family] if s.trap == trap] or by_family[family]
        spec = rng.choice(specs)
        name = rng.choice(_NAMES[spec.family])
        tests = [
            f"assert {name}({arg!r}) == {value(spec, arg)!r}"
            for arg in test_inputs(spec, world.tests, rng)
        ]
        reference = program(spec, name)
        out.append(
            Problem(
                id=f"code-{split}-{seed}-{len(out)}",
                question=question_text(spec, name),
                answer=reference,
                meta={
                    "task": TASK,
                    "family": "code",
                    "language": "en",
                    "tests": tests,
                    "entry_point": name,
                    "reference": reference,
                    "spec": f"{spec.family}/{spec.variant}",
                    "trap": spec.trap,
                    "a": spec.a,
                    "b": spec.b,
                },
            )
        )
    return out


# --- traces --------------------------------------------------------------------------------------


def spec_of(p: Problem) -> Spec:
    family, variant = p.meta["spec"].split("/", 1)
    return Spec(family, variant, p.meta["a"], p.meta["b"])


def reading(spec: Spec) -> str:
    """The careful style's reading of the spec: the words that decide the code."""
    a, b = spec.a, spec.b
    if spec.family in ("count", "sum"):
        op, _, incl = _CMP[spec.variant]
        return f"{spec.variant} {a} {incl} {a}: v {op} {a}."
    if spec.family == "range":
        end = "n + 1" if spec.variant == "included" else "n"
        return f"n {spec.variant}: the range ends at {end}."
    if spec.family == "affine":
        if spec.variant == "plus-times":
            return f"the sum comes first: (x + {a}) * {b}."
        return f"the product comes first: x * {a} + {b}."
    if spec.family == "slice":
        where = "end: xs[-{a}:]" if spec.variant == "last" else "start: xs[:{a}]"
        return f"the {spec.variant} {a} are at the {where.format(a=a)}."
    if spec.variant == "floor":
        return f"never below 0: max(v - {a}, 0)."
    return f"each minus {a}: v - {a}."


def _check_line(p: Problem) -> str:
    # the first test, as the careful solver would try it: "check: take([4, 1, 9], 1) == [9]."
    return "check: " + p.meta["tests"][0].removeprefix("assert ") + "."


_HASTY = ("Easy.", "Quick one.", "Simple.", "One line.")


def render(thought: str, code: str, broken: int = 0) -> str:
    answer = f"```python\n{code}```"
    if broken == 1:  # no answer tags
        return f"<think>{thought}</think>\n{answer}"
    if broken == 2:  # no think tags
        return f"{thought}\n<answer>\n{answer}\n</answer>"
    if broken == 3:  # unclosed think
        return f"<think>{thought}\n<answer>\n{answer}\n</answer>"
    return f"<think>{thought}</think>\n<answer>\n{answer}\n</answer>"


@dataclass
class TracedCode:
    problem: Problem
    response: str
    style: str  # "careful" or "hasty"
    correct: bool


def trace_code_problem(p: Problem, cfg: CodeWorldConfig, rng: random.Random) -> TracedCode:
    """Draw one answer for ``p`` in the corpus's mix of styles and flaws."""
    spec, name = spec_of(p), p.meta["entry_point"]
    careful = rng.random() < cfg.careful_rate
    if careful:
        thought, slip = f"{reading(spec)}\n{_check_line(p)}", False
    else:
        thought, slip = rng.choice(_HASTY), rng.random() < cfg.hasty_slip_rate
    broken = rng.randint(1, 3) if rng.random() < cfg.format_error_rate else 0
    return TracedCode(
        p,
        render(thought, program(spec, name, slip), broken),
        "careful" if careful else "hasty",
        not (slip and spec.trap),
    )


def worked_example(p: Problem) -> str:
    """A careful reading as plain text after the request, as a textbook writes it."""
    spec = spec_of(p)
    code = program(spec, p.meta["entry_point"])
    return f"{p.question}\n{reading(spec)}\n{_check_line(p)}\n```python\n{code}```"


def build_code_corpus(cfg: CodeWorldConfig) -> list[dict[str, str]]:
    """Documents for :func:`r1lab.training.sft.train_sft` (``{"prompt","response"}`` or
    ``{"text"}``), all of train specs: nothing held out is ever seen."""
    rng = random.Random(f"code-corpus-{cfg.seed}")
    problems = generate_code_problems(
        cfg.conversations + cfg.worked_examples, cfg.seed, "train", cfg
    )
    docs: list[dict[str, str]] = []
    for i, p in enumerate(problems):
        if i < cfg.conversations:
            docs.append(
                {"prompt": p.question, "response": trace_code_problem(p, cfg, rng).response}
            )
        else:
            docs.append({"text": worked_example(p)})
    rng.shuffle(docs)
    return docs
