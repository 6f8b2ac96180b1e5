"""``r1lab eval``: sample k responses per problem of a task and report pass@1 and cons@k.

The report evaluates at temperature 0.6, top-p 0.95 with 64 samples per problem; the tiny
defaults sample fewer at temperature 1.0, the temperature the embedded model is trained at.
Metrics are defined in :mod:`r1lab.eval.metrics`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1lab.config import a_device, at_least, in_range, option, section, to_dict, validate
from r1lab.data.problem import Problem
from r1lab.data.tasks import TaskConfig, load_task, prompt_template_for, render_prompt
from r1lab.errors import UserError
from r1lab.eval.metrics import EvalResult, score_predictions
from r1lab.rollout.base import RolloutEngine, SamplingParams

__all__ = [
    "EvalConfig",
    "EvalResult",
    "evaluate",
    "format_table",
    "run_eval_stage",
    "score_predictions",
]


@dataclass
class EvalConfig:
    """What to evaluate, on which task, sampled how."""

    model: str = option(
        "", "model folder to evaluate (Hugging Face format, e.g. a checkpoints/step-N)"
    )
    task: TaskConfig = section(TaskConfig)
    k: int = option(
        4,
        "samples per problem: pass@1 is averaged over them, cons@k votes among them",
        report=64,
        check=at_least(1),
    )
    temperature: float = option(
        1.0, "sampling temperature (0: greedy)", report=0.6, check=at_least(0)
    )
    top_p: float = option(
        1.0,
        "nucleus sampling threshold (1.0: off)",
        report=0.95,
        check=in_range(0, 1, low_open=True),
    )
    max_new_tokens: int = option(
        256,
        "response length limit; longer responses count as truncated",
        report=32768,
        check=at_least(1),
    )
    batch_size: int = option(
        16, "prompts per generate call (each sampled k times)", check=at_least(1)
    )
    seed: int = option(0, "sampling seed")
    device: str = option(
        "auto",
        "cpu, cuda, or auto (cuda when available)",
        check=a_device(),
    )
    output: str = option(
        "",
        "results JSON; the samples go to <name>.samples.jsonl beside it "
        "(empty: runs/eval/<model folder>-<task>.json)",
    )


def evaluate(
    engine: RolloutEngine,
    tokenizer: Any,
    problems: list[Problem],
    cfg: EvalConfig,
    progress: bool = True,
) -> EvalResult:
    """Sample ``cfg.k`` responses per problem with ``engine`` and score them."""
    from tqdm.auto import tqdm

    validate(cfg)
    prompts = [render_prompt(tokenizer, p, prompt_template_for(cfg.task, p)) for p in problems]
    texts: list[list[str]] = []
    tokens: list[list[int]] = []
    finishes: list[list[str]] = []
    starts = range(0, len(prompts), cfg.batch_size)
    for start in tqdm(starts, desc="eval", unit="batch", disable=not progress):
        params = SamplingParams(
            n=cfg.k,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_new_tokens=cfg.max_new_tokens,
            seed=cfg.seed + start,
        )
        for completions in engine.generate(prompts[start : start + cfg.batch_size], params):
            texts.append([c.text for c in completions])
            tokens.append([len(c.token_ids) for c in completions])
            finishes.append([c.finish_reason for c in completions])
    return score_predictions(problems, texts, num_tokens=tokens, finish_reasons=finishes)


def check_output(path: Path) -> None:
    """Refuse, before any sampling, an output path that cannot be written as a file."""
    if path.is_dir():
        raise UserError(
            f"{path}: output is a folder; give a file name such as {path / 'eval.json'}"
        )
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{path}: cannot write the output here, {parent} is a file")
    if not os.access(parent, os.W_OK):
        raise UserError(f"{path}: cannot write the output here, {parent} is not writable")


def run_eval_stage(cfg: EvalConfig) -> dict[str, Any]:
    """Load the model folder, evaluate it on the task, print a table, write the results JSON and
    the per-problem samples (JSONL) beside it; returns what the JSON holds."""
    if not cfg.model:
        raise UserError("no model to evaluate: give its folder with model=<path>")
    output = Path(cfg.output) if cfg.output else default_output(cfg)
    check_output(output)

    import torch

    from r1lab.data.io import write_jsonl
    from r1lab.models import load_model, load_tokenizer
    from r1lab.rollout.torch_engine import TorchEngine
    from r1lab.runs import seed_everything, write_json_atomic

    problems = load_task(cfg.task)
    if not problems:
        raise UserError(f"task '{cfg.task.name}' has no problems")
    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    seed_everything(cfg.seed)
    # bfloat16 halves memory and time on GPUs; CPUs are slow at it, so they stay in float32
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    model = load_model(cfg.model, dtype=dtype, device=device).eval()
    tokenizer = load_tokenizer(cfg.model)
    engine = TorchEngine(model, tokenizer)

    started = time.time()
    with torch.no_grad():
        result = evaluate(engine, tokenizer, problems, cfg)
    out = {
        "model": str(cfg.model),
        "task": cfg.task.name,
        **result.to_dict(),
        "seconds": round(time.time() - started, 1),
        "config": to_dict(cfg),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output, out)
    samples_path = output.with_name(output.stem + ".samples.jsonl")
    write_jsonl(samples_path, result.records)
    print(format_table(out))
    print(f"results: {output}\nsamples: {samples_path}")
    return out


def default_output(cfg: EvalConfig) -> Path:
    return Path("runs") / "eval" / f"{Path(cfg.model).resolve().name}-{cfg.task.name}.json"


_LABELS = {
    "pass@1": "pass@1 (mean of k)",
    "format_rate": "format ok",
    "answer_rate": "has <answer>",
    "language_consistency": "language consistency",
    "mean_tokens": "mean length (tokens)",
    "truncation_rate": "truncated",
}


def format_table(out: dict[str, Any]) -> str:
    """A metric | value table, with a column per language when there are several."""
    metrics = out["metrics"]
    by_language = out.get("by_language") or {}
    cfg = out.get("config") or {}
    head = f"eval {out.get('task', '')}: {metrics['problems']} problems x {metrics['k']} samples"
    if cfg:
        head += f", T={cfg['temperature']} top-p={cfg['top_p']}, {out.get('model', '')}"
    languages = list(by_language)
    names = [m for m in metrics if m not in ("problems", "k")]
    width = max(len(_LABELS.get(m, m)) for m in names)
    rows = [
        head,
        f"{'metric':<{width}}  {'value':>8}" + "".join(f"  {lang:>8}" for lang in languages),
    ]
    rows.append("-" * len(rows[-1]))
    for m in names:
        cells = [_fmt(m, metrics[m])] + [_fmt(m, by_language[lang].get(m)) for lang in languages]
        rows.append(f"{_LABELS.get(m, m):<{width}}  " + "  ".join(f"{c:>8}" for c in cells))
    if languages:
        counts = [str(by_language[lang]["problems"]) for lang in languages]
        rows.append(
            f"{'problems':<{width}}  {metrics['problems']:>8}  "
            + "  ".join(f"{c:>8}" for c in counts)
        )
    return "\n".join(rows)


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if metric == "mean_tokens" else f"{value:.3f}"
