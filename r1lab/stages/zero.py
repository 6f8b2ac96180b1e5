"""``r1lab zero``: the R1-Zero path, pure RL on the base with accuracy + format rewards.

With no arguments: build the embedded base if it is missing (``r1lab pretrain``), evaluate
it on held-out problems, run GRPO on training problems, evaluate the result on the same
held-out problems, and print base and final side by side. The held-out problems are the
embedded task's ``heldout`` split, disjoint from the ``train`` split that pretraining and
GRPO draw from (:func:`r1lab.world.problems.split_of`).

Everything lands in ``runs/zero/``: the GRPO run (``metrics.jsonl``, ``checkpoints/``,
``final/``), ``base_eval.json`` and ``final_eval.json`` with their samples,
``summary.json`` (``base_greedy_pass@1``, ``final_greedy_pass@1``, ``base_pass@1``,
``final_pass@1``, ``base_pass@16``, ... and the gains) and ``report.md`` with plots.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from r1lab.config import option, section, to_dict
from r1lab.data.tasks import TaskConfig
from r1lab.errors import UserError
from r1lab.eval.heldout import compare_table, evaluate_heldout, headline
from r1lab.rewards.config import RewardsConfig
from r1lab.runs import Run, RunConfig
from r1lab.stages.pretrain import PretrainStageConfig
from r1lab.training.grpo_config import GRPOConfig, GRPOStageConfig, check_stage
from r1lab.training.losses import GRPOLossConfig

__all__ = ["ZeroConfig", "ZeroEvalConfig", "compare_table", "run_zero"]

DEFAULT_BASE = "runs/pretrain/final"


@dataclass
class ZeroEvalConfig:
    """The held-out evaluation before and after RL (the same problems both times)."""

    task: TaskConfig = section(TaskConfig, split="heldout", limit=512)
    k: int = option(
        16, "samples per problem: pass@1 is their mean, pass@16 and cons@16 come from them",
        report=64,
    )  # fmt: skip
    final_k: int = option(
        4,
        "samples per problem for the final model (its pass@1 at T is their mean; fewer than "
        "the base's k, whose pass@16 asks whether the ability is there to be found, because "
        "the trained model's responses are long)",
        report=64,
    )
    greedy: bool = option(True, "also decode greedily (T = 0): greedy pass@1, the baseline")
    temperature: float = option(1.0, "sampling temperature", report=0.6)
    top_p: float = option(1.0, "nucleus sampling (1.0: off)", report=0.95)
    max_new_tokens: int = option(320, "response length limit", report=32768)
    batch_size: int = option(64, "prompts per generate call")
    seed: int = option(0, "sampling seed")


@dataclass
class ZeroConfig:
    """``r1lab zero``: base → held-out eval → GRPO (accuracy + format) → held-out eval."""

    base: str = option(
        DEFAULT_BASE,
        f"base model folder; when it is the default ({DEFAULT_BASE}) and missing, it is built "
        "first with the pretrain section's settings",
    )
    pretrain: PretrainStageConfig = section(PretrainStageConfig)
    task: TaskConfig = section(TaskConfig, split="train", limit=4096)
    grpo: GRPOConfig = section(GRPOConfig)
    loss: GRPOLossConfig = section(GRPOLossConfig)
    rewards: RewardsConfig = section(RewardsConfig)
    eval: ZeroEvalConfig = section(ZeroEvalConfig)
    run: RunConfig = section(RunConfig)


def _base(cfg: ZeroConfig, resume: bool) -> Path:
    folder = Path(cfg.base)
    if (folder / "config.json").is_file():
        return folder
    if Path(cfg.base) != Path(DEFAULT_BASE):
        raise UserError(f"{folder}: base model not found")
    from r1lab.stages.pretrain import run_pretrain_stage

    print(f"zero: no base at {folder}; building it with r1lab pretrain")
    pretrain_run = Path(cfg.pretrain.run.output_dir) / (cfg.pretrain.run.name or "pretrain")
    # zero evaluates the base right after, more thoroughly: pretrain's own check is skipped
    quiet = replace(cfg.pretrain, eval=replace(cfg.pretrain.eval, problems=0))
    summary = run_pretrain_stage(quiet, resume=resume or pretrain_run.exists())
    built = Path(summary["model"])
    if built.resolve() != folder.resolve():
        raise UserError(f"zero: pretrain wrote the base to {built}, not {folder}; set base={built}")
    return folder


def run_zero(cfg: ZeroConfig, resume: bool = False) -> dict[str, Any]:
    """Run the R1-Zero path end to end; returns the summary (also ``summary.json``)."""
    from r1lab.data.tasks import load_task
    from r1lab.model_card import card, world_of
    from r1lab.models import load_model, load_tokenizer
    from r1lab.runs import save_model_atomic, seed_everything
    from r1lab.training.grpo import train_grpo
    from r1lab.training.report import write_report

    started = time.time()
    grpo_cfg = GRPOStageConfig(
        model=cfg.base, task=cfg.task, grpo=cfg.grpo, loss=cfg.loss, rewards=cfg.rewards,
        run=cfg.run,
    )  # fmt: skip
    # Checked before anything is built or written: a bad start leaves no folder behind.
    check_stage(grpo_cfg)
    load_task(cfg.task)
    load_task(cfg.eval.task)
    base = _base(cfg, resume)
    model = load_model(base)
    tokenizer = load_tokenizer(base)
    world = world_of(card(model))  # the base's world: its held-out split is the one left out
    problems, heldout = load_task(cfg.task, world), load_task(cfg.eval.task, world)
    run = Run.create(cfg.run, "zero", cfg, resume=resume)
    seed_everything(cfg.run.seed)

    e = cfg.eval
    base_eval = evaluate_heldout(
        model, tokenizer, heldout, e, e.task, run.path / "base_eval.json", str(base), e.k
    )
    grpo_cfg.model = str(base)
    seed_everything(cfg.run.seed)
    train = train_grpo(model, tokenizer, problems, grpo_cfg, run, resume=resume)
    final = save_model_atomic(model, tokenizer, run.path / "final")
    final_eval = evaluate_heldout(
        model, tokenizer, heldout, e, e.task, run.path / "final_eval.json", str(final), e.final_k
    )

    b, f = base_eval["metrics"], final_eval["metrics"]
    table = compare_table(b, f)
    summary = {
        "stage": "zero",
        **headline(b, f),
        "base_model": str(base),
        "model": str(final),
        "grpo": train,
        "minutes": round((time.time() - started) / 60, 2),
        "config": to_dict(cfg),
    }
    run.write_summary(summary)
    intro = [
        "## Held-out evaluation",
        "",
        f"{b['problems']} problems of {base_eval['task']}, the same before and after, each "
        f"decoded greedily and sampled at T={cfg.eval.temperature} ({b['k']} samples for the "
        f"base, {f['k']} for the final model).",
        "",
        table,
        "",
    ]
    report = write_report(run, summary, "R1-Zero: pure RL on the embedded base", sections=intro)
    print(f"\nR1-Zero on {b['problems']} problems of {base_eval['task']}\n{table}")
    print(f"zero: model in {final}, report {report} ({summary['minutes']:.1f} min)")
    return summary
