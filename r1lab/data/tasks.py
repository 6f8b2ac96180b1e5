"""Tasks: where problems come from and how a problem becomes a prompt.

A task is a list of :class:`~r1lab.data.problem.Problem` (question + gold answer, or for code
the tests in ``meta``) read from one of these sources:

* ``embedded``: the generated arithmetic problems the embedded base is built around
  (``heldout`` split by default, never seen in pretraining);
* ``embedded-code``: the code world's tiny Python functions with hidden tests
  (:mod:`r1lab.world.code`), for the code base (``r1lab pretrain kind=code``);
* ``gsm8k``, ``math500``, ``humaneval`` and ``mbpp``: the test sets shipped inside the package
  (:mod:`r1lab.data.benchmarks`, each with its licence and source), or the same file names
  under ``task.data_dir`` / ``$R1LAB_DATA_DIR``. ``split`` picks the set: ``heldout`` the test
  set, ``train`` GSM8K's training set (shipped too) or MBPP's training split (tasks
  601-974; its test split is 11-510); a test set is never trained on;
* ``jsonl``: any JSONL or Parquet file, with the names of its question and answer fields, or
  with a tests field for code problems (:func:`r1lab.rewards.code.load_code_tasks`).

Outside questions (everything but ``embedded``) get an instruction appended that asks for the
``<think>…</think><answer>…</answer>`` format, because a model only knows that format from
training and the checker reads only the ``<answer>`` block. With ``instruction=auto`` (the
default) a model whose folder says how it was prompted (:mod:`r1lab.model_card`) gets that
instead: the embedded base, trained on bare questions, gets none.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1lab.config import at_least, one_of, option
from r1lab.data.io import read_records
from r1lab.data.problem import Problem
from r1lab.errors import UserError

TASKS = ("embedded", "embedded-code", "gsm8k", "math500", "humaneval", "mbpp", "jsonl")
CODE_TASKS = ("embedded-code", "humaneval", "mbpp")
ANSWER_FORMATS = ("plain", "gsm8k", "boxed")

DEFAULT_INSTRUCTION = (
    "Think step by step inside <think> </think>, then give only the final answer "
    "inside <answer> </answer>."
)
DEFAULT_INSTRUCTION_ZH = (
    "请先在 <think> </think> 中逐步思考，然后在 <answer> </answer> 中只给出最终答案。"
)
CODE_INSTRUCTION = (
    "Think step by step inside <think> </think>, then give the program inside "
    "<answer> </answer> as a ```python block."
)

AUTO = "auto"

# Per named task: file under the data folder, question field, answer field, answer format.
_BUILTIN = {
    "gsm8k": ("gsm8k/test.jsonl", "question", "answer", "gsm8k"),
    "math500": ("math500/test.jsonl", "problem", "answer", "plain"),
}
_TRAIN_FILES = {"gsm8k": "gsm8k/train.jsonl"}  # a training split the package ships too
_CODE_FILES = {"humaneval": "humaneval/HumanEval.jsonl", "mbpp": "mbpp/mbpp.jsonl"}
# MBPP's splits by task id (Austin et al., 2021): 1-10 few-shot prompts, 11-510 test,
# 511-600 validation, 601-974 train
_MBPP_SPLITS = {"heldout": range(11, 511), "train": range(601, 975)}
_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@dataclass
class TaskConfig:
    """Which problems to use and how to prompt for them."""

    name: str = option(
        "embedded",
        "embedded (generated arithmetic), embedded-code (generated Python functions, for the "
        "code base), gsm8k, math500, humaneval, mbpp, or jsonl (any JSONL/Parquet file given "
        "by path; with a tests field, code problems)",
        check=one_of(*TASKS),
    )
    path: str = option(
        "",
        "data file (JSONL or Parquet); required for jsonl, replaces the packaged "
        "test file for gsm8k/math500/humaneval/mbpp (e.g. my/gsm8k-train.jsonl)",
    )
    question_field: str = option(
        "", "field holding the question (empty: question; problem for math500)"
    )
    answer_field: str = option("", "field holding the gold answer (empty: answer)")
    tests_field: str = option(
        "",
        "jsonl: field holding a code problem's tests (a list of assert snippets, or source "
        "defining check(candidate)); empty: tests when the first record has one, else none "
        "(a math task). Every record of a code file needs a non-empty one",
    )
    answer_format: str = option(
        "",
        "how the gold is read from the answer field: plain (as is), gsm8k "
        "(after the last '####'), boxed (last \\boxed{} of a solution); "
        "empty: the task's own (gsm8k for gsm8k, else plain)",
    )
    split: str = option(
        "heldout",
        "heldout or train. Embedded tasks: heldout is disjoint from pretraining; gsm8k: the "
        "test or the train set; mbpp: its test split (tasks 11-510) or its train split "
        "(601-974); math500, humaneval: heldout only (test sets)",
        check=one_of("heldout", "train"),
    )
    limit: int = option(
        0,
        "at most this many problems, a seeded sample in file order (0, or more than the "
        "file holds: all of it; the embedded tasks generate 200 for 0)",
        check=at_least(0),
    )
    seed: int = option(0, "seed of the embedded generator and of the limit sample")
    prompt_template: str = option(
        "{question}", "user message; {question} is replaced by the question"
    )
    instruction: str = option(
        AUTO,
        "appended to outside (non-embedded) questions; empty for none; auto: the model's own "
        f"(from its folder), else {DEFAULT_INSTRUCTION!r}",
    )
    instruction_zh: str = option(
        AUTO,
        "appended instead to outside questions in Chinese, so the prompt stays in one "
        f"language; auto: the model's own, else {DEFAULT_INSTRUCTION_ZH!r}",
    )
    general: int = option(
        0,
        "add this many general prompts of the embedded world (greetings, lists, translations, "
        "messages, unsafe requests; of the same split) to the problems, as stage D mixes "
        "general prompts with reasoning ones (meta task: general)",
        check=at_least(0),
    )
    data_dir: str = option(
        "",
        "folder with gsm8k/, math500/, humaneval/ and mbpp/ holding the files the package "
        "ships (empty: $R1LAB_DATA_DIR, else the package's own copies)",
    )


def data_dir(configured: str = "") -> Path:
    """The benchmark folder: ``configured``, else ``$R1LAB_DATA_DIR``, else the copies shipped
    in the package (:mod:`r1lab.data.benchmarks`)."""
    if configured:
        return Path(configured)
    if os.environ.get("R1LAB_DATA_DIR"):
        return Path(os.environ["R1LAB_DATA_DIR"])
    from importlib.resources import files

    return Path(str(files("r1lab.data.benchmarks")))


def find_data_file(path: str | Path, configured_dir: str = "") -> Path:
    """``path`` as given when it exists (or is absolute), else the file of that name among the
    benchmarks (:func:`data_dir`): ``gsm8k/train.jsonl`` works from any folder."""
    given = Path(path)
    if given.exists() or given.is_absolute():
        return given
    packaged = data_dir(configured_dir) / given
    return packaged if packaged.exists() else given


def _data_file(cfg: TaskConfig, rel: str) -> Path:
    """The task's file: ``task.path`` (:func:`find_data_file`), else ``rel`` under
    :func:`data_dir`."""
    if cfg.path:
        return find_data_file(cfg.path, cfg.data_dir)
    if cfg.split == "train" and cfg.name in _TRAIN_FILES:
        rel = _TRAIN_FILES[cfg.name]
    elif cfg.split == "train" and cfg.name != "mbpp":
        raise UserError(
            f"task.name={cfg.name}: the package ships only its test set, which is not for "
            f"training; give a training file with task.path, or task.split=heldout to evaluate"
        )
    path = data_dir(cfg.data_dir) / rel
    if not path.exists():
        raise UserError(
            f"{path}: {cfg.name} data not found (task.data_dir or R1LAB_DATA_DIR must name "
            f"the folder holding {rel.split('/')[0]}/)"
        )
    return path


def check_training_task(cfg: TaskConfig) -> None:
    """Refuse to train on evaluation data: the embedded world's held-out split."""
    if cfg.name == "embedded" and cfg.split == "heldout":
        raise UserError(
            "task.split=heldout is the embedded world's evaluation split; train on task.split=train"
        )


