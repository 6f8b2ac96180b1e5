"""``r1lab eval`` on code tasks: programs run in the sandbox, verdicts counted, references pass
and a shuffled pairing does not."""

from __future__ import annotations

import json
import shutil

import pytest

from r1lab.cli import main
from r1lab.data.problem import Problem
from r1lab.data.tasks import TaskConfig, load_task
from r1lab.eval.evaluate import reference_response
from r1lab.eval.metrics import score_predictions
from r1lab.rewards.base import Sample, get_reward
from r1lab.rewards.code import CodeRewardConfig, configure

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is missing")


@pytest.fixture
def quick_timeouts():
    # the timeout case below takes the limit's time; everything else keeps the defaults
    configure(CodeRewardConfig(timeout_s=2, cpu_s=2))
    yield
    configure(CodeRewardConfig())


def _response(code: str) -> str:
    return f"<think>t</think>\n<answer>\n```python\n{code}\n```\n</answer>"


def test_verdicts_are_counted_and_decide_pass_at_k(quick_timeouts):
    p = Problem(
        "f", "Write f.", "def f(x): return x", {"tests": ["assert f(1) == 1", "assert f(2) == 2"]}
    )
    texts = [
        _response("def f(x):\n    return x"),  # passed
        _response("def f(x):\n    return 1"),  # failed
        _response("def f(x):\n    while True: pass"),  # timeout
        _response("def f(x) return x"),  # crashed: does not load
    ]
    result = score_predictions([p], [texts], greedy=[texts[0]])
    m = result.metrics
    assert (
        m["verdict_passed"],
        m["verdict_failed"],
        m["verdict_timeout"],
        m["verdict_crashed"],
    ) == (1, 1, 1, 1)
    assert m["pass@1"] == 0.25 and m["greedy_pass@1"] == 1.0
    assert m["pass@4"] == 1.0  # one right in four: some draw of four has it
    verdicts = [s["verdict"] for s in result.records[0]["samples"]]
    assert verdicts == ["passed", "failed", "timeout", "crashed"]


def test_accuracy_reward_runs_the_tests_of_code_problems():
    code = {"tests": ["assert f(1) == 1"], "answer": "def f(x): return x"}
    samples = [
        Sample("q", _response("def f(x):\n    return x"), code),
        Sample("q", "<think>t</think><answer>4</answer>", {"answer": "4"}),
        Sample("q", _response("def f(x):\n    return 0"), code),
        Sample("q", "<think>t</think><answer>5</answer>", {"answer": "4"}),
    ]
    assert get_reward("accuracy")(samples) == [1.0, 1.0, 0.0, 0.0]


def test_references_score_one_and_a_shuffled_pairing_near_zero(tmp_path, capsys):
    out = tmp_path / "ref.json"
    assert (
        main(["eval", "task.name=mbpp", "task.limit=60", "predictions=reference", f"output={out}"])
        == 0
    )
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["pass@1"] == 1.0 and metrics["verdict_passed"] == 60
    problems = load_task(TaskConfig(name="mbpp", limit=60))
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_text(
        "".join(
            json.dumps({"id": p.id, "response": reference_response(problems[(i + 1) % 60])}) + "\n"
            for i, p in enumerate(problems)
        )
    )
    out2 = tmp_path / "shuffled.json"
    args = ["eval", "task.name=mbpp", "task.limit=60", f"predictions={shuffled}", f"output={out2}"]
    assert main(args) == 0
    assert json.loads(out2.read_text())["metrics"]["pass@1"] <= 0.05


@pytest.mark.slow
@pytest.mark.parametrize("task", ["humaneval", "mbpp"])
def test_every_canonical_solution_passes_through_r1lab_eval(tmp_path, task):
    out = tmp_path / f"{task}.json"
    assert main(["eval", f"task.name={task}", "predictions=reference", f"output={out}"]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["pass@1"] == 1.0
    assert metrics["verdict_passed"] == {"humaneval": 164, "mbpp": 500}[task]


def test_a_predictions_file_naming_an_unknown_problem_is_refused(tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_text(
        json.dumps({"id": "mbpp/11", "response": "x"})
        + "\n"
        + json.dumps({"id": "nope", "response": "x"})
        + "\n"
    )
    assert main(["eval", "task.name=mbpp", f"predictions={path}", f"output={tmp_path}/o.json"]) == 2
    assert f"{path}:2: id 'nope' is not a problem of this task" in capsys.readouterr().err
