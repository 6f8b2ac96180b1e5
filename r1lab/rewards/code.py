"""The ``code`` reward: run the program a completion gives against the task's tests.

Code tasks are :class:`~r1lab.data.problem.Problem` objects whose ``meta`` holds what the
sandbox needs: ``tests`` (Python source, one test each), ``setup`` (the task's own code,
run before the tests where they run), ``entry_point`` (the function the tests call) and
``prefix`` (code the program continues, HumanEval's prompt). :func:`load_code_tasks` reads
HumanEval, MBPP and any JSONL/Parquet file with a prompt and a tests field into that form.

Programs run in :mod:`r1lab.rewards.sandbox`; the reward is 1.0 when every test passes
(``code``) or the share of tests that pass (``code_partial``), and 0.0 for samples of other
tasks in a mixed batch.
"""

from __future__ import annotations

import ast
import re
import textwrap
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1lab.config import option
from r1lab.data.io import read_records
from r1lab.data.problem import Problem
from r1lab.errors import UserError
from r1lab.rewards.answer import answer_block
from r1lab.rewards.base import Sample, reward
from r1lab.rewards.sandbox import Limits, Sandbox, SandboxPool, Verdict

HUMANEVAL_INSTRUCTION = (
    "Complete the following Python function. Give the whole function, with any imports it "
    "needs, in a ```python block."
)


@dataclass
class CodeRewardConfig:
    """How the ``code`` reward runs programs."""

    timeout_s: float = option(10.0, "wall-clock limit of one execution (start, load, all tests)")
    cpu_s: float = option(10.0, "CPU seconds per sandboxed process; past it the program is killed")
    memory_mb: int = option(512, "address-space limit per sandboxed process, in MiB")
    max_procs: int = option(8, "processes plus threads a sandbox may hold")
    scratch_mb: int = option(64, "size of the sandbox's writable /tmp, in MiB")
    workers: int = option(2, "executions run at once by each process that computes the reward")
    python: str = option(
        "",
        "interpreter inside the sandbox; empty: this one's, or /usr/bin/python3 under root when "
        "this one is not readable by the unprivileged sandbox user",
    )
    unsafe: bool = option(
        False,
        "run programs WITHOUT isolation when bubblewrap is missing; debugging only: the code "
        "can read your files and reach the network",
    )

    def limits(self) -> Limits:
        return Limits(
            timeout_s=self.timeout_s,
            cpu_s=self.cpu_s,
            memory_mb=self.memory_mb,
            max_procs=self.max_procs,
            scratch_mb=self.scratch_mb,
        )

    def sandbox(self) -> Sandbox:
        return Sandbox(self.limits(), python=self.python or None, unsafe=self.unsafe)


_config = CodeRewardConfig()
_pool: SandboxPool | None = None
_pool_lock = threading.Lock()


def configure(cfg: CodeRewardConfig) -> None:
    """Use ``cfg`` for the ``code`` rewards of this process from now on."""
    global _config, _pool
    with _pool_lock:
        _config = cfg
        if _pool is not None:
            _pool.close()
            _pool = None