def load_task(cfg: TaskConfig, world: Any = None) -> list[Problem]:
    """The task's problems, each with ``meta`` holding ``task``, ``language`` and ``source``.

    The embedded task is drawn from ``world`` (a :class:`~r1lab.world.problems.WorldConfig`,
    the one the model was built in: :func:`r1lab.model_card.world_of`; default: the
    default world), so its split is the one pretraining left out."""
    if cfg.name not in TASKS:
        raise UserError(f"unknown task '{cfg.name}' (known: {', '.join(TASKS)})")
    if cfg.limit < 0:
        raise UserError(f"task.limit must be >= 0, got {cfg.limit}")
    if "{question}" not in cfg.prompt_template:
        raise UserError(
            f"task.prompt_template must contain {{question}}, got {cfg.prompt_template!r}"
        )
    if cfg.split not in ("train", "heldout"):
        raise UserError(f"task.split must be train or heldout, got '{cfg.split}'")
    if cfg.name in ("embedded", "embedded-code"):
        problems = _embedded(cfg, world)
    elif cfg.name in CODE_TASKS or (cfg.name == "jsonl" and _has_tests(cfg)):
        problems = _load_code_task(cfg)
    else:
        problems = _load_file_task(cfg)
    if cfg.general:
        from r1lab.world.general import generate_general

        problems = problems + generate_general(cfg.general, cfg.seed, cfg.split)
    return problems


