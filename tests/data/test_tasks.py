"""Tasks: reading problems from files with a field mapping, and rendering prompts."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from r1lab.data.problem import Problem
from r1lab.data.tasks import (
    DEFAULT_INSTRUCTION,
    DEFAULT_INSTRUCTION_ZH,
    TaskConfig,
    data_dir,
    last_boxed,
    load_task,
    prompt_template_for,
    render_prompt,
)
from r1lab.errors import UserError


def write_jsonl(path, rows, blank_after_first=False):
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    if blank_after_first:
        lines.insert(1, "")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_custom_jsonl_with_field_mapping(tmp_path):
    path = write_jsonl(
        tmp_path / "mine.jsonl",
        [
            {"prompt": "What is 2+2?", "solution": "2+2=4\n#### 4", "id": "q1"},
            {"prompt": "3+5等于多少？", "solution": "3+5=8\n#### 1,008"},
        ],
    )
    cfg = TaskConfig(
        name="jsonl",
        path=str(path),
        question_field="prompt",
        answer_field="solution",
        answer_format="gsm8k",
    )
    problems = load_task(cfg)
    assert [p.question for p in problems] == ["What is 2+2?", "3+5等于多少？"]
    assert [p.answer for p in problems] == ["4", "1008"]
    assert [p.id for p in problems] == ["q1", "mine-1"]
    assert [p.meta["language"] for p in problems] == ["en", "zh"]
    assert problems[1].meta["source"] == f"{path}:2"
    assert problems[0].meta["task"] == "jsonl"


def test_missing_field_names_file_and_line(tmp_path):
    path = write_jsonl(
        tmp_path / "bad.jsonl", [{"q": "a", "a": "1"}, {"q": "b", "a": "2"}, {"q": "c"}]
    )
    cfg = TaskConfig(name="jsonl", path=str(path), question_field="q", answer_field="a")
    with pytest.raises(UserError, match=f"{path}:3: missing field 'a'"):
        load_task(cfg)


def test_bad_gold_names_file_and_line_past_blank_lines(tmp_path):
    path = write_jsonl(
        tmp_path / "g.jsonl",
        [{"question": "x", "answer": "#### 1"}, {"question": "y", "answer": "no marker"}],
        blank_after_first=True,
    )
    with pytest.raises(UserError, match=f"{path}:3: field 'answer': no '#### <answer>' line"):
        load_task(TaskConfig(name="jsonl", path=str(path), answer_format="gsm8k"))


def test_parquet_with_boxed_answers(tmp_path):
    path = tmp_path / "math.parquet"
    table = pa.table(
        {
            "problem": ["Simplify $\\frac{2}{4}$.", "Solve $x+1=3$."],
            "solution": ["It is $\\boxed{\\frac{1}{2}}$.", "So $x = \\boxed{2}$."],
            "level": [1, 2],
        }
    )
    pq.write_table(table, path)
    cfg = TaskConfig(
        name="jsonl",
        path=str(path),
        question_field="problem",
        answer_field="solution",
        answer_format="boxed",
    )
    problems = load_task(cfg)
    assert [p.answer for p in problems] == ["\\frac{1}{2}", "2"]
    assert problems[1].meta["level"] == 2
    assert problems[1].meta["source"] == f"{path}:2"


def test_last_boxed_balances_braces():
    assert last_boxed("a \\boxed{1} then \\boxed{\\frac{a}{b+{c}}} end") == "\\frac{a}{b+{c}}"
    assert last_boxed("no box") is None
    assert last_boxed("\\boxed{unclosed") is None


def test_limit_is_a_seeded_sample_in_file_order(tmp_path):
    path = write_jsonl(
        tmp_path / "n.jsonl", [{"question": f"q{i}", "answer": str(i)} for i in range(50)]
    )
    a = load_task(TaskConfig(name="jsonl", path=str(path), limit=10, seed=1))
    b = load_task(TaskConfig(name="jsonl", path=str(path), limit=10, seed=1))
    c = load_task(TaskConfig(name="jsonl", path=str(path), limit=10, seed=2))
    numbers = [int(p.answer) for p in a]
    assert len(a) == 10 and numbers == sorted(numbers)
    assert [p.id for p in a] == [p.id for p in b] != [p.id for p in c]


def test_shared_tasks_and_data_dir(monkeypatch, tmp_path):
    math = load_task(TaskConfig(name="math500", limit=5))
    assert len(math) == 5 and all(
        p.id.startswith("test/") and p.meta["language"] == "en" for p in math
    )
    gsm = load_task(TaskConfig(name="gsm8k", limit=3))
    assert all(p.answer.lstrip("-").isdigit() for p in gsm)

    monkeypatch.setenv("R1LAB_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path
    assert data_dir("/elsewhere").as_posix() == "/elsewhere"
    with pytest.raises(UserError, match="gsm8k data not found"):
        load_task(TaskConfig(name="gsm8k"))


def test_embedded_task_has_both_languages():
    problems = load_task(TaskConfig(name="embedded", limit=40, seed=3))
    assert len(problems) == 40
    assert {p.meta["language"] for p in problems} == {"en", "zh"}
    assert all(p.meta["task"] == "embedded" for p in problems)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (TaskConfig(name="mmlu"), "unknown task 'mmlu'"),
        (TaskConfig(name="jsonl"), "task.path is required"),
        (TaskConfig(prompt_template="Solve it"), "must contain {question}"),
        (TaskConfig(name="embedded", split="test"), "task.split must be train or heldout"),
    ],
)
def test_config_errors(cfg, message):
    with pytest.raises(UserError, match=message):
        load_task(cfg)


# --- prompts ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    from r1lab.world.tokenizer import build_tokenizer

    return build_tokenizer(
        ["What is 347+589? 347+589等于多少？ Think step by step."] * 20, vocab_size=300
    )


def test_template_adds_instruction_to_outside_questions_only():
    cfg = TaskConfig(name="gsm8k")
    en = Problem("a", "How many?", "3", {"task": "gsm8k", "language": "en"})
    zh = Problem("b", "多少？", "3", {"task": "jsonl", "language": "zh"})
    embedded = Problem("c", "What is 1+2?", "3", {"task": "embedded", "language": "en"})
    assert prompt_template_for(cfg, en) == "{question}\n\n" + DEFAULT_INSTRUCTION
    assert prompt_template_for(cfg, zh) == "{question}\n\n" + DEFAULT_INSTRUCTION_ZH
    assert prompt_template_for(cfg, embedded) == "{question}"
    assert prompt_template_for(TaskConfig(name="gsm8k", instruction=""), en) == "{question}"


def test_render_prompt_uses_the_chat_template_and_keeps_chinese(tokenizer):
    p = Problem("z", "347+589等于多少？", "936", {"language": "zh", "task": "embedded"})
    ids = render_prompt(tokenizer, p, "{question}")
    assert (
        tokenizer.decode(ids)
        == "<|im_start|>user\n347+589等于多少？<|im_end|>\n<|im_start|>assistant\n"
    )
    # LaTeX braces in a question are not format fields
    latex = Problem("l", "Is $\\frac{1}{2}$ {small}?", "yes")
    assert "Is $\\frac{1}{2}$ {small}? Think." in tokenizer.decode(
        render_prompt(tokenizer, latex, "{question} Think.")
    )


def test_render_prompt_without_chat_template_is_plain_text(tokenizer):
    tokenizer = _copy_without_chat_template(tokenizer)
    p = Problem("e", "What is 347+589?", "936")
    assert tokenizer.decode(render_prompt(tokenizer, p)) == "What is 347+589?"


def _copy_without_chat_template(tokenizer):
    import copy

    tok = copy.deepcopy(tokenizer)
    tok.chat_template = None
    return tok


def test_more_problems_than_a_split_holds_fail_with_both_numbers(tmp_path):
    from r1lab.world.problems import split_size

    size = split_size("heldout")
    with pytest.raises(
        UserError, match=f"asks for {size + 1} problems, but the heldout split holds {size}"
    ):
        load_task(TaskConfig(split="heldout", limit=size + 1))
    path = tmp_path / "t.jsonl"
    path.write_text('{"question": "q", "answer": "1"}\n')
    assert len(load_task(TaskConfig(name="jsonl", path=str(path), limit=2))) == 1  # at most 2
