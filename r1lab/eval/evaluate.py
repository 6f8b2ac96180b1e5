"""``r1lab eval``: decode each problem of a task greedily and sample it k times; report greedy
pass@1, pass@1 and pass@k of the samples, and cons@k.

The report evaluates at temperature 0.6, top-p 0.95 with 64 samples per problem; the tiny
defaults sample 16 at temperature 1.0, the temperature the embedded model is trained at.
A sample is a function of its prompt, its number and the seed only (see
:mod:`r1lab.rollout.sampling`), so results do not depend on the batch size. Metrics are
defined in :mod:`r1lab.eval.metrics`.
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
    "evaluate_cached",
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
        16,
        "samples per problem: pass@1 is averaged over them, pass@4 and pass@16 (unbiased) "
        "and cons@k are taken from them",
        report=64,
        check=at_least(1),
    )
    greedy: bool = option(True, "also decode each problem greedily (T = 0) for greedy pass@1")
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
        320,
        "response length limit; longer responses count as truncated",
        report=32768,
        check=at_least(1),
    )
    batch_size: int = option(
        16, "prompts per generate call (each sampled k times)", check=at_least(1)
    )
    seed: int = option(0, "sampling seed (a sample depends on it, its prompt and its number)")
    device: str = option(
        "auto",
        "cpu, cuda, or auto (cuda when available)",
        check=a_device(),
    )
    output: str = option(
        "",
        "results JSON; the samples go to <name>.samples.jsonl beside it "
        "(empty: runs/eval/<run>-<step>-<task>.json, never another model's file)",
    )
    predictions: str = option(
        "",
        "score responses from a JSONL file instead of sampling a model: one line per problem "
        "with its id and responses (a list of texts) or response (one text); 'reference' "
        "scores each problem's own reference (a code task's canonical program): a check of "
        "the tests and the sandbox",
    )


def evaluate(
    engine: RolloutEngine,
    tokenizer: Any,
    problems: list[Problem],
    cfg: EvalConfig,
    progress: bool = True,
    model_prompt: dict[str, str] | None = None,
) -> EvalResult:
    """Sample ``cfg.k`` responses per problem with ``engine`` (and decode it greedily, with
    ``cfg.greedy``) and score them; ``model_prompt`` is the prompt the model was trained with
    (:func:`r1lab.model_card.prompt_of`), for tasks whose instruction is ``auto``. With
    ``progress`` a bar shows on a terminal (tqdm's ``disable=None``)."""
    from tqdm.auto import tqdm

    validate(cfg)
    prompts = [
        render_prompt(tokenizer, p, prompt_template_for(cfg.task, p, model_prompt))
        for p in problems
    ]
    texts: list[list[str]] = []
    tokens: list[list[int]] = []
    finishes: list[list[str]] = []
    greedy: list[str] = []
    decode_greedily = cfg.greedy and cfg.temperature > 0  # at T = 0 the samples are greedy
    sampled = SamplingParams(
        n=cfg.k,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_new_tokens=cfg.max_new_tokens,
        seed=cfg.seed,
    )
    argmax = SamplingParams(n=1, temperature=0.0, max_new_tokens=cfg.max_new_tokens, seed=0)
    starts = range(0, len(prompts), cfg.batch_size)
    for start in tqdm(starts, desc="eval", unit="batch", disable=None if progress else True):
        for completions in engine.generate(prompts[start : start + cfg.batch_size], sampled):
            texts.append([c.text for c in completions])
            tokens.append([len(c.token_ids) for c in completions])
            finishes.append([c.finish_reason for c in completions])
    if decode_greedily:
        # one response per prompt: batches of as many rows as the sampled ones (batch_size × k),
        # so that a long greedy response holds up few batches
        width = cfg.batch_size * cfg.k
        starts = range(0, len(prompts), width)
        for start in tqdm(starts, desc="greedy", unit="batch", disable=None if progress else True):
            greedy += [g[0].text for g in engine.generate(prompts[start : start + width], argmax)]
    if cfg.greedy and not decode_greedily:
        greedy = [group[0] for group in texts]
    return score_predictions(
        problems,
        texts,
        num_tokens=tokens,
        finish_reasons=finishes,
        greedy=greedy if cfg.greedy else None,
        progress=progress,
    )


def evaluate_cached(
    model: Any, tokenizer: Any, problems: list[Problem], cfg: EvalConfig, out: Path
) -> dict[str, Any]:
    """Evaluate an in-memory ``model`` (``cfg.model`` is its label) and write the results to
    ``out`` and the per-problem samples beside it (``<stem>.samples.jsonl``); when ``out``
    exists it is read instead, so a resumed stage does not evaluate twice."""
    import json

    import torch

    from r1lab.data.io import write_jsonl
    from r1lab.model_card import card, prompt_of
    from r1lab.rollout.torch_engine import TorchEngine
    from r1lab.runs import write_json_atomic

    if out.is_file():
        return json.loads(out.read_text(encoding="utf-8"))
    started = time.time()
    model.eval()
    with torch.no_grad():
        result = evaluate(
            TorchEngine(model, tokenizer), tokenizer, problems, cfg,
            model_prompt=prompt_of(card(model)),
        )  # fmt: skip
    task = cfg.task
    record = {
        "model": cfg.model,
        "task": f"{task.name}/{task.split}" if task.name == "embedded" else task.name,
        **result.to_dict(),
        "seconds": round(time.time() - started, 1),
        "config": to_dict(cfg),
    }
    write_jsonl(out.with_name(out.stem + ".samples.jsonl"), result.records)
    write_json_atomic(out, record)
    return record


def read_samples(out: Path) -> list[dict[str, Any]]:
    """The per-problem records :func:`evaluate_cached` wrote beside ``out``."""
    from r1lab.data.io import read_records

    return read_records(out.with_name(out.stem + ".samples.jsonl"))


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
    if cfg.predictions:
        return _score_file(cfg)
    if not cfg.model:
        raise UserError("no model to evaluate: give its folder with model=<path>")
    output = Path(cfg.output) if cfg.output else default_output(cfg)
    check_output(output)
    if other := _results_of_another(output, cfg.model):
        raise UserError(
            f"{output}: holds the results of {other}; choose another output= (or leave it "
            f"empty for a name of its own)"
        )

    import torch

    from r1lab.data.io import write_jsonl
    from r1lab.model_card import folder_card, prompt_of, world_of
    from r1lab.models import load_model, load_tokenizer
    from r1lab.rollout.torch_engine import TorchEngine
    from r1lab.runs import seed_everything, write_json_atomic

    found = folder_card(cfg.model)
    problems = load_task(cfg.task, world_of(found))
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
        result = evaluate(engine, tokenizer, problems, cfg, model_prompt=prompt_of(found))
    out = {
        "model": str(Path(cfg.model).resolve()),
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


def _score_file(cfg: EvalConfig) -> dict[str, Any]:
    """``r1lab eval predictions=FILE``: score a file's responses (or the references)."""
    from r1lab.data.io import write_jsonl
    from r1lab.runs import write_json_atomic

    label = cfg.predictions
    task = cfg.task.name + (f"-{cfg.task.split}" if cfg.task.split != "heldout" else "")
    output = Path(cfg.output or f"runs/eval/{Path(label).stem}-{task}.json")
    check_output(output)
    if other := _results_of_another(output, label):
        raise UserError(f"{output}: holds the results of {other}; choose another output=")
    problems = load_task(cfg.task)
    if cfg.predictions == "reference":
        texts = [[reference_response(p)] for p in problems]
    else:
        problems, texts = _read_predictions(Path(cfg.predictions), problems)
    started = time.time()
    result = score_predictions(problems, texts, progress=True)
    out = {
        "model": label,
        "task": cfg.task.name,
        **result.to_dict(),
        "seconds": round(time.time() - started, 1),
        "config": to_dict(cfg),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output, out)
    write_jsonl(output.with_name(output.stem + ".samples.jsonl"), result.records)
    print(format_table(out))
    print(f"results: {output}")
    return out


def reference_response(problem: Problem) -> str:
    """A response that gives the problem's reference: its program (code) or its answer."""
    if problem.meta.get("tests"):
        return f"<think>reference</think>\n<answer>\n```python\n{problem.answer}\n```\n</answer>"
    return f"<think>reference</think>\n<answer>{problem.answer}</answer>"


def _read_predictions(path: Path, problems: list[Problem]) -> tuple[list[Problem], list[list[str]]]:
    """The problems a predictions file answers, in the file's order, with their responses."""
    from r1lab.data.io import read_records
    from r1lab.data.tasks import line_numbers

    by_id = {p.id: p for p in problems}
    rows = read_records(path, required=["id"])
    chosen, texts = [], []
    for row, line in zip(rows, line_numbers(path, len(rows)), strict=True):
        where = f"{path}:{line}"
        problem = by_id.get(str(row["id"]))
        if problem is None:
            raise UserError(f"{where}: id {row['id']!r} is not a problem of this task")
        responses = row.get("responses", [row["response"]] if "response" in row else None)
        if (
            not isinstance(responses, list)
            or not responses
            or not all(isinstance(r, str) for r in responses)
        ):
            raise UserError(
                f"{where}: expected 'responses' (a non-empty list of texts) or 'response' (text)"
            )
        chosen.append(problem)
        texts.append(responses)
    if not chosen:
        raise UserError(f"{path}: no predictions")
    return chosen, texts


def model_label(model: str) -> str:
    """A name for a model folder from its run and step: ``runs/zero/checkpoints/step-48`` ->
    ``zero-step-48``, ``runs/zero/final`` -> ``zero-final``, ``my/model`` -> ``my-model``."""
    path = Path(model).resolve()
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return f"{run.name}-{path.name}" if run.name else path.name


def default_output(cfg: EvalConfig) -> Path:
    """``runs/eval/<run>-<step>-<task>.json``; when that holds another model's results, the
    first free ``…-2.json``, ``…-3.json``: one model's results never replace another's."""
    task = cfg.task.name + (f"-{cfg.task.split}" if cfg.task.name == "embedded" else "")
    stem = Path("runs") / "eval" / f"{model_label(cfg.model)}-{task}"
    path, n = stem.with_suffix(".json"), 1
    while _results_of_another(path, cfg.model):
        n += 1
        path = stem.with_name(f"{stem.name}-{n}.json")
    return path


def _results_of_another(path: Path, model: str) -> str | None:
    """The other model whose results ``path`` holds, or None (no file, or this model's)."""
    import json

    if not path.is_file():
        return None
    try:
        other = json.loads(path.read_text(encoding="utf-8")).get("model")
    except (OSError, ValueError, AttributeError):
        return str(path)  # not results we wrote: not ours to replace
    if other and Path(other).resolve() == Path(model).resolve():
        return None
    return str(other)


_LABELS = {
    "greedy_pass@1": "greedy pass@1 (T=0)",
    "pass@1": "pass@1 (mean of k)",
    "pass@4": "pass@4 (unbiased)",
    "pass@16": "pass@16 (unbiased)",
    "reflection_rate": "reflection share",
    "format_rate": "format ok",
    "answer_rate": "has <answer>",
    "language_consistency": "language consistency",
    "mean_tokens": "mean length (tokens)",
    "truncation_rate": "truncated",
    "verdict_passed": "programs passed",
    "verdict_failed": "programs failed",
    "verdict_timeout": "programs timed out",
    "verdict_crashed": "programs crashed",
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
    if metric.startswith("verdict_"):
        return str(int(value))
    return f"{value:.1f}" if metric == "mean_tokens" else f"{value:.3f}"