def _embedded(cfg: TaskConfig, world: Any) -> list[Problem]:
    """The generated problems of an embedded world: arithmetic or code, whichever the task
    names; a model built in the other world is refused."""
    from r1lab.world.code import CodeWorldConfig, generate_code_problems
    from r1lab.world.problems import WorldConfig, generate_problems

    code = cfg.name == "embedded-code"
    kind, other = (CodeWorldConfig, WorldConfig) if code else (WorldConfig, CodeWorldConfig)
    if isinstance(world, other):
        base = "r1lab pretrain" + (" kind=code" if code else "")
        raise UserError(
            f"task.name={cfg.name}: the model was built in the "
            f"{'arithmetic' if code else 'code'} world; use a base from {base}"
        )
    generate = generate_code_problems if code else generate_problems
    try:
        problems = generate(
            cfg.limit or 200, cfg.seed, cfg.split, world if isinstance(world, kind) else None
        )
    except ValueError as e:  # more problems than the split holds
        raise UserError(f"task.limit={cfg.limit}: {e}") from None
    for p in problems:
        p.meta.setdefault("task", cfg.name)
    return problems


def _first_record(cfg: TaskConfig) -> dict[str, Any]:
    if not cfg.path:
        raise UserError("task.path is required for task jsonl (a .jsonl or .parquet file)")
    first = read_records(find_data_file(cfg.path, cfg.data_dir))[:1]
    return first[0] if first else {}


def _has_tests(cfg: TaskConfig) -> bool:
    """Whether a jsonl task is code: a tests field is named, or the first record has one."""
    return bool(cfg.tests_field) or "tests" in _first_record(cfg)


def _load_code_task(cfg: TaskConfig) -> list[Problem]:
    """HumanEval, MBPP (its split) or a jsonl file of code problems, each with its tests."""
    from r1lab.rewards.code import load_code_tasks

    if cfg.name == "jsonl":
        # the question is in question_field, else "question", else "prompt" (HumanEval's name)
        question = cfg.question_field or (
            "prompt" if "question" not in _first_record(cfg) else "question"
        )
        fields = {"prompt": question, "tests": cfg.tests_field or "tests"}
        problems = load_code_tasks(find_data_file(cfg.path, cfg.data_dir), fields, kind="custom")
        for p in problems:
            p.meta["task"] = "jsonl"
    else:
        path = _data_file(cfg, _CODE_FILES[cfg.name])
        problems = load_code_tasks(path, kind=cfg.name)
        if cfg.name == "mbpp" and not cfg.path:
            ids = _MBPP_SPLITS[cfg.split]
            problems = [p for p in problems if int(p.id.split("/")[1]) in ids]
    return [problems[i] for i in _sample(len(problems), cfg, cfg.path or cfg.name)]


def _sample(count: int, cfg: TaskConfig, what: str) -> list[int]:
    """The indices kept by ``task.limit``: at most that many, a seeded sample in file order;
    all when the file holds fewer (and a line says so)."""
    if cfg.limit > count:
        print(f"task: {what} holds {count} problems, fewer than task.limit={cfg.limit}: all used")
    if not cfg.limit or cfg.limit >= count:
        return list(range(count))
    return sorted(random.Random(cfg.seed).sample(range(count), cfg.limit))


def _load_file_task(cfg: TaskConfig) -> list[Problem]:
    if cfg.name == "jsonl":
        if not cfg.path:
            raise UserError("task.path is required for task jsonl (a .jsonl or .parquet file)")
        path, q_field, a_field, fmt = (
            find_data_file(cfg.path, cfg.data_dir),
            "question",
            "answer",
            "plain",
        )
    else:
        rel, q_field, a_field, fmt = _BUILTIN[cfg.name]
        path = _data_file(cfg, rel)
    q_field = cfg.question_field or q_field
    a_field = cfg.answer_field or a_field
    fmt = cfg.answer_format or fmt
    if fmt not in ANSWER_FORMATS:
        raise UserError(f"unknown task.answer_format '{fmt}' (known: {', '.join(ANSWER_FORMATS)})")

    rows = read_records(
        path, {"question": q_field, "answer": a_field}, required=["question", "answer"]
    )
    keep = _sample(len(rows), cfg, str(path))
    prefix = path.stem if cfg.name == "jsonl" else cfg.name
    if cfg.name in _TRAIN_FILES and cfg.split == "train" and not cfg.path:
        prefix += "-train"  # ids of the two sets never collide
    line_of = line_numbers(path, len(rows))
    problems = []
    for i in keep:
        row = rows[i]
        try:
            gold = read_gold(row["answer"], fmt)
        except ValueError as e:
            raise UserError(f"{path}:{line_of[i]}: field '{a_field}': {e}") from None
        if not isinstance(row["question"], str) or not row["question"].strip():
            raise UserError(f"{path}:{line_of[i]}: field '{q_field}' must be non-empty text")
        problems.append(
            Problem(
                id=_record_id(row, f"{prefix}-{i}"),
                question=row["question"],
                answer=gold,
                meta={
                    "task": cfg.name,
                    "language": _language(row),
                    "source": f"{path}:{line_of[i]}",
                    **{k: row[k] for k in ("subject", "level") if k in row},
                },
            )
        )
    return problems


