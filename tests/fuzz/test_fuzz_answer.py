"""Fuzzed answers: the answer checker, the accuracy reward and ``r1lab verify math``.

Whatever the completion and the gold (random Unicode, LaTeX fragments, ``\\boxed{`` 500 times
over, towers of exponents, 100,000 characters), the checker returns a bool and the reward a
float, in bounded time: a hypothesis deadline on each example, math-verify's own timeout
(SIGALRM, so only on the main thread, where hypothesis runs the tests) and the hard guard of
this folder's conftest. ``r1lab verify math`` exits 0 or 1 with one JSON line per case, or 2
with one line on stderr.
"""

from __future__ import annotations

import io
import json
import re
import threading
from contextlib import redirect_stderr, redirect_stdout
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st

from r1lab.cli import main
from r1lab.rewards import answer
from r1lab.rewards.answer import check_math, extract_answer, numeric_answer
from r1lab.rewards.base import Sample
from r1lab.rewards.rules import accuracy


def fuzz(examples: int, deadline_s: float) -> settings:
    return settings(
        max_examples=examples,
        deadline=timedelta(seconds=deadline_s),
        derandomize=True,  # the same examples on every run: CI stays reproducible
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no explain phase: it is slow
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def _seeds() -> list[str]:
    """Answers from math-verify's own test cases, where the shared data folder (``shared/``
    beside the checkout) has them; a few of our own elsewhere."""
    repo = Path(__file__).resolve().parents[2]
    path = repo.parent / "shared/data/math_verify_tests/math_verify_cases.jsonl"
    if not path.is_file():
        return ["\\frac{1}{2}", "$x^2+1$", "\\boxed{42}", "1,000", "{1, 2}", "(0, 1]"]
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return sorted({r[k] for r in rows for k in ("pred", "gold") if len(r[k]) < 300})


SEEDS = _seeds()
FRAGMENTS = [
    *("\\boxed{", "\\fbox{", "}", "{", "\\frac", "\\frac{1}{2}", "\\dfrac", "$", "$$", "\\$"),
    *("\\(", "\\)", "\\[", "\\]", "<answer>", "</answer>", "<think>", "</think>", "<answer"),
    *("0", "9", "-", "−", "+", "^", "**", "e999999", "1e999", "9^{9^{9}}", "10^{10^{10}}"),
    *("!", "\\sqrt", "x", " ", "\n", "\t", "=", "x =", "or", "dollars", "\\text{", "\\mbox{"),
    *("%", "\\%", "/", ",", ".", "。", "\\", "\\left(", "\\right)", "\\infty", "nan", "∞", "π"),
    *("\\pi", "\\begin{pmatrix}", "\\end{pmatrix}", "&", "\\\\", "(", ")", "[", "]", "|"),
    *("中", "约", "或", "\x00", "\u200b", "\ud7ff", "\U0001f600", "km/h", "\\!", "\\,", "'"),
]
SHORT = st.one_of(
    st.text(max_size=30),
    st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join),
    st.sampled_from(SEEDS),
)


@st.composite
def long_text(draw: st.DrawFn, reps: int) -> str:
    """A fragment (or short text) repeated up to ``reps`` times, between short texts."""
    part = draw(st.one_of(st.sampled_from(FRAGMENTS), SHORT))
    return draw(SHORT) + part * draw(st.integers(1, reps)) + draw(SHORT)


# --- the rewrites read what the regexes they replace read --------------------------------

_OLD_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_OLD_UNIT = re.compile(r"(?:\\text\{[^{}]*\}|\\mbox\{[^{}]*\}|[^\W\d_]+(?:/[^\W\d_]+)?|\s)+")
_OLD_DOLLARS = re.compile(r"^\$+(.*?)\$+$", re.DOTALL)


