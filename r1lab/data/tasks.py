"""Tasks: where problems come from and how a problem becomes a prompt.

A task is a list of :class:`~r1lab.data.problem.Problem` (question + gold answer) read from
one of four sources:

* ``embedded``: the generated arithmetic problems the embedded base is built around
  (``heldout`` split by default, never seen in pretraining);
* ``gsm8k`` and ``math500``: the test sets in the shared data folder (``../shared/data``
  beside the repository, or ``$R1LAB_DATA_DIR``);
* ``jsonl``: any JSONL or Parquet file, with the names of its question and answer fields.

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

TASKS = ("embedded", "gsm8k", "math500", "jsonl")
ANSWER_FORMATS = ("plain", "gsm8k", "boxed")

DEFAULT_INSTRUCTION = (
    "Think step by step inside <think> </think>, then give only the final answer "
    "inside <answer> </answer>."
)
DEFAULT_INSTRUCTION_ZH = (
    "请先在 <think> </think> 中逐步思考，然后在 <answer> </answer> 中只给出最终答案。"
)

AUTO = "auto"

# Per named task: file under the data folder, question field, answer field, answer format.
_BUILTIN = {
    "gsm8k": ("gsm8k/test.jsonl", "question", "answer", "gsm8k"),
    "math500": ("math500/test.jsonl", "problem", "answer", "plain"),
}
_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@dataclass
class TaskConfig:
    """Which problems to use and how to prompt for them."""

    name: str = option(
        "embedded",
        "embedded (generated arithmetic), gsm8k, math500, or jsonl "
        "(any JSONL/Parquet file given by path)",
        check=one_of(*TASKS),
    )
    path: str = option(
        "",
        "data file (JSONL or Parquet); required for jsonl, replaces the shared "
        "test file for gsm8k/math500 (e.g. gsm8k/train.jsonl)",
    )
    question_field: str = option(
        "", "field holding the question (empty: question; problem for math500)"
    )
    answer_field: str = option("", "field holding the gold answer (empty: answer)")
    answer_format: str = option(
        "",
        "how the gold is read from the answer field: plain (as is), gsm8k "
        "(after the last '####'), boxed (last \\boxed{} of a solution); "
        "empty: the task's own (gsm8k for gsm8k, else plain)",
    )
    split: str = option(
        "heldout",
        "embedded task: heldout (disjoint from pretraining) or train",
        check=one_of("heldout", "train"),
    )
    limit: int = option(
        0,
        "at most this many problems, a seeded sample in file order (0: all of a "
        "file; the embedded task generates 200)",
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
        "folder with gsm8k/ and math500/ (empty: $R1LAB_DATA_DIR, else "
        "../shared/data beside the repository)",
    )


def data_dir(configured: str = "") -> Path:
    """The shared data folder: ``configured``, else ``$R1LAB_DATA_DIR``, else ``../shared/data``
    relative to the repository root (where the checkout sits next to ``shared/``)."""
    if configured:
        return Path(configured)
    if os.environ.get("R1LAB_DATA_DIR"):
        return Path(os.environ["R1LAB_DATA_DIR"])
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "data"


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
    if cfg.name == "embedded":
        from r1lab.world.problems import generate_problems  # lazy: the world is optional here

        if cfg.split not in ("train", "heldout"):
            raise UserError(f"task.split must be train or heldout, got '{cfg.split}'")
        try:
            problems = generate_problems(cfg.limit or 200, cfg.seed, cfg.split, world)
        except ValueError as e:  # more problems than the split holds
            raise UserError(f"task.limit={cfg.limit}: {e}") from None
        for p in problems:
            p.meta.setdefault("task", "embedded")
    else:
        problems = _load_file_task(cfg)
    if cfg.general:
        from r1lab.world.general import generate_general

        problems = problems + generate_general(cfg.general, cfg.seed, cfg.split)
    return problems


def _load_file_task(cfg: TaskConfig) -> list[Problem]:
    if cfg.name == "jsonl":
        if not cfg.path:
            raise UserError("task.path is required for task jsonl (a .jsonl or .parquet file)")
        path, q_field, a_field, fmt = Path(cfg.path), "question", "answer", "plain"
    else:
        rel, q_field, a_field, fmt = _BUILTIN[cfg.name]
        path = Path(cfg.path) if cfg.path else data_dir(cfg.data_dir) / rel
        if not path.exists() and not cfg.path:
            raise UserError(
                f"{path}: {cfg.name} data not found (set task.data_dir or R1LAB_DATA_DIR "
                f"to the folder holding {rel.split('/')[0]}/)"
            )
    q_field = cfg.question_field or q_field
    a_field = cfg.answer_field or a_field
    fmt = cfg.answer_format or fmt
    if fmt not in ANSWER_FORMATS:
        raise UserError(f"unknown task.answer_format '{fmt}' (known: {', '.join(ANSWER_FORMATS)})")

    rows = read_records(
        path, {"question": q_field, "answer": a_field}, required=["question", "answer"]
    )
    if cfg.limit > len(rows):
        raise UserError(
            f"{path}: task.limit={cfg.limit} asks for more problems than the file's {len(rows)}"
        )
    keep = range(len(rows))
    if cfg.limit and cfg.limit < len(rows):
        keep = sorted(random.Random(cfg.seed).sample(range(len(rows)), cfg.limit))
    prefix = path.stem if cfg.name == "jsonl" else cfg.name
    line_of = _line_numbers(path, len(rows))
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


def _line_numbers(path: Path, count: int) -> list[int]:
    """The line (JSONL) or row (Parquet) of each record, for messages that name file:line."""
    if path.suffix == ".parquet":
        return list(range(1, count + 1))
    with open(path, encoding="utf-8") as f:
        # blank lines are skipped exactly as read_records skips them
        return [n for n, line in enumerate(f, 1) if line.strip()]


def prompt_template_for(
    cfg: TaskConfig, problem: Problem, model_prompt: dict[str, str] | None = None
) -> str:
    """The template for ``problem``: the task's, plus the format instruction for outside tasks
    (in Chinese for a Chinese question). An ``auto`` instruction is ``model_prompt``'s (the
    prompt the model was trained with, :func:`r1lab.model_card.prompt_of`), else the default."""
    if problem.meta.get("task", cfg.name) in ("embedded", "general"):  # the world's own prompts
        return cfg.prompt_template
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