def default_pool() -> SandboxPool:
    """The process's shared pool, created on first use from the configuration."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = SandboxPool(_config.sandbox(), workers=_config.workers)
        return _pool


# --- programs from completions ----------------------------------------------------------------

_THINK = re.compile(r"<think>.*?(</think>|\Z)", re.DOTALL)
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def extract_program(completion: str) -> str:
    """The code in a completion.

    The text is the last ``<answer>…</answer>`` block, or without one the completion minus
    its ``<think>`` block. The code is that text's last fenced block (the last one tagged
    ``python`` or ``py`` when there is one), or else the whole text.
    """
    found = answer_block(completion)
    text = found if found is not None else _THINK.sub("", completion)
    blocks = _FENCE.findall(text)
    if blocks:
        tagged = [code for lang, code in blocks if lang.lower() in ("python", "py", "python3")]
        return (tagged or [code for _, code in blocks])[-1]
    return text.strip("\n")


def build_program(code: str, meta: Mapping[str, Any]) -> str:
    """The program to run: ``code`` as is, or continuing the task's ``prefix``.

    With a prefix (HumanEval's prompt: imports, helpers, the signature and docstring), code
    that defines the entry point itself follows the prefix whole, so the prefix's imports
    and helpers are there and the program's definition replaces the stub; code that does
    not is taken as the body of the prefix's last function.
    """
    prefix = meta.get("prefix") or ""
    if not prefix:
        return code
    entry = meta.get("entry_point")
    if entry and re.search(rf"^(async\s+)?def\s+{re.escape(entry)}\s*\(", code, re.MULTILINE):
        return prefix.rstrip("\n") + "\n\n\n" + code
    return prefix + _as_body(code)


def _as_body(code: str) -> str:
    lines = code.strip("\n").splitlines()
    if not lines:
        return "    pass\n"
    if lines[0][:1] in (" ", "\t"):
        return "\n".join(lines) + "\n"
    # The first line lost its indentation (answers are often stripped): indent it like the rest.
    rest = [ln for ln in lines[1:] if ln.strip()]
    if rest and all(ln[:1] in (" ", "\t") for ln in rest):
        indent = min(len(ln) - len(ln.lstrip()) for ln in rest)
        return " " * indent + "\n".join(lines) + "\n"
    return textwrap.indent(textwrap.dedent("\n".join(lines)), "    ") + "\n"


# --- the reward -------------------------------------------------------------------------------


def run_sample(sample: Sample, pool: SandboxPool | None = None) -> Verdict | None:
    """The verdict for one sample, or None for a sample without tests (another task)."""
    futures = _submit([sample], pool or default_pool())
    return futures[0].result() if futures[0] is not None else None


def submit_completion(pool: SandboxPool, completion: str, meta: Mapping[str, Any]) -> Any:
    """Start running the program of ``completion`` against ``meta["tests"]``: a future of its
    :class:`~r1lab.rewards.sandbox.Verdict`, or None for a problem without tests."""
    tests = meta.get("tests")
    if not tests:
        return None
    program = build_program(extract_program(completion), meta)
    return pool.submit(program, tests, meta.get("setup") or "", meta.get("entry_point"))


def _submit(samples: Sequence[Sample], pool: SandboxPool) -> list[Any]:
    return [submit_completion(pool, s.completion, s.meta) for s in samples]


def _scores(samples: list[Sample], partial: bool) -> list[float]:
    futures = _submit(samples, default_pool())
    out = []
    for fut in futures:
        if fut is None:
            out.append(0.0)
            continue
        v: Verdict = fut.result()
        out.append(v.share if partial else float(v.passed))
    return out


@reward("code")
def code(samples: list[Sample]) -> list[float]:
    """1.0 when the completion's program passes every test in ``meta["tests"]``, else 0.0.

    The program is :func:`extract_program` of the completion, continued from
    ``meta["prefix"]`` when the task has one (:func:`build_program`). 0.0 for samples
    without tests. Raises :class:`~r1lab.rewards.sandbox.SandboxUnavailable` when the
    sandbox cannot run here (bubblewrap missing), so that the failure is reported, not
    scored as wrong answers.
    """
    return _scores(samples, partial=False)


@reward("code_partial")
def code_partial(samples: list[Sample]) -> list[float]:
    """Like ``code``, but the share of the tests that pass (a test after a timeout fails)."""
    return _scores(samples, partial=True)


# --- tasks ------------------------------------------------------------------------------------


CODE_FORMATS = ("humaneval", "mbpp", "custom")


def load_code_tasks(
    path: str | Path,
    fields: Mapping[str, str] | None = None,
    challenge_tests: bool = False,
    kind: str | None = None,
    shown_tests: int = 1,
) -> list[Problem]:
    """Code problems from HumanEval, MBPP or a JSONL/Parquet file of your own.

    ``kind`` (:data:`CODE_FORMATS`) says which; None recognises it by the first record's
    fields: HumanEval (``task_id``, ``prompt``, ``entry_point``, ``canonical_solution``,
    ``test``), MBPP (``text``, ``code``, ``test_list``; ``challenge_tests`` adds
    ``challenge_test_list``), or any file with ``prompt`` and ``tests`` (after renaming by
    ``fields``, ours -> theirs): ``tests`` is a list of test snippets (``assert f(1) == 2``)
    or one source string defining ``check(candidate)``, which needs ``entry_point``. Optional
    there: ``id``, ``setup``, ``entry_point``, ``prefix``, ``solution`` (a reference program)
    and ``language``. A record without tests, or with an empty list, is an error naming the
    file and line.

    MBPP's prompt shows ``shown_tests`` of its tests (the first; it fixes the function's name
    and call) while the reward runs all of them, so writing out the shown asserts does not pass.
    """
    from r1lab.data.tasks import line_numbers

    records = read_records(path, fields)
    if not records:
        raise UserError(f"{path}: no records")
    keys = set(records[0])
    if kind is None:
        if {"prompt", "entry_point", "test", "canonical_solution"} <= keys:
            kind = "humaneval"
        elif {"text", "test_list"} <= keys:
            kind = "mbpp"
        elif {"prompt", "tests"} <= keys:
            kind = "custom"
        else:
            raise UserError(
                f"{path}: not a code task file: expected HumanEval fields (prompt, entry_point, "
                f"test), MBPP fields (text, test_list) or 'prompt' and 'tests' (found: "
                f"{', '.join(sorted(keys))})"
            )
    lines = line_numbers(Path(path), len(records))
    if kind == "humaneval":
        rows = read_records(path, fields, ("prompt", "entry_point", "test"))
        return [_humaneval(r, f"{path}:{n}") for r, n in zip(rows, lines, strict=True)]
    if kind == "mbpp":
        rows = read_records(path, fields, ("text", "test_list"))
        return [
            _mbpp(r, challenge_tests, shown_tests, f"{path}:{n}")
            for r, n in zip(rows, lines, strict=True)
        ]
    rows = read_records(path, fields, ("prompt", "tests"))
    return [_custom(r, f"{path}:{n}", i) for i, (r, n) in enumerate(zip(rows, lines, strict=True))]


def _humaneval(r: dict[str, Any], where: str) -> Problem:
    prompt, entry = r["prompt"], r["entry_point"]
    if not isinstance(r["test"], str) or "def check(" not in r["test"]:
        raise UserError(f"{where}: field 'test' must be source defining check(candidate)")
    question = f"{HUMANEVAL_INSTRUCTION}\n\n```python\n{prompt}```"
    reference = prompt + r.get("canonical_solution", "")
    meta = {
        "task": "humaneval",
        "family": "code",
        "language": "en",
        "tests": [f"{r['test']}\n\ncheck({entry})\n"],
        "setup": prompt,
        "prefix": prompt,
        "entry_point": entry,
        "reference": reference,
    }
    return Problem(str(r.get("task_id", entry)), question, reference, meta)


_CALL = re.compile(r"assert\s+(?:not\s+)?\(?\s*(?:[\w.]+\()*?([A-Za-z_]\w*)\s*\(")


def _mbpp(r: dict[str, Any], challenge: bool, shown: int, where: str) -> Problem:
    listed = tests_from_field(r["test_list"], None, where, "test_list")
    tests = listed + (list(r.get("challenge_test_list") or []) if challenge else [])
    tests = [t.replace("\r\n", "\n") for t in tests]
    reference = (r.get("code") or "").replace("\r\n", "\n")
    question = r["text"]
    if shown:
        label = "this test" if shown == 1 else "these tests"
        question += f"\nYour code should pass {label}, among others:\n\n" + "\n".join(tests[:shown])
    meta = {
        "task": "mbpp",
        "family": "code",
        "language": "en",
        "tests": tests,
        "setup": (r.get("test_setup_code") or "").replace("\r\n", "\n"),
        "entry_point": _function_name(reference, tests),
        "reference": reference,
    }
    return Problem(f"mbpp/{r.get('task_id')}", question, reference, meta)


def _function_name(reference: str, tests: list[str]) -> str | None:
    """The function the tests call: the reference's top-level function that they name."""
    try:
        with warnings.catch_warnings():  # MBPP's code has strings such as "\d"
            warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
            tree = ast.parse(reference)
        defined = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    except SyntaxError:
        defined = []
    joined = "\n".join(tests)
    for name in reversed(defined):
        if re.search(rf"\b{re.escape(name)}\s*\(", joined):
            return name
    m = _CALL.search(joined)
    return m.group(1) if m else None


