"""Code tasks through TaskConfig: HumanEval and MBPP from the package, jsonl with tests, and the
errors a file without tests gets at load time."""

from __future__ import annotations

import json
import os

import pytest

from r1lab.cli import main
from r1lab.data.tasks import TaskConfig, data_dir, find_data_file, load_task, prompt_template_for
from r1lab.errors import UserError


def test_benchmarks_ship_inside_the_package():
    root = data_dir()
    assert "site-packages" in str(root) or root.parts[-3:] == ("r1lab", "data", "benchmarks")
    for name in ("gsm8k", "math500", "humaneval", "mbpp"):
        assert (root / name / "LICENSE").is_file() and (root / name / "SOURCE.md").is_file()


def test_humaneval_and_mbpp_load_with_their_tests():
    he = load_task(TaskConfig(name="humaneval"))
    assert len(he) == 164 and he[0].meta["tests"][0].rstrip().endswith("check(has_close_elements)")
    test = load_task(TaskConfig(name="mbpp"))
    train = load_task(TaskConfig(name="mbpp", split="train"))
    assert (len(test), test[0].id, len(train), train[0].id) == (500, "mbpp/11", 374, "mbpp/601")
    p = test[0]
    shown = [t for t in p.meta["tests"] if t in p.question]
    assert len(p.meta["tests"]) == 3 and shown == p.meta["tests"][:1]  # one shown, all run
    template = prompt_template_for(TaskConfig(name="mbpp"), p)
    assert "```python block" in template  # the code instruction, not the math one


def test_test_sets_are_not_for_training_and_data_paths_resolve(tmp_path):
    with pytest.raises(UserError, match="ships only its test set"):
        load_task(TaskConfig(name="humaneval", split="train"))
    gsm = load_task(TaskConfig(name="gsm8k", split="train", limit=3))
    assert all(p.id.startswith("gsm8k-train-") for p in gsm)
    here = os.getcwd()
    os.chdir(tmp_path)  # a folder with nothing in it, as a user's
    try:
        assert find_data_file("gsm8k/train.jsonl") == data_dir() / "gsm8k" / "train.jsonl"
        assert find_data_file("mine.jsonl").name == "mine.jsonl"
    finally:
        os.chdir(here)


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_with_tests_is_a_code_task(tmp_path):
    path = _write(
        tmp_path / "code.jsonl",
        [{"question": "Write inc(x).", "tests": ["assert inc(1) == 2"], "solution": "def inc(x): return x + 1"}],
    )  # fmt: skip
    (p,) = load_task(TaskConfig(name="jsonl", path=str(path)))
    assert p.meta["tests"] == ["assert inc(1) == 2"] and p.meta["task"] == "jsonl"
    renamed = _write(tmp_path / "r.jsonl", [{"question": "q", "checks": ["assert f()"]}])
    (q,) = load_task(TaskConfig(name="jsonl", path=str(renamed), tests_field="checks"))
    assert q.meta["tests"] == ["assert f()"]


@pytest.mark.parametrize(
    "second, expected",
    [
        ({"question": "q2"}, r"code\.jsonl:3: missing field 'tests'"),
        ({"question": "q2", "tests": []}, r"code\.jsonl:3: field 'tests' is an empty list"),
        ({"question": "q2", "tests": "  "}, r"code\.jsonl:3: field 'tests' is empty"),
    ],
)
def test_a_code_problem_without_tests_fails_at_load(tmp_path, second, expected):
    path = tmp_path / "code.jsonl"
    path.write_text(
        json.dumps({"question": "q1", "tests": ["assert True"]})
        + "\n\n"
        + json.dumps(second)
        + "\n"
    )
    with pytest.raises(UserError, match=expected):
        load_task(TaskConfig(name="jsonl", path=str(path)))


def test_grpo_on_mbpp_without_tests_exits_2_naming_file_and_line(tmp_path, capsys):
    rows = [{"task_id": 1, "text": "Write f.", "code": "def f(): pass", "test_list": ["assert f() is None"]},
            {"task_id": 2, "text": "Write g.", "code": "def g(): pass"}]  # fmt: skip
    path = _write(tmp_path / "mbpp.jsonl", rows)
    code = main(["grpo", "task.name=mbpp", f"task.path={path}", f"run.output_dir={tmp_path}/runs"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert f"{path}:2: missing field 'test_list'" in err
    assert not (tmp_path / "runs").exists()


def test_a_code_reward_on_a_task_without_tests_is_refused(tmp_path, capsys):
    args = ["grpo", "rewards.weights={code: 1.0}", f"run.output_dir={tmp_path}/runs"]
    assert main(args) == 2
    assert "no problem of this task has tests" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