def old_numeric_answer(text: str) -> bool:
    """numeric_answer as it was, with the exponential unit regex and the cubic ``$`` one."""
    text = text.replace("\\$", "").replace("\\!", "").replace("\\,", ",")
    changed = True
    while changed:
        changed = False
        text = text.strip().rstrip("。.").strip()
        for pattern in (_OLD_DOLLARS, *(p for p, _ in answer._WRAPPERS)):
            m = pattern.match(text)
            if m:
                text, changed = m.group(1), True
        m = answer._ASSIGN.match(text)
        if m:
            text, changed = text[m.end() :], True
    m = answer._NUMBER.match(text)
    if m is None:
        return False
    rest = text[m.end() :]
    if rest and not _OLD_UNIT.fullmatch(rest):
        return False
    words = {w.lower() for w in re.findall(r"[A-Za-z]+", rest)}
    return not (words & answer._HEDGES) and not any(h in rest for h in answer._HEDGES_ZH)


TAGS = st.lists(
    st.sampled_from(["<answer>", "</answer>", "a", " 1 ", "<", ">", "/", "answer", "\n"]),
    max_size=12,
).map("".join)


@fuzz(300, 1)
@given(text=TAGS)
def test_extract_answer_reads_what_the_regex_read(text: str) -> None:
    found = _OLD_ANSWER.findall(text)
    assert extract_answer(text) == (found[-1].strip() if found else None)


# short enough for the old regexes; no "/" (a unit such as "m/sm/s", two units run together,
# was one to the old regex; the new one reads a word or word/word only)
NUMBERISH = st.lists(
    st.sampled_from(["1", "2.5", "3/4", "-", "$", "$$", " ", "x = ", "cm", "dollars", "or"]),
    max_size=6,
).map("".join)


@fuzz(300, 1)
@given(text=st.one_of(NUMBERISH, st.text(alphabet="1$ .x=a\\boxed{}", max_size=14)))
@example(text="$$5$$")
@example(text="$5$ dollars")
def test_numeric_answer_reads_what_the_regexes_read(text: str) -> None:
    # the old unit regex takes 2**n steps on a run of n letters that fails to match
    assume(max(map(len, re.findall(r"[^\W\d_]+", text)), default=0) <= 12)
    assert numeric_answer(text) == old_numeric_answer(text)


def test_units_with_a_slash_still_read() -> None:
    assert numeric_answer("60 km/h") and numeric_answer("5 m/s")
    assert not numeric_answer("60 km/h or 50")


# --- bounded time on anything ------------------------------------------------------------


@fuzz(150, 2)
@given(text=st.one_of(SHORT, long_text(30_000)))
@example(text="1 " + "a" * 40 + "!")  # was exponential: 2**40 ways to split the word
@example(text="$" * 20_000 + "x")  # was cubic in the run of "$"
@example(text="<answer>" * 20_000)  # was quadratic: a scan from every unclosed tag
@example(text="\\boxed{" * 500)
@example(text="x = " * 20_000 + "1")
def test_answer_parsing_is_quick_on_anything(text: str) -> None:
    assert isinstance(numeric_answer(text), bool)
    found = extract_answer(text)
    assert found is None or isinstance(found, str)


@fuzz(200, 15)  # math-verify's timeout is 1 s a call here, and check_math makes up to four
@given(pred=st.one_of(SHORT, long_text(300)), gold=st.one_of(SHORT, long_text(30)))
@example(pred="\\boxed{" * 500, gold="x")
@example(pred="9^{9^{9}}", gold="\\sqrt{2}")  # sympy stops at the timeout
@example(pred="9**9**9", gold="x")
@example(pred="1e999999", gold="\\sqrt{2}")
@example(pred="\\frac{1}{2}", gold="0.5")
def test_check_math_returns_a_bool_in_bounded_time(pred: str, gold: str) -> None:
    assert isinstance(check_math(pred, gold, timeout_seconds=1), bool)


COMPLETION = st.one_of(
    SHORT,
    long_text(200),
    st.tuples(SHORT, SHORT).map(lambda t: f"<think>{t[0]}</think><answer>{t[1]}</answer>"),
    st.tuples(SHORT, long_text(200)).map(lambda t: f"<think>{t[0]}</think><answer>{t[1]}"),
    SHORT.map(lambda t: f"<answer>{t}</answer>"),
)
GOLD = st.one_of(st.none(), SHORT, st.integers(), st.floats())


