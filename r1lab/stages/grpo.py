"""``r1lab grpo``: the GRPO stage runner over :func:`r1lab.training.grpo.train_grpo`.

Load the model (``model=auto``: the task's embedded base, built when missing) and the task,
evaluate the task's held-out split when it has one, train, save ``runs/<name>/final``,
evaluate again and report both side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from r1lab.config import to_dict
from r1lab.data.tasks import load_task
from r1lab.errors import UserError
from r1lab.model_card import folder_card, world_of
from r1lab.runs import Run
from r1lab.training.grpo import train_grpo
from r1lab.training.grpo_config import AUTO_MODEL, GRPOStageConfig, check_stage

__all__ = ["resolve_model", "run_grpo_stage"]


def run_grpo_stage(cfg: GRPOStageConfig, resume: bool = False) -> dict[str, Any]:
    """Load the model and the task, evaluate the held-out split (when the task has one),
    train, save ``runs/<name>/final``, evaluate again, write the summary and the report;
    returns the summary."""
    from r1lab.eval.heldout import compare_table, evaluate_heldout, headline, heldout_task
    from r1lab.models import load_model, load_tokenizer
    from r1lab.rewards.config import check_rewards_fit
    from r1lab.rollout.config import make_engine
    from r1lab.runs import save_model_atomic, seed_everything
    from r1lab.training.report import write_report

    # Everything is checked and loaded before the run folder is made: a bad start leaves none.
    check_stage(cfg)
    # a bad data file, or a code reward on a task without tests, is refused before any base is built
    check_rewards_fit(cfg.rewards, load_task(cfg.task))
    start = resolve_model(cfg)
    world = world_of(folder_card(start))
    problems = load_task(cfg.task, world)
    if not problems:
        raise UserError(f"task '{cfg.task.name}' has no problems")
    held = heldout_task(cfg.task, cfg.heldout.problems)
    heldout = load_task(held, world) if held else []
    model = load_model(start)
    tokenizer = load_tokenizer(cfg.tokenizer or start)
    run = Run.create(cfg.run, "grpo", cfg, resume=resume)
    seed_everything(cfg.run.seed)

    def evaluate(name: str, label: str) -> dict[str, Any]:
        out = run.path / f"{name}_eval.json"
        assert held is not None
        return evaluate_heldout(model, tokenizer, heldout, cfg.heldout, held, out, label)["metrics"]

    base_eval = evaluate("base", str(start)) if heldout else None
    seed_everything(cfg.run.seed)
    engine = make_engine(cfg.rollout, model, tokenizer, start)
    summary = train_grpo(model, tokenizer, problems, cfg, run, resume=resume, engine=engine)
    final = save_model_atomic(model, tokenizer, run.path / "final")
    summary = {**summary, "model": str(final), "base_model": str(start)}
    sections: list[str] = []
    if base_eval is not None:
        final_eval = evaluate("final", str(final))
        table = compare_table(base_eval, final_eval)
        summary["heldout"] = headline(base_eval, final_eval)
        sections = [
            "## Held-out evaluation",
            "",
            f"{base_eval['problems']} held-out problems of {cfg.task.name}, the same before "
            f"and after, decoded greedily and sampled {cfg.heldout.k}x at "
            f"T={cfg.heldout.temperature}.",
            "",
            table,
            "",
        ]
        print(f"\nheld-out {cfg.task.name}, {base_eval['problems']} problems\n{table}")
    summary["config"] = to_dict(cfg)
    run.write_summary(summary)
    title = f"GRPO: {Path(start).name} on {cfg.task.name}"
    report = write_report(run, summary, title=title, sections=sections)
    print(f"grpo: model in {final}, report {report}")
    return summary


def resolve_model(cfg: GRPOStageConfig) -> Path:
    """The model to start from: ``cfg.model``, or for ``auto`` the task's embedded base
    (built when missing)."""
    from r1lab.models import check_model_dir

    if cfg.model != AUTO_MODEL:
        return check_model_dir(cfg.model)
    from r1lab.stages.pretrain import embedded_base

    return embedded_base("code" if cfg.task.name == "embedded-code" else "math")
