"""``r1lab verify``: check a program or an answer the way the rewards do, and print the verdict.

For users debugging a reward: ``verify code`` runs a solution against tests in the code
sandbox, ``verify math`` compares a predicted answer with the gold one by math-verify. Each
prints one JSON object (``--input``: one JSON line per case) and exits 0 when everything
passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path
from typing import Any

from r1lab.data.io import read_records
from r1lab.errors import UserError

CODE_HELP = """\
Run a solution against tests in the code sandbox and print the verdict as one JSON object:
passed, status (passed, failed, timeout, error, killed), reason, tests_passed, tests_total,
time_s, stdout and stderr (each truncated to 64 KiB), and the error of each test.

--tests FILE is Python: each top-level assert is one test; every other top-level statement
(imports, helpers, a HumanEval-style check(candidate)) is setup that runs first, where the
tests run. A file with no asserts but a check function is one test, check(ENTRY_POINT).
A .json tests file is a list of test snippets.

--input CASES.jsonl checks many: one JSON object per line with "solution" (a program) or
"completion" (a model response, from which the program is extracted as the reward does),
"tests" (a list of snippets, or source defining check), and optionally "setup",
"entry_point" and "prefix" (code the program continues, as HumanEval's prompt).

Example:
  r1lab verify code --solution add.py --tests test_add.py
"""

MATH_HELP = """\
Compare a predicted answer with the gold answer by math-verify, as the accuracy reward
does, and print one JSON object: passed, status, reason, pred (the answer compared: the
last <answer> block when the prediction has one) and gold.

--input CASES.jsonl checks many: one JSON object per line with "pred" and "gold".

Example:
  r1lab verify math --pred '<answer>\\frac{1}{2}</answer>' --gold 0.5
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``verify`` with its ``code`` and ``math`` subcommands to ``subparsers``."""
    p = subparsers.add_parser(
        "verify",
        help="check a program or an answer as the rewards do and print the verdict",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    sub = p.add_subparsers(dest="verify_kind", metavar="{code,math}")
    sub.required = True
    fmt = argparse.RawDescriptionHelpFormatter

    c = sub.add_parser(
        "code",
        help="run a solution against tests in the sandbox",
        description=CODE_HELP,
        formatter_class=fmt,
    )
    c.add_argument("--solution", metavar="FILE", help="the program (Python source)")
    c.add_argument("--tests", metavar="FILE", help="the tests (Python source, or a .json list)")
    c.add_argument("--setup", metavar="FILE", help="more setup code, run before the tests")
    c.add_argument(
        "--entry-point",
        metavar="NAME",
        help="the function the tests call (default: the solution's last top-level function)",
    )
    c.add_argument("--input", metavar="CASES.jsonl", help="check every case of a JSONL file")
    c.add_argument("--timeout", type=float, default=10.0, metavar="S", help="wall-time limit")
    c.add_argument("--cpu", type=float, default=10.0, metavar="S", help="CPU-time limit")
    c.add_argument("--memory-mb", type=int, default=512, metavar="N", help="memory per process")
    c.add_argument("--workers", type=int, default=2, help="executions at once with --input")
    c.add_argument("--python", metavar="PATH", help="interpreter inside the sandbox")
    c.add_argument(
        "--unsafe",
        action="store_true",
        help="run WITHOUT isolation when bubblewrap is missing (debugging only)",
    )

    m = sub.add_parser(
        "math",
        help="compare an answer with the gold by math-verify",
        description=MATH_HELP,
        formatter_class=fmt,
    )
    m.add_argument("--pred", metavar="TEXT", help="the predicted answer or a whole response")
    m.add_argument("--gold", metavar="TEXT", help="the gold answer")
    m.add_argument("--input", metavar="CASES.jsonl", help="check every case of a JSONL file")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    """Run ``r1lab verify``; 0 when every case passed, 1 otherwise."""
    _undo_dash_dash(args)
    if args.verify_kind == "code":
        for name in ("timeout", "cpu", "memory_mb", "workers"):
            if getattr(args, name) <= 0:
                flag = "--" + name.replace("_", "-")
                raise UserError(f"verify code: {flag} must be > 0, got {getattr(args, name)}")
    results = _math(args) if args.verify_kind == "math" else _code(args)
    if not results:
        raise UserError(f"{args.input}: no cases to check (the file is empty)")
    for r in results:
        print(_json_line(r))
    return 0 if all(r["passed"] for r in results) else 1


def _json_line(result: dict[str, Any]) -> str:
    """``result`` as one JSON line, non-ASCII text as is; escaped where it holds a lone
    surrogate (a JSON ``"\\ud800"`` in a case, a non-UTF-8 argument), which no UTF-8 stream
    can write."""
    line = json.dumps(result, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(result)
    return line


def _undo_dash_dash(args: argparse.Namespace) -> None:
    """argparse (Python 3.11's, at least) reads ``--gold=--`` as ``[]``: it drops a ``--``
    value as if it ended the options. Give such an option its text back, or refuse it where a
    number is expected."""
    for name, value in list(vars(args).items()):
        if value != []:
            continue
        flag = "--" + name.replace("_", "-")
        if name in ("timeout", "cpu", "memory_mb", "workers"):
            raise UserError(f"verify {args.verify_kind}: {flag} expects a number, got '--'")
        setattr(args, name, "--")


# --- math ---------------------------------------------------------------------------------------


def check_math_case(pred: str, gold: str) -> dict[str, Any]:
    from r1lab.rewards.answer import check_math, extract_answer

    answer = extract_answer(pred) if "<answer>" in pred else pred.strip()
    if not answer:
        ok, reason = False, "no answer found in the prediction"
    else:
        ok = check_math(answer, gold)
        reason = "equal by math-verify" if ok else "not equal by math-verify"
    status = "passed" if ok else "failed"
    return {"passed": ok, "status": status, "reason": reason, "pred": answer, "gold": gold}


def _math(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.input:
        if args.pred is not None or args.gold is not None:
            raise UserError("verify math: give either --input or --pred and --gold")
        rows = read_records(args.input, required=("pred", "gold"))
        return [check_math_case(str(r["pred"]), str(r["gold"])) for r in rows]
    if args.pred is None or args.gold is None:
        raise UserError("verify math: give --pred TEXT and --gold TEXT (or --input FILE)")
    return [check_math_case(args.pred, args.gold)]


# --- code ---------------------------------------------------------------------------------------


def split_tests(source: str, where: str) -> tuple[str, list[str]]:
    """(setup, tests) of a Python tests file: top-level asserts are the tests, in order;
    everything else is setup."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise UserError(f"{where}:{e.lineno}: not valid Python ({e.msg})") from None
    lines = source.splitlines()
    setup, tests = [], []
    for node in tree.body:
        text = "\n".join(lines[node.lineno - 1 : node.end_lineno])
        (tests if isinstance(node, ast.Assert) else setup).append(text)
    return "\n".join(setup) + ("\n" if setup else ""), tests


def _last_function(program: str) -> str | None:
    try:
        tree = ast.parse(program)
    except SyntaxError:
        return None
    names = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return names[-1] if names else None


def _read(path: str, what: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{path}: {what} file not found")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: {what} file is not UTF-8 text (byte {e.start})") from None


def _code(args: argparse.Namespace) -> list[dict[str, Any]]:
    from r1lab.rewards.code import build_program, extract_program, tests_from_field
    from r1lab.rewards.sandbox import Limits, Sandbox, SandboxPool

    jobs: list[tuple[str, list[str], str, str | None]] = []
    if args.input:
        if args.solution or args.tests:
            raise UserError("verify code: give either --input or --solution and --tests")
        for i, r in enumerate(read_records(args.input, required=("tests",)), 1):
            where = f"{args.input}: case {i}"
            if "solution" in r:
                code = str(r["solution"])
            elif "completion" in r:
                code = extract_program(str(r["completion"]))
            else:
                raise UserError(f"{where}: needs 'solution' (a program) or 'completion'")
            entry = r.get("entry_point") or None
            program = build_program(code, {"prefix": r.get("prefix"), "entry_point": entry})
            tests = tests_from_field(r["tests"], entry or _last_function(program), where)
            jobs.append((program, tests, r.get("setup") or "", entry))
    else:
        if not args.solution or not args.tests:
            raise UserError("verify code: give --solution FILE and --tests FILE (or --input)")
        program = _read(args.solution, "solution")
        if "<answer>" in program:
            program = extract_program(program)
        source = _read(args.tests, "tests")
        if args.tests.endswith(".json"):
            try:
                tests = tests_from_field(json.loads(source), None, args.tests)
            except json.JSONDecodeError as e:
                raise UserError(f"{args.tests}: malformed JSON ({e.msg})") from None
            setup, entry = "", args.entry_point
        else:
            setup, tests = split_tests(source, args.tests)
            entry = args.entry_point
            if not tests and "def check(" in source:
                entry = entry or _last_function(program)
                if not entry:
                    raise UserError(
                        f"{args.tests}: defines check(); name the function to "
                        "check with --entry-point"
                    )
                tests = [f"check({entry})"]
            if not tests:
                raise UserError(f"{args.tests}: no tests (no top-level assert, no check())")
        if args.setup:
            setup = _read(args.setup, "setup") + "\n" + setup
        jobs.append((program, tests, setup, entry))

    limits = Limits(timeout_s=args.timeout, cpu_s=args.cpu, memory_mb=args.memory_mb)
    sandbox = Sandbox(limits, python=args.python, unsafe=args.unsafe)
    with SandboxPool(sandbox, workers=max(1, args.workers)) as pool:
        futures = [pool.submit(*job) for job in jobs]
        return [f.result().to_dict() for f in futures]


def _cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="r1lab")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return main(args)
    except UserError as e:
        print(f"r1lab: {e}", file=sys.stderr)
        return UserError.exit_code


if __name__ == "__main__":
    sys.exit(_cli())
