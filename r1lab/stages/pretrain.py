"""``r1lab pretrain``: build the embedded base (it stands in for DeepSeek-V3-Base).

A thin recipe over reusable parts: draw the corpus (:mod:`r1lab.world.corpus`, or with
``kind=code`` the code world's, :mod:`r1lab.world.code`), train a
tokenizer on it, build a tiny Qwen2 (:mod:`r1lab.world.model`), train it with the SFT trainer
(packing, cosine schedule, checkpoints, resume), save ``runs/<name>/final`` in Hugging Face
format and, unless switched off, evaluate it on held-out problems it never saw.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from r1lab.config import at_least, one_of, option, section, to_dict, validate
from r1lab.model_card import EMBEDDED_PROMPT, set_card
from r1lab.runs import Run, RunConfig, save_model_atomic, seed_everything
from r1lab.training.sft import SFTConfig, train_sft
from r1lab.world.code import KIND as CODE_KIND
from r1lab.world.code import TASK as CODE_TASK
from r1lab.world.code import CodeWorldConfig, build_code_corpus
from r1lab.world.corpus import CorpusConfig, build_corpus
from r1lab.world.model import TinyModelConfig, build_model
from r1lab.world.problems import WorldConfig
from r1lab.world.tokenizer import build_tokenizer

__all__ = [
    "PretrainEvalConfig",
    "PretrainStageConfig",
    "default_run_name",
    "embedded_base",
    "run_pretrain_stage",
]


@dataclass
class PretrainEvalConfig:
    """The check at the end of pretraining: sampled pass@1 on held-out problems."""

    problems: int = option(
        512, "held-out problems to evaluate on (0: skip the evaluation)", check=at_least(0)
    )
    k: int = option(1, "samples per problem", check=at_least(1))
    greedy: bool = option(True, "also decode greedily (T = 0)")
    temperature: float = option(1.0, "sampling temperature", check=at_least(0))
    max_new_tokens: int = option(192, "response length limit", check=at_least(1))


@dataclass
class PretrainStageConfig:
    """``r1lab pretrain``: corpus → tokenizer → tiny model → packed training → held-out eval."""

    kind: str = option(
        "math",
        "which embedded world: math (arithmetic; world and corpus sections) or code (tiny "
        "Python functions; the code section); the run is named pretrain or pretrain-code",
        check=one_of("math", "code"),
    )
    world: WorldConfig = section(WorldConfig)
    corpus: CorpusConfig = section(CorpusConfig)
    code: CodeWorldConfig = section(CodeWorldConfig)
    vocab_size: int = option(
        512, "BPE vocabulary size of the tokenizer", report=129280, check=at_least(300)
    )
    model: TinyModelConfig = section(TinyModelConfig)
    # Measured on the embedded world: many small steps (about 1,000 tokens) at 5e-4 learn
    # column arithmetic faster than fewer, larger ones; 1e-3 and above learn it far worse.
    # Rows of 384 tokens hold the longest trace (a slipped and redone 3-digit sum) whole.
    sft: SFTConfig = section(
        SFTConfig,
        lr_max=5e-4,
        lr_min=5e-5,
        warmup_ratio=0.03,
        epochs=1,
        token_budget=384,
        rows_per_micro_batch=3,
        grad_accum=1,
    )
    eval: PretrainEvalConfig = section(PretrainEvalConfig)
    run: RunConfig = section(RunConfig)


def run_pretrain_stage(cfg: PretrainStageConfig, resume: bool = False) -> dict[str, Any]:
    """Build and train the embedded base; returns the summary (also ``summary.json``)."""
    started = time.time()
    validate(cfg)  # load_config did for the command line; this is for callers in code
    run = Run.create(cfg.run, default_run_name(cfg.kind), cfg, resume=resume)
    seed_everything(cfg.run.seed)

    code = cfg.kind == "code"
    docs = build_code_corpus(cfg.code) if code else build_corpus(cfg.corpus, cfg.world)
    tokenizer = build_tokenizer(
        (d.get("text") or d["prompt"] + "\n" + d["response"] for d in docs), cfg.vocab_size
    )
    model = build_model(cfg.model, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    # how it is prompted and the world it was drawn from travel with every save of the model
    world = {"kind": CODE_KIND, **asdict(cfg.code)} if code else cfg.world
    set_card(model, prompt=EMBEDDED_PROMPT, world=world)
    params = sum(p.numel() for p in model.parameters())
    print(
        f"pretrain: {len(docs)} documents, vocabulary {len(tokenizer)}, {params / 1e6:.2f}M params"
    )

    summary = train_sft(model, tokenizer, docs, cfg.sft, run, resume=resume, run_cfg=cfg.run)
    final = save_model_atomic(model, tokenizer, run.path / "final")
    summary = {**summary, "stage": "pretrain", "kind": cfg.kind, "model": str(final)}
    summary["parameters"] = params
    if cfg.eval.problems > 0:
        summary["heldout"] = _evaluate(model, tokenizer, cfg)
    summary["seconds"] = round(time.time() - started, 1)
    summary["config"] = to_dict(cfg)
    run.write_summary(summary)
    print(f"pretrain: base model in {final} ({summary['seconds']:.0f} s)")
    return summary


def embedded_base(kind: str = "math") -> Path:
    """The default embedded base of a world, ``runs/pretrain/final`` or
    ``runs/pretrain-code/final``, built with the default settings when it is missing (a
    build cut short resumes)."""
    name = default_run_name(kind)
    folder = Path("runs") / name / "final"
    if (folder / "config.json").is_file():
        return folder
    print(f"no embedded base at {folder}; building it with r1lab pretrain kind={kind}")
    # the caller evaluates the base itself (r1lab grpo, on its held-out split): no check here
    cfg = PretrainStageConfig(kind=kind, eval=PretrainEvalConfig(problems=0))
    summary = run_pretrain_stage(cfg, resume=(Path("runs") / name).exists())
    return Path(summary["model"])


def default_run_name(kind: str) -> str:
    """``pretrain`` for the arithmetic world, ``pretrain-code`` for the code world."""
    return "pretrain-code" if kind == "code" else "pretrain"


def _evaluate(model: Any, tokenizer: Any, cfg: PretrainStageConfig) -> dict[str, Any]:
    import torch

    from r1lab.data.tasks import TaskConfig, load_task
    from r1lab.eval.evaluate import EvalConfig, evaluate, format_table
    from r1lab.rollout.torch_engine import TorchEngine

    code = cfg.kind == "code"
    name = CODE_TASK if code else "embedded"
    task = TaskConfig(name=name, split="heldout", limit=cfg.eval.problems)
    problems = load_task(task, cfg.code if code else cfg.world)
    ecfg = EvalConfig(
        model="(in memory)",
        task=task,
        k=cfg.eval.k,
        greedy=cfg.eval.greedy,
        temperature=cfg.eval.temperature,
        max_new_tokens=cfg.eval.max_new_tokens,
        seed=cfg.run.seed,
    )
    with torch.no_grad():
        result = evaluate(TorchEngine(model, tokenizer), tokenizer, problems, ecfg)
    out = result.to_dict()
    print(format_table({"model": "pretrain", "task": f"{name}/heldout", **out}))
    return out
