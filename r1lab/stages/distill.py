"""``r1lab distill``: the final model's reasoning, taught to a smaller student by SFT; and the
same student trained by pure RL instead, for the same wall-clock time (report §0 and §1).

The report's finding: distilling R1's reasoning into small models beats running R1-Zero's RL
on them. With no arguments:

1. the student base: the default (``runs/student/final``) is a smaller model of the embedded
   world (``student_pretrain``: ``r1lab pretrain`` with a narrower, shallower model), built
   when missing; any Hugging Face folder works whose tokenizer equals the teacher's;
2. **distillation**: the teacher (R1) samples ``sampling.k`` traces per training prompt,
   rejection-sampled as in stage C (correct by rule or judge, readable, one language, no
   repetition, deduplicated, ``per_prompt`` a prompt), and the student is SFT'd on them;
3. **the RL baseline** (``rl_baseline``): the same student base trained by R1-Zero's GRPO
   (accuracy + format) for as long as step 2 took, sampling and SFT together;
4. the student base, the distilled and the RL student are evaluated on the held-out problems.

``runs/distill/`` gets the teacher's samples, ``sft.jsonl``, the runs ``sft/`` and ``rl/``,
their evaluations under ``eval/`` and ``summary.json`` (``distilled_greedy_pass@1``,
``rl_greedy_pass@1``, the gap, the seconds each had).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from r1lab.config import at_least, option, section, to_dict
from r1lab.data.filters import FilterConfig
from r1lab.data.tasks import TaskConfig
from r1lab.errors import UserError
from r1lab.judge.client import JudgeConfig
from r1lab.judge.oracle import OracleConfig
from r1lab.rewards.config import RewardsConfig
from r1lab.runs import RunConfig
from r1lab.stages.pretrain import PretrainStageConfig
from r1lab.stages.sampling import SamplingConfig
from r1lab.stages.zero import ZeroEvalConfig
from r1lab.training.grpo_config import GRPOConfig
from r1lab.training.losses import GRPOLossConfig
from r1lab.training.sft import SFTConfig
from r1lab.world.model import TinyModelConfig

__all__ = ["DistillConfig", "check_tokenizers", "run_distill"]

DEFAULT_TEACHER = "runs/pipeline/stage-d/final"
DEFAULT_STUDENT = "runs/student/final"


@dataclass
class DistillConfig:
    """``r1lab distill``: teacher traces → rejection sampling → SFT of a smaller student; and
    the same student by RL alone, for the same time."""

    teacher: str = option(DEFAULT_TEACHER, "the model whose traces are distilled (R1)")
    student: str = option(
        DEFAULT_STUDENT,
        "student base folder: smaller than the teacher, its tokenizer equal to the teacher's; "
        "when it is missing and is where student_pretrain writes (the default), it is built",
        report="Qwen2.5 / Llama 3 bases of 1.5B to 70B",
    )
    student_pretrain: PretrainStageConfig = section(
        PretrainStageConfig,
        model=TinyModelConfig(hidden_size=64, num_layers=3, num_heads=2, num_kv_heads=1,
                              intermediate_size=256),
        run=RunConfig(name="student"),
    )  # fmt: skip
    task: TaskConfig = section(TaskConfig, split="train", limit=1024, seed=3)
    sampling: SamplingConfig = section(SamplingConfig)
    filters: FilterConfig = section(FilterConfig)
    per_prompt: int = option(
        2, "kept traces per prompt at most", report="several", check=at_least(1)
    )
    sft: SFTConfig = section(SFTConfig, lr_max=5e-4, lr_min=5e-5, epochs=3, token_budget=384)
    rl_baseline: bool = option(
        True,
        "also train the student base by R1-Zero RL for the wall-clock time distillation took",
    )
    rl: GRPOConfig = section(GRPOConfig, steps=1000)
    rl_loss: GRPOLossConfig = section(GRPOLossConfig)
    rl_rewards: RewardsConfig = section(RewardsConfig)
    eval: ZeroEvalConfig = section(ZeroEvalConfig)
    judge: JudgeConfig = section(JudgeConfig)
    oracle: OracleConfig = section(OracleConfig)
    run: RunConfig = section(RunConfig)


def check_tokenizers(teacher: Any, student: Any, where: str) -> None:
    """Refuse a student whose tokenizer differs from the teacher's (vocabulary, special
    tokens, chat template): the traces are the teacher's text as its tokenizer reads it."""
    tv, sv = teacher.get_vocab(), student.get_vocab()
    differs = []
    if tv != sv:
        differs.append(
            f"vocabularies of {len(tv)} and {len(sv)} tokens, {len(set(tv) ^ set(sv))} differing"
        )
    for attr in ("eos_token", "pad_token", "chat_template"):
        if getattr(teacher, attr, None) != getattr(student, attr, None):
            differs.append(attr)
    if differs:
        raise UserError(
            f"{where}: the student's tokenizer is not the teacher's ({'; '.join(differs)}); "
            "give a student with the teacher's tokenizer"
        )