def tests_from_field(
    tests: Any, entry_point: str | None, where: str, field: str = "tests"
) -> list[str]:
    """A task's ``tests`` field as a list of tests: a list of snippets is kept; a string
    defining ``check(candidate)`` becomes one test that calls it on ``entry_point``; any
    other non-blank string is one test. ``where`` (``file:line``) and ``field`` go into the
    error message."""
    if isinstance(tests, str):
        if not tests.strip():
            raise UserError(f"{where}: field '{field}' is empty: a code problem needs tests")
        if "def check(" not in tests:
            return [tests]
        if not entry_point:
            raise UserError(
                f"{where}: the tests define check(candidate), so an entry point must name "
                "the function to check"
            )
        return [f"{tests}\n\ncheck({entry_point})\n"]
    if isinstance(tests, list) and not tests:
        raise UserError(f"{where}: field '{field}' is an empty list: a code problem needs tests")
    if not isinstance(tests, list) or not all(isinstance(t, str) and t.strip() for t in tests):
        raise UserError(f"{where}: field '{field}' must be a list of test snippets or a string")
    return tests


def _custom(r: dict[str, Any], where: str, index: int) -> Problem:
    entry = r.get("entry_point")
    reference = r.get("solution") or r.get("reference") or ""
    meta = {
        "task": r.get("task", "code"),
        "family": "code",
        "language": r.get("language", "en"),
        "tests": tests_from_field(r["tests"], entry, where),
        "setup": r.get("setup") or "",
        "prefix": r.get("prefix") or "",
        "entry_point": entry,
        "reference": reference,
    }
    return Problem(str(r.get("id", index)), r["prompt"], reference, meta)
