"""The code reward: programs from completions, HumanEval/MBPP/custom tasks, scores."""

from __future__ import annotations

import ast
import json
import shutil
import warnings

import pytest

from r1lab.data.tasks import data_dir
from r1lab.errors import UserError
from r1lab.rewards.base import Sample, get_reward
from r1lab.rewards.code import (
    CodeRewardConfig,
    build_program,
    configure,
    default_pool,
    extract_program,
    load_code_tasks,
    run_sample,
)

DATA = data_dir()  # the copies shipped in the package
HUMANEVAL = DATA / "humaneval" / "HumanEval.jsonl"
MBPP = DATA / "mbpp" / "mbpp.jsonl"

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"
)


@pytest.fixture(scope="module", autouse=True)
def quick_limits():
    configure(CodeRewardConfig(timeout_s=10, cpu_s=5, workers=2))
    yield
    configure(CodeRewardConfig())


def answer(code: str) -> str:
    return f"<think>easy</think>\n<answer>\n```python\n{code}```\n</answer>"


def wrong_body(program: str, entry: str) -> str:
    """``program`` with the body of ``entry`` replaced by ``return None``."""
    with warnings.catch_warnings():  # MBPP's code has strings such as "\d" (invalid escapes)
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ast.parse(program)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == entry:
            node.body = [ast.Return(ast.Constant(None))]
    return ast.unparse(tree)


# --- programs from completions -------------------------------------------------------------


def test_extract_program_prefers_the_answer_and_its_python_block():
    c = "<think>```python\nx = 0\n```</think><answer>Here:\n```python\ny = 1\n```\n</answer>"
    assert extract_program(c) == "y = 1\n"
    two = "<answer>```text\nout\n```\n```python\na = 1\n```\n```python\nb = 2\n```</answer>"
    assert extract_program(two) == "b = 2\n"
    assert extract_program("<answer>```\nc = 3\n```</answer>") == "c = 3\n"
    assert extract_program("<answer>\ndef f():\n    return 1\n</answer>") == (
        "def f():\n    return 1"
    )
    # no answer block: the completion without its chain of thought
    assert extract_program("<think>z = 9</think>\nw = 4") == "w = 4"
    assert extract_program("<think>unfinished") == ""


def test_build_program_continues_a_prefix_or_replaces_its_stub():
    meta = {"prefix": "import math\n\ndef f(x):\n    '''doc'''\n", "entry_point": "f"}
    whole = "def f(x):\n    return math.sqrt(x)\n"
    assert build_program(whole, meta) == meta["prefix"].rstrip("\n") + "\n\n\n" + whole
    assert build_program("    return x\n", meta) == meta["prefix"] + "    return x\n"
    # a stripped answer lost the first line's indentation
    body = "y = x + 1\n    return y"
    assert build_program(body, meta).endswith("    y = x + 1\n    return y\n")
    assert build_program("return x", meta).endswith("    return x\n")
    assert build_program("z = 1", {"entry_point": "f"}) == "z = 1"


# --- tasks ---------------------------------------------------------------------------------


def test_load_humaneval_and_mbpp():
    he = load_code_tasks(HUMANEVAL)
    assert len(he) == 164 and he[0].id == "HumanEval/0"
    m = he[0].meta
    assert m["entry_point"] == "has_close_elements" and m["prefix"] == m["setup"]
    assert m["tests"][0].rstrip().endswith("check(has_close_elements)")
    assert he[0].question.startswith("Complete the following Python function")

    mbpp = load_code_tasks(MBPP)
    assert len(mbpp) == 974 and all(p.meta["entry_point"] for p in mbpp)
    first = mbpp[0]
    assert first.id == "mbpp/1" and first.meta["entry_point"] == "min_cost"
    assert "\r" not in first.answer and len(first.meta["tests"]) == 3
    assert "assert min_cost(" in first.question
    assert len(load_code_tasks(MBPP, challenge_tests=True)[10].meta["tests"]) == 5