def _student(cfg: DistillConfig, resume: bool) -> Path:
    """The student folder; built with ``student_pretrain`` when it is missing and is where
    that pretraining writes its model."""
    folder = Path(cfg.student)
    if (folder / "config.json").is_file():
        return folder
    p = cfg.student_pretrain
    run_dir = Path(p.run.output_dir) / (p.run.name or "pretrain")
    if folder.resolve() != (run_dir / "final").resolve():
        raise UserError(f"{folder}: no student model there")
    from r1lab.stages.pretrain import run_pretrain_stage

    print(f"distill: no student at {folder}; building it with r1lab pretrain")
    run_pretrain_stage(replace(p, eval=replace(p.eval, problems=0)),
                       resume=resume or run_dir.exists())  # fmt: skip
    return folder


def _timed(path: Path, work: Any) -> tuple[Any, float]:
    """Run ``work()`` once and remember how long it took in ``path``; a rerun reads it back."""
    from r1lab.runs import write_json_atomic

    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        return saved["result"], saved["seconds"]
    t0 = time.time()
    result = work()
    seconds = time.time() - t0
    write_json_atomic(path, {"result": result, "seconds": seconds})
    return result, seconds


def run_distill(cfg: DistillConfig, resume: bool = False) -> dict[str, Any]:
    """Distil the teacher into the student, train the RL baseline, evaluate; returns the
    summary (also ``summary.json``)."""
    from r1lab.config import save_config, validate
    from r1lab.data.io import write_jsonl
    from r1lab.data.tasks import load_task
    from r1lab.eval.evaluate import EvalConfig, evaluate_cached
    from r1lab.eval.heldout import HeldoutConfig
    from r1lab.judge.session import judge_session
    from r1lab.model_card import card, world_of
    from r1lab.models import load_model, load_tokenizer
    from r1lab.runs import Run
    from r1lab.stages.grpo import run_grpo_stage
    from r1lab.stages.sample import reasoning_examples
    from r1lab.stages.sampling import check_model, sample_problems
    from r1lab.training.grpo_config import GRPOStageConfig, check_stage
    from r1lab.training.sft import SFTDataConfig, SFTStageConfig, run_sft_stage

    started = time.time()
    validate(cfg)
    # no held-out evaluation inside: the comparison below evaluates both students alike
    rl_cfg = GRPOStageConfig(task=cfg.task, grpo=cfg.rl, loss=cfg.rl_loss, rewards=cfg.rl_rewards,
                             heldout=HeldoutConfig(problems=0))  # fmt: skip
    if cfg.rl_baseline:
        check_stage(rl_cfg)
    teacher_dir = check_model(cfg.teacher, "the teacher: run r1lab pipeline, or set teacher=")
    load_task(cfg.task)
    student_dir = _student(cfg, resume)
    teacher_tok, student_tok = load_tokenizer(teacher_dir), load_tokenizer(student_dir)
    check_tokenizers(teacher_tok, student_tok, str(student_dir))
    teacher = load_model(teacher_dir)
    problems = load_task(cfg.task, world_of(card(teacher)))
    run = Run.create(cfg.run, "distill", cfg, resume=resume)
    if resume:
        save_config(cfg, run.path / "config.yaml")
    out = run.path

    # distillation: the teacher's traces, rejection-sampled, then SFT of the student
    def sample_and_filter() -> dict[str, Any]:
        records = sample_problems(teacher, teacher_tok, problems, cfg.task, cfg.sampling,
                                  out / "samples.json", str(teacher_dir))  # fmt: skip
        languages = {p.id: p.meta.get("language", "en") for p in problems}
        with judge_session(cfg.judge, cfg.oracle, out / "judge_cache.sqlite") as judge:
            examples, funnel = reasoning_examples(records, languages, cfg, judge)  # type: ignore[arg-type]
        write_jsonl(out / "sft.jsonl", examples)
        return {"examples": len(examples), "funnel": funnel.counts()}

    data, sample_seconds = _timed(out / "sampling.json", sample_and_filter)
    if not data["examples"]:
        raise UserError(f"distill: no teacher trace passed the filters ({data['funnel']})")
    sft_run = RunConfig(name="sft", output_dir=str(out), seed=cfg.run.seed,
                        save_every=cfg.run.save_every, trackers=cfg.run.trackers,
                        project=cfg.run.project)  # fmt: skip
    sft_stage = SFTStageConfig(model=str(student_dir), data=SFTDataConfig(path=str(out / "sft.jsonl")),
                               sft=cfg.sft, run=sft_run)  # fmt: skip
    sft, sft_seconds = _timed(
        out / "sft_time.json", lambda: run_sft_stage(sft_stage, resume=(out / "sft").exists())
    )
    budget = sample_seconds + sft_seconds

    # the RL baseline: the same student, R1-Zero's RL, the same wall-clock budget
    rl = None
    if cfg.rl_baseline:
        rl_cfg = replace(
            rl_cfg, model=str(student_dir), grpo=replace(cfg.rl, max_minutes=budget / 60),
            run=RunConfig(name="rl", output_dir=str(out), seed=cfg.run.seed,
                          save_every=cfg.run.save_every, trackers=cfg.run.trackers,
                          project=cfg.run.project),
        )  # fmt: skip
        rl, _ = _timed(out / "rl_time.json",
                       lambda: run_grpo_stage(rl_cfg, resume=(out / "rl").exists()))  # fmt: skip

    # the held-out evaluation of the student base and both students
    e = cfg.eval
    ecfg = EvalConfig(task=e.task, k=e.final_k, greedy=e.greedy, temperature=e.temperature,
                      top_p=e.top_p, max_new_tokens=e.max_new_tokens, batch_size=e.batch_size,
                      seed=e.seed)  # fmt: skip
    heldout = load_task(e.task, world_of(card(teacher)))
    evals = {}
    students = {"student base": str(student_dir), "distilled": sft["model"]}
    if rl is not None:
        students["RL"] = rl["model"]
    for label, folder in students.items():
        model, tok = load_model(folder), load_tokenizer(folder)
        name = label.replace(" ", "-")
        evals[label] = evaluate_cached(model, tok, heldout, replace(ecfg, model=folder),
                                       out / "eval" / f"{name}.json")["metrics"]  # fmt: skip
    greedy = {k: v.get("greedy_pass@1") for k, v in evals.items()}
    summary = {
        "stage": "distill",
        "teacher": str(teacher_dir),
        "student": str(student_dir),
        "examples": data["examples"],
        "funnel": data["funnel"],
        "distill_seconds": round(budget, 1),
        "rl_seconds": None if rl is None else rl.get("seconds"),
        "rl_steps": None if rl is None else rl.get("steps"),
        "eval": evals,
        "distilled_greedy_pass@1": greedy["distilled"],
        "rl_greedy_pass@1": greedy.get("RL"),
        "student_greedy_pass@1": greedy["student base"],
        "gap_greedy_pass@1": None if rl is None else round(greedy["distilled"] - greedy["RL"], 4),
        "model": sft["model"],
        "minutes": round((time.time() - started) / 60, 2),
        "config": to_dict(cfg),
    }
    run.write_summary(summary)
    run.close()
    rows = "\n".join(f"  {k:<13} greedy pass@1 {v['greedy_pass@1']:.3f}  pass@1 {v['pass@1']:.3f}"
                     for k, v in evals.items())  # fmt: skip
    print(f"distill: {data['examples']} teacher traces, {budget:.0f} s for sampling + SFT\n{rows}")
    return summary
