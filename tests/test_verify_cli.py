"""``r1lab verify code|math``: one JSON verdict per case, exit 0 only when all passed."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest

from r1lab.errors import UserError
from r1lab.verify_cli import _cli, add_parser, main, split_tests

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"
)


def verify(argv: list[str], capsys) -> tuple[int, list[dict]]:
    parser = argparse.ArgumentParser(prog="r1lab")
    add_parser(parser.add_subparsers(dest="command", required=True))
    code = main(parser.parse_args(["verify", *argv]))
    lines = capsys.readouterr().out.splitlines()
    return code, [json.loads(line) for line in lines]


def test_math_single_and_many(tmp_path, capsys):
    code, [r] = verify(
        ["math", "--pred", "<think>…</think><answer>\\frac{1}{2}</answer>", "--gold", "0.5"], capsys
    )
    assert code == 0
    assert r == {
        "passed": True,
        "status": "passed",
        "reason": "equal by math-verify",
        "pred": "\\frac{1}{2}",
        "gold": "0.5",
    }

    cases = tmp_path / "cases.jsonl"
    cases.write_text(
        '{"pred": "3", "gold": "3"}\n{"pred": "4", "gold": "3"}\n{"pred": "", "gold": "1"}\n'
    )
    code, results = verify(["math", "--input", str(cases)], capsys)
    assert code == 1
    assert [r["status"] for r in results] == ["passed", "failed", "failed"]
    assert results[2]["reason"] == "no answer found in the prediction"


def test_split_tests_separates_asserts_from_setup():
    setup, tests = split_tests(
        "import math\nassert f(1) == 1\nx = 2\nassert (\n    f(x) == 2\n)\n", "t.py"
    )
    assert setup == "import math\nx = 2\n"
    assert tests == ["assert f(1) == 1", "assert (\n    f(x) == 2\n)"]
    with pytest.raises(UserError, match="t.py:1: not valid Python"):
        split_tests("assert (", "t.py")


@needs_bwrap
def test_code_with_asserts_and_with_a_check_function(tmp_path, capsys):
    solution = tmp_path / "add.py"
    solution.write_text("def add(a, b):\n    print('called')\n    return a + b\n")
    tests = tmp_path / "test_add.py"
    tests.write_text("assert add(1, 2) == 3\nassert add(2, 2) == 5\n")
    code, [r] = verify(["code", "--solution", str(solution), "--tests", str(tests)], capsys)
    assert code == 1
    assert (r["passed"], r["status"], r["tests_passed"], r["tests_total"]) == (
        False,
        "failed",
        1,
        2,
    )
    assert r["reason"].startswith("1/2 tests passed; test 1: AssertionError")
    assert r["stdout"] == "called\ncalled\n" and r["time_s"] > 0

    tests.write_text("def check(candidate):\n    assert candidate(2, 3) == 5\n")
    code, [r] = verify(["code", "--solution", str(solution), "--tests", str(tests)], capsys)
    assert code == 0 and r["passed"] and r["tests_total"] == 1


@needs_bwrap
def test_code_input_file_one_line_per_case(tmp_path, capsys):
    cases = tmp_path / "cases.jsonl"
    rows = [
        {"solution": "def f():\n    return 1\n", "tests": ["assert f() == 1"]},
        {
            "completion": "<answer>```python\ndef f():\n    return 2\n```</answer>",
            "tests": "def check(c):\n    assert c() == 1\n",
            "entry_point": "f",
        },
        {"solution": "while True:\n    pass\n", "tests": ["assert True"]},
    ]
    cases.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    code, results = verify(["code", "--input", str(cases), "--timeout", "1", "--cpu", "1"], capsys)
    assert code == 1
    assert [r["status"] for r in results][:2] == ["passed", "failed"]
    assert results[2]["status"] in ("timeout", "killed")


def test_user_errors_and_help(tmp_path, capsys):
    assert _cli(["verify", "code", "--solution", str(tmp_path / "nope.py"), "--tests", "t.py"]) == 2
    assert "nope.py: solution file not found" in capsys.readouterr().err
    assert _cli(["verify", "math", "--pred", "1"]) == 2
    assert "--gold" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _cli(["verify", "code", "--help"])
    out = capsys.readouterr().out
    assert "each top-level assert is one test" in out and "--entry-point NAME" in out


@pytest.mark.parametrize("kind", ["math", "code"])
def test_an_empty_input_file_is_an_error(tmp_path, capsys, kind):
    empty = tmp_path / "cases.jsonl"
    empty.write_text("")
    assert _cli(["verify", kind, "--input", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{empty}: no cases to check" in err


def test_a_non_utf8_solution_and_bad_limits_are_one_line(tmp_path, capsys):
    solution, tests = tmp_path / "s.py", tmp_path / "t.py"
    solution.write_bytes(b"def f():\n    return '\xff\xfe'\n")
    tests.write_text("assert f()\n")
    assert _cli(["verify", "code", "--solution", str(solution), "--tests", str(tests)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "s.py: solution file is not UTF-8 text" in err
    solution.write_text("def f():\n    return 1\n")
    argv = ["verify", "code", "--solution", str(solution), "--tests", str(tests)]
    assert _cli([*argv, "--timeout", "0"]) == 2
    err = capsys.readouterr().err
    assert "--timeout must be > 0, got 0.0" in err and "does not work" not in err