@fuzz(60, 30)  # the reward's own timeout: 5 s a call
@given(samples=st.lists(st.tuples(COMPLETION, GOLD), min_size=1, max_size=3))
@example(samples=[("<answer>" + "\\boxed{" * 500 + "</answer>", "1")])
@example(samples=[("<answer>1 " + "a" * 40 + "!</answer>", "1")])
def test_accuracy_scores_every_sample_zero_or_one(samples: list[tuple[str, object]]) -> None:
    batch = [Sample("q", c, {} if g is None else {"answer": g}) for c, g in samples]
    scores = accuracy(batch)
    assert len(scores) == len(batch) and all(s in (0.0, 1.0) for s in scores)


@fuzz(15, 60)
@given(samples=st.lists(st.tuples(SHORT, SHORT), min_size=1, max_size=3))
@example(samples=[("<answer>\\frac{1}{2}</answer>", "0.5")])
def test_accuracy_off_the_main_thread_scores_without_raising(
    samples: list[tuple[str, str]],
) -> None:
    """Off the main thread math-verify cannot set its alarm: the reward runs without one
    (the reward pool bounds it from outside) and still returns a score for every sample."""
    batch = [Sample("q", c, {"answer": g}) for c, g in samples]
    out: list = []
    worker = threading.Thread(target=lambda: out.append(accuracy(batch)), daemon=True)
    worker.start()
    worker.join(timeout=50)
    assert not worker.is_alive(), "accuracy did not return off the main thread"
    assert len(out) == 1 and all(s in (0.0, 1.0) for s in out[0])
    if samples == [("<answer>\\frac{1}{2}</answer>", "0.5")]:
        assert out[0] == [1.0]


# --- r1lab verify math -------------------------------------------------------------------


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` in-process, with its stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def check_verdicts(code: int, out: str, err: str, cases: int | None = None) -> None:
    if code == 2:
        assert out == ""
        assert err.startswith("r1lab: error: ") and err.endswith("\n"), err
        assert len(err.splitlines()) == 1, err
        return
    assert code in (0, 1) and err == "", (code, err)
    out.encode("utf-8")  # a real stdout is strict UTF-8: no lone surrogates
    assert out.endswith("\n")
    lines = out[:-1].split("\n")  # JSON lines end at \n only (a verdict may hold \x85 or \u2028)
    assert cases is None or len(lines) == cases
    verdicts = [json.loads(line) for line in lines]
    assert verdicts and all(isinstance(v["passed"], bool) for v in verdicts)
    assert code == (0 if all(v["passed"] for v in verdicts) else 1)


FLAG_TEXT = st.one_of(SHORT, st.sampled_from(["-1", "--pred", "-", "--", "", "--gold=1"]))


@fuzz(40, 30)
@given(pred=FLAG_TEXT, gold=FLAG_TEXT, joined=st.booleans())
@example(pred="\udcff", gold="1", joined=True)  # a non-UTF-8 argument, as Python reads it
@example(pred="-x", gold="1", joined=False)  # argparse takes it for an option
@example(pred="0", gold="--", joined=True)  # argparse read "--gold=--" as [], and check_math raised
def test_verify_math_prints_one_verdict_or_one_error(pred: str, gold: str, joined: bool) -> None:
    args = [f"--pred={pred}", f"--gold={gold}"] if joined else ["--pred", pred, "--gold", gold]
    check_verdicts(*run_cli(["verify", "math", *args]), cases=1)


@pytest.fixture(scope="module")
def cases_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-verify") / "cases.jsonl"


CASE_VALUE = st.one_of(SHORT, st.none(), st.integers(), st.floats(), st.lists(st.integers()))
CASE_LINE = st.one_of(
    st.fixed_dictionaries({"pred": CASE_VALUE, "gold": CASE_VALUE}).map(json.dumps),
    st.fixed_dictionaries({"pred": CASE_VALUE}).map(json.dumps),
    st.sampled_from(["", "[]", "{", '{"pred": "\\ud800", "gold": "1"}', "null", "\udcff"]),
)


@fuzz(30, 60)
@given(lines=st.lists(CASE_LINE, max_size=3))
@example(lines=['{"pred": "\\ud800", "gold": "1"}'])  # printing its verdict raised
def test_verify_math_input_file_prints_verdicts_or_one_error(
    lines: list[str], cases_path: Path
) -> None:
    cases_path.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape"))
    check_verdicts(*run_cli(["verify", "math", "--input", str(cases_path)]))