def test_load_custom_jsonl_and_reject_unknown_files(tmp_path):
    path = tmp_path / "tasks.jsonl"
    rows = [
        {"prompt": "Write inc.", "tests": ["assert inc(1) == 2"], "solution": "def inc(x): ..."},
        {
            "prompt": "Write dec.",
            "tests": "def check(c):\n    assert c(2) == 1\n",
            "entry_point": "dec",
        },
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    tasks = load_code_tasks(path)
    assert tasks[0].meta["tests"] == ["assert inc(1) == 2"] and tasks[0].answer.startswith("def")
    assert tasks[1].meta["tests"][0].endswith("check(dec)\n")

    path.write_text(json.dumps({"prompt": "p", "tests": "def check(c):\n    pass\n"}) + "\n")
    with pytest.raises(UserError, match=r"tasks\.jsonl:1: .*entry point"):
        load_code_tasks(path)
    path.write_text(json.dumps({"question": "q", "answer": "1"}) + "\n")
    with pytest.raises(UserError, match="not a code task file"):
        load_code_tasks(path)


# --- the reward ----------------------------------------------------------------------------


@needs_bwrap
def test_reward_on_humaneval_and_mbpp_samples():
    he = load_code_tasks(HUMANEVAL)[:4]
    mbpp = load_code_tasks(MBPP)[10:14]
    samples = []
    for p in he:  # the whole program in the answer, and a wrong one
        samples.append(Sample(p.question, answer(p.answer), p.meta))
        wrong = wrong_body(p.answer, p.meta["entry_point"])
        samples.append(Sample(p.question, answer(wrong), p.meta))
    body = he[0].answer[len(he[0].meta["prefix"]) :]  # only the body, completing the prompt
    samples.append(Sample(he[0].question, answer(body), he[0].meta))
    for p in mbpp:
        samples.append(Sample(p.question, answer(p.answer), p.meta))
        samples.append(
            Sample(p.question, answer(wrong_body(p.answer, p.meta["entry_point"])), p.meta)
        )
    samples.append(Sample("What is 2+2?", "<answer>4</answer>", {"answer": "4"}))  # no tests
    expected = [1.0, 0.0] * 4 + [1.0] + [1.0, 0.0] * 4 + [0.0]
    assert get_reward("code")(samples) == expected


@needs_bwrap
def test_partial_reward_is_the_share_of_tests_passed():
    meta = {"tests": ["assert f(1) == 1", "assert f(2) == 2", "assert f(3) == 4"]}
    samples = [Sample("q", answer("def f(x):\n    return x\n"), meta)]
    assert get_reward("code_partial")(samples) == pytest.approx([2 / 3])
    assert get_reward("code")(samples) == [0.0]
    v = run_sample(samples[0])
    assert v is not None and v.status == "failed" and "test 2" in v.reason
    assert run_sample(Sample("q", "c", {})) is None


@needs_bwrap
@pytest.mark.slow
def test_all_canonical_solutions_pass_and_wrong_ones_do_not():
    pool = default_pool()
    for path, need in ((HUMANEVAL, 1.0), (MBPP, 0.99)):
        tasks = load_code_tasks(path)
        right = [_submit(pool, p, p.meta["reference"]) for p in tasks]
        wrong = [
            _submit(pool, p, wrong_body(p.meta["reference"], p.meta["entry_point"])) for p in tasks
        ]
        passed = [p.id for p, f in zip(tasks, right, strict=True) if f.result().passed]
        assert len(passed) >= need * len(tasks), sorted(set(p.id for p in tasks) - set(passed))
        assert [p.id for p, f in zip(tasks, wrong, strict=True) if f.result().passed] == []


def _submit(pool, problem, program):
    m = problem.meta
    return pool.submit(program, m["tests"], m["setup"], m["entry_point"])