def read_gold(value: Any, fmt: str) -> str:
    """The gold answer from an answer field: as is (``plain``), after ``####`` (``gsm8k``, without
    thousands separators) or the last ``\\boxed{…}`` (``boxed``). ValueError when absent."""
    from r1lab.rewards.answer import gsm8k_gold

    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"expected text or a number, got {type(value).__name__}")
    text = str(value).strip()
    if fmt == "gsm8k":
        text = gsm8k_gold(text)
    elif fmt == "boxed":
        boxed = last_boxed(text)
        if boxed is None:
            raise ValueError("no \\boxed{...} answer")
        text = boxed.strip()
    if not text:
        raise ValueError("empty answer")
    return text


def last_boxed(text: str) -> str | None:
    """The contents of the last ``\\boxed{…}`` (or ``\\fbox{…}``), braces balanced; None if none."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


def _record_id(row: dict[str, Any], fallback: str) -> str:
    for key in ("id", "unique_id", "task_id"):
        if row.get(key) is not None:
            return str(row[key])
    return fallback


def _language(row: dict[str, Any]) -> str:
    lang = row.get("language")
    if lang in ("en", "zh"):
        return lang
    return "zh" if _HAN.search(row["question"]) else "en"


def line_numbers(path: Path, count: int) -> list[int]:
    """The line (JSONL) or row (Parquet) of each record, for messages that name file:line."""
    if path.suffix == ".parquet":
        return list(range(1, count + 1))
    with open(path, "rb") as f:
        # lines split at \n only and blank ones skipped, exactly as read_records reads them (a
        # text-mode file splits at a lone \r too, which JSON allows between tokens)
        return [n for n, raw in enumerate(f, 1) if raw.decode("utf-8", "replace").strip()]


def prompt_template_for(
    cfg: TaskConfig, problem: Problem, model_prompt: dict[str, str] | None = None
) -> str:
    """The template for ``problem``: the task's, plus the format instruction for outside tasks
    (in Chinese for a Chinese question). An ``auto`` instruction is ``model_prompt``'s (the
    prompt the model was trained with, :func:`r1lab.model_card.prompt_of`), else the default."""
    if problem.meta.get("task", cfg.name) in ("embedded", "embedded-code", "general"):
        return cfg.prompt_template  # the worlds' own prompts, as the base was trained on them
    if problem.meta.get("tests"):  # code: the program is the answer
        code_instruction = CODE_INSTRUCTION if cfg.instruction == AUTO else cfg.instruction
        return (
            f"{cfg.prompt_template}\n\n{code_instruction}"
            if code_instruction
            else cfg.prompt_template
        )
    zh = problem.meta.get("language") == "zh"
    instruction = cfg.instruction_zh if zh else cfg.instruction
    if instruction == AUTO:
        key, default = (
            ("instruction_zh", DEFAULT_INSTRUCTION_ZH)
            if zh
            else ("instruction", DEFAULT_INSTRUCTION)
        )
        instruction = model_prompt.get(key, default) if model_prompt is not None else default
    return f"{cfg.prompt_template}\n\n{instruction}" if instruction else cfg.prompt_template


def render_prompt(tokenizer: Any, problem: Problem, template: str = "{question}") -> list[int]:
    """Token ids of the prompt: ``template`` filled with the question as the user turn of the
    tokenizer's chat template, ending with the assistant header; plain text when the tokenizer
    has no chat template (a base model)."""
    # replace, not str.format: questions and templates hold LaTeX braces
    text = template.replace("{question}", problem.question)
    if getattr(tokenizer, "chat_template", None):
        chat = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        # the chat template already wrote any BOS; adding special tokens again would double it
        return list(tokenizer(chat, add_special_tokens=False)["input_ids"])
    return list(tokenizer(text)["input_ids"])
