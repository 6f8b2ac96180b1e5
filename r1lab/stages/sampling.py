"""What cold start and rejection sampling share: k samples per training prompt from a model,
kept on disk so that a rerun does not sample again."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1lab.config import at_least, in_range, option
from r1lab.data.problem import Problem
from r1lab.data.tasks import TaskConfig
from r1lab.errors import UserError

__all__ = ["SamplingConfig", "check_model", "sample_problems", "sample_stage"]


@dataclass
class SamplingConfig:
    """How the traces a data stage filters are sampled (report: T = 1.0 for cold start)."""

    k: int = option(4, "samples per prompt", check=at_least(1))
    temperature: float = option(1.0, "sampling temperature", check=at_least(0))
    top_p: float = option(1.0, "nucleus sampling (1.0: off)", check=in_range(0, 1, low_open=True))
    max_new_tokens: int = option(320, "response length limit", report=32768, check=at_least(1))
    batch_size: int = option(64, "prompts per generate call", check=at_least(1))
    seed: int = option(0, "sampling seed")


def check_model(folder: str, what: str) -> Path:
    """The model folder, or a one-line error saying which stage makes it."""
    path = Path(folder)
    if not (path / "config.json").is_file():
        raise UserError(f"{path}: no model there ({what})")
    return path


def sample_problems(
    model: Any, tokenizer: Any, problems: list[Problem], task: TaskConfig, cfg: SamplingConfig,
    out: Path, label: str,
) -> list[dict[str, Any]]:  # fmt: skip
    """Per problem, its record with ``cfg.k`` samples (``text``, ``answer``, ``correct``, ...:
    :func:`r1lab.eval.metrics.score_problem`), read from ``out`` when it was sampled before."""
    from r1lab.eval.evaluate import EvalConfig, evaluate_cached, read_samples

    ecfg = EvalConfig(
        model=label, task=task, k=cfg.k, greedy=False, temperature=cfg.temperature,
        top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
        seed=cfg.seed,
    )  # fmt: skip
    evaluate_cached(model, tokenizer, problems, ecfg, out)
    return read_samples(out)


def sample_stage(
    cfg: Any, name: str, hint: str, resume: bool
) -> tuple[Any, Path, list[dict[str, Any]], dict[str, str]]:
    """The start of a data stage whose ``cfg`` has ``model``, ``task``, ``sampling`` and
    ``run``: check and load the model and the task, open the run folder, sample (or read the
    samples back). Returns the run, the model folder, the records and each problem's
    language. ``hint`` says where the model comes from, for the error when it is missing."""
    from r1lab.config import save_config
    from r1lab.data.tasks import load_task
    from r1lab.model_card import card, world_of
    from r1lab.models import load_model, load_tokenizer
    from r1lab.runs import Run

    folder = check_model(cfg.model, hint)
    load_task(cfg.task)  # a bad task is an error before the model is loaded
    model = load_model(folder)
    tokenizer = load_tokenizer(folder)
    problems = load_task(cfg.task, world_of(card(model)))
    run = Run.create(cfg.run, name, cfg, resume=resume)
    if resume:  # a data stage has no checkpoint to restore: the config is the one to keep
        save_config(cfg, run.path / "config.yaml")
    records = sample_problems(
        model, tokenizer, problems, cfg.task, cfg.sampling, run.path / "samples.json", str(folder)
    )
    return run, folder, records, {p.id: p.meta.get("language", "en") for p in problems}
