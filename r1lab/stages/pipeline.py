"""``r1lab pipeline``: the R1 recipe as named stages, each in its own run folder, one report.

::

    pretrain ─► zero (R1-Zero: GRPO, accuracy + format)
                 └► coldstart (R1-Zero samples → filters → judge rewrite)
    base ─(A: SFT on cold start)─► Dev-1 ─(B: GRPO + language)─► Dev-2
                 └► sample (rejection sampling + general data)
    base ─(C: SFT on the mixture)─► Dev-3
                 └► prefs (Dev-3 candidates → judged 4×, A/B swapped → Δ > 1 → similar lengths)
                     └► rm-helpfulness, rm-safety (reward models from Dev-3)
    Dev-3 ─(D: GRPO, rules + RMs, RM rewards in the last part only)─► R1
    R1 ─(distill: traces → rejection sampling → SFT of a smaller student)─► student
         (and the same student by R1-Zero RL alone, for the same time)

Every stage writes ``<output_dir>/<stage>/`` and, once it and the evaluation of its model are
done, a line in ``<output_dir>/pipeline.json``. A rerun skips the stages listed there and
resumes an interrupted one from its checkpoint (training stages checkpoint every
``save_every`` steps and restore weights, optimizer, schedule and RNG; data stages reuse
their samples and the judge's reply cache), so a run killed anywhere finishes with the
figures of an uninterrupted one.

Each model is evaluated on the held-out problems of ``zero.eval`` (greedy and sampled
pass@1, language consistency, length, reflection) and on held-out general prompts
(:mod:`r1lab.eval.general`: judge helpfulness, refusals of unsafe prompts, chains of thought
on greetings); ``report.md`` and ``report.png`` put every stage side by side.

The judge of the data stages and of the evaluation is the pipeline's ``judge`` (with
``judge.base_url`` empty, the oracle judge of ``oracle``, started and stopped here); it
replaces the ``judge`` and ``oracle`` sections of ``coldstart`` and ``sample``, as the run
folders of all stages replace their ``run`` sections.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from r1lab.config import at_least, option, section, to_dict
from r1lab.data.tasks import TaskConfig
from r1lab.errors import UserError
from r1lab.eval.heldout import HeldoutConfig
from r1lab.judge.client import JudgeConfig
from r1lab.judge.oracle import OracleConfig
from r1lab.rewards.config import RewardsConfig
from r1lab.runs import RunConfig
from r1lab.stages.coldstart import ColdStartConfig
from r1lab.stages.distill import DEFAULT_STUDENT, DistillConfig
from r1lab.stages.prefs import PrefsConfig
from r1lab.stages.sample import SampleConfig
from r1lab.stages.zero import ZeroConfig
from r1lab.tracking.trackers import tracker_names
from r1lab.training.grpo_config import GRPOConfig
from r1lab.training.losses import GRPOLossConfig
from r1lab.training.rm import RMTrainConfig
from r1lab.training.sft import SFTConfig

__all__ = ["STAGES", "PipelineConfig", "run_pipeline"]

STAGES = ("pretrain", "zero", "coldstart", "stage-a", "stage-b", "sample", "stage-c", "prefs",
          "rm-helpfulness", "rm-safety", "stage-d", "distill")  # fmt: skip
# The models the report compares, by the stage after which they are evaluated (the base with
# R1-Zero: zero evaluates both on the same problems).
EVALUATED = {"zero": ("base", "R1-Zero"), "stage-a": ("Dev-1",), "stage-b": ("Dev-2",),
             "stage-c": ("Dev-3",), "stage-d": ("R1",)}  # fmt: skip
# The reward models of stage D, by reward name.
REWARD_MODELS = {"helpfulness": "rm-helpfulness", "safety": "rm-safety"}
NO_HELDOUT = HeldoutConfig(problems=0)  # GRPO stages: the pipeline evaluates each model itself


@dataclass
class StageBConfig:
    """Stage B: GRPO from Dev-1 with accuracy, format and language consistency (report §7)."""

    task: TaskConfig = section(TaskConfig, split="train", limit=4096, seed=2)
    # Measured on the embedded world (docs/pipeline.md), from a Dev-1 of 240 cold-start
    # traces: 80 steps at 3e-5 gain +4.4 points greedy, 80 at 6e-5 +5.2, 160 at 6e-5 +7.6,
    # 200 at 6e-5 (the default, in the pipeline) +10.9; 1e-4 loses accuracy. The clip stays
    # at the tiny default 0.2 (the report's ε = 10 is for its 10k-step, 32k-token runs).
    grpo: GRPOConfig = section(GRPOConfig, steps=200, lr=6e-5)
    loss: GRPOLossConfig = section(GRPOLossConfig)
    rewards: RewardsConfig = section(
        RewardsConfig, weights={"accuracy": 1.0, "format": 1.0, "language": 1.0}
    )


@dataclass
class StageDConfig:
    """Stage D: GRPO from Dev-3 (report §9.3). Reasoning prompts get the rule rewards, general
    prompts the helpfulness reward model, every response safety, format and language
    consistency; the general prompts and the reward models' rewards come in only in the last
    400 of 1,700 steps (the report's v2: "general instruction data and preference-based
    rewards ... only in the final 400 steps"), scaled here to the same fraction."""

    task: TaskConfig = section(TaskConfig, split="train", limit=1024, seed=4, general=1024)
    # T = 0.7, as the reward models' candidates were sampled: the tiny Dev-3 at T = 1 writes
    # broken text for most general prompts, out of the reward models' reach
    grpo: GRPOConfig = section(
        GRPOConfig, steps=68, lr=3e-5, max_new_tokens=320, temperature=0.7,
        task_schedule={"general": [1300 / 1700, 1.0]},
    )  # fmt: skip
    loss: GRPOLossConfig = section(GRPOLossConfig)
    rewards: RewardsConfig = section(
        RewardsConfig,
        weights={"accuracy": 1.0, "format": 1.0, "language": 1.0, "helpfulness": 1.0,
                 "safety": 1.0},
        only={"accuracy": ["embedded"], "helpfulness": ["general"]},
        schedule={"helpfulness": [1300 / 1700, 1.0], "safety": [1300 / 1700, 1.0]},
    )  # fmt: skip


@dataclass
class GeneralEvalConfig:
    """The held-out general prompts every model answers (greedy)."""

    prompts: int = option(80, "held-out general prompts (20 % unsafe)", check=at_least(0))
    max_new_tokens: int = option(128, "response length limit", check=at_least(1))
    seed: int = option(0, "seed of the prompts' draw")


@dataclass
class PipelineConfig:
    """``r1lab pipeline``: pretrain → R1-Zero → cold start → A → B → rejection sampling → C →
    preference data → reward models → D → distillation."""

    output_dir: str = option("runs/pipeline", "parent folder of the stages' run folders")
    until: str = option(
        "", f"stop after this stage (one of {', '.join(STAGES)}; empty: run them all)"
    )
    save_every: int = option(
        4,
        "training stages checkpoint every N steps, so that an interrupted stage resumes",
        check=at_least(1),
    )
    seed: int = option(0, "seed of every stage")
    trackers: list[str] = option(
        [],
        "trackers every stage's metrics lines also go to, as a stage's run.trackers",
        check=tracker_names(),
    )
    project: str = option("r1lab", "the wandb / trackio project of the stages' runs")
    zero: ZeroConfig = section(ZeroConfig)
    # A cold start small next to the RL that follows, as in the report (thousands of traces
    # before 10k RL steps): about 240 traces from 288 prompts, 3 epochs
    coldstart: ColdStartConfig = section(ColdStartConfig, task=TaskConfig(split="train", limit=288))
    stage_a: SFTConfig = section(SFTConfig, lr_max=2e-4, lr_min=2e-5, epochs=3, token_budget=384)
    stage_b: StageBConfig = section(StageBConfig)
    sample: SampleConfig = section(SampleConfig)
    stage_c: SFTConfig = section(SFTConfig, lr_max=2e-4, lr_min=2e-5, epochs=2, token_budget=384)
    prefs: PrefsConfig = section(PrefsConfig)
    rm_helpfulness: RMTrainConfig = section(RMTrainConfig)
    # six times the examples of the pairs (every candidate is labelled): fewer, larger steps
    rm_safety: RMTrainConfig = section(RMTrainConfig, batch_size=16, lr=2e-4, epochs=4)
    stage_d: StageDConfig = section(StageDConfig)
    distill: DistillConfig = section(DistillConfig)
    general_eval: GeneralEvalConfig = section(GeneralEvalConfig)
    judge: JudgeConfig = section(JudgeConfig)
    oracle: OracleConfig = section(OracleConfig)


class _State:
    """``pipeline.json``: the stages done, each with its result, written after each one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, Any] = {}
        if path.is_file():
            self.done = json.loads(path.read_text(encoding="utf-8")).get("stages", {})

    def finish(self, stage: str, result: dict[str, Any]) -> None:
        from r1lab.runs import write_json_atomic

        self.done[stage] = result
        write_json_atomic(self.path, {"stages": self.done})


def _run_cfg(cfg: PipelineConfig, stage: str, save_every: int = 0) -> RunConfig:
    return RunConfig(
        name=stage, output_dir=cfg.output_dir, seed=cfg.seed, save_every=save_every,
        trackers=cfg.trackers, project=cfg.project,
    )  # fmt: skip


def _resume(cfg: PipelineConfig, stage: str) -> bool:
    return (Path(cfg.output_dir) / stage).exists()


def _sft(cfg: PipelineConfig, stage: str, base: str, data: str, sft: SFTConfig) -> dict:
    from r1lab.training.sft import SFTDataConfig, SFTStageConfig, run_sft_stage

    stage_cfg = SFTStageConfig(
        model=base, data=SFTDataConfig(path=data), sft=sft,
        run=_run_cfg(cfg, stage, cfg.save_every),
    )  # fmt: skip
    return run_sft_stage(stage_cfg, resume=_resume(cfg, stage))


def _run(cfg: PipelineConfig, stage: str, done: dict[str, Any]) -> dict[str, Any]:
    """Run ``stage``; ``done`` holds the results of the stages before it."""
    out = Path(cfg.output_dir)
    base = str(out / "pretrain" / "final")
    if stage == "pretrain":
        from r1lab.stages.pretrain import run_pretrain_stage

        p = cfg.zero.pretrain
        quiet = replace(p, eval=replace(p.eval, problems=0), run=_run_cfg(cfg, stage))
        return run_pretrain_stage(quiet, resume=_resume(cfg, stage))
    if stage == "zero":
        from r1lab.stages.zero import run_zero

        zcfg = replace(cfg.zero, base=base, run=_run_cfg(cfg, stage, cfg.save_every))
        return run_zero(zcfg, resume=_resume(cfg, stage))
    if stage == "coldstart":
        from r1lab.stages.coldstart import run_coldstart

        ccfg = replace(
            cfg.coldstart, model=done["zero"]["model"], judge=cfg.judge, oracle=cfg.oracle,
            run=_run_cfg(cfg, stage),
        )  # fmt: skip
        return run_coldstart(ccfg, resume=_resume(cfg, stage))
    if stage == "stage-a":
        return _sft(cfg, stage, base, done["coldstart"]["data"], cfg.stage_a)
    if stage == "stage-b":
        from r1lab.stages.grpo import run_grpo_stage
        from r1lab.training.grpo_config import GRPOStageConfig

        b = cfg.stage_b
        gcfg = GRPOStageConfig(
            model=done["stage-a"]["model"], task=b.task, grpo=b.grpo, loss=b.loss,
            rewards=b.rewards, heldout=NO_HELDOUT, run=_run_cfg(cfg, stage, cfg.save_every),
        )  # fmt: skip
        return run_grpo_stage(gcfg, resume=_resume(cfg, stage))
    if stage == "sample":
        from r1lab.stages.sample import run_sample

        scfg = replace(
            cfg.sample, model=done["stage-b"]["model"], judge=cfg.judge, oracle=cfg.oracle,
            run=_run_cfg(cfg, stage),
        )  # fmt: skip
        return run_sample(scfg, resume=_resume(cfg, stage))
    if stage == "stage-c":
        return _sft(cfg, stage, base, done["sample"]["data"], cfg.stage_c)
    if stage == "prefs":
        from r1lab.stages.prefs import run_prefs

        pcfg = replace(
            cfg.prefs, model=done["stage-c"]["model"], judge=cfg.judge, oracle=cfg.oracle,
            run=_run_cfg(cfg, stage),
        )  # fmt: skip
        return run_prefs(pcfg, resume=_resume(cfg, stage))
    if stage in ("rm-helpfulness", "rm-safety"):
        from r1lab.stages.rm import RMStageConfig, run_rm

        kind = stage.removeprefix("rm-")
        prefs = done["prefs"]
        data, heldout = (("data", "heldout") if kind == "helpfulness"
                         else ("safety", "safety_heldout"))  # fmt: skip
        rcfg = RMStageConfig(
            kind=kind, model=done["stage-c"]["model"], data=prefs[data], heldout=prefs[heldout],
            train=cfg.rm_helpfulness if kind == "helpfulness" else cfg.rm_safety,
            run=_run_cfg(cfg, stage, cfg.save_every),
        )  # fmt: skip
        return run_rm(rcfg, resume=_resume(cfg, stage))
    if stage == "stage-d":
        from r1lab.stages.grpo import run_grpo_stage

        return run_grpo_stage(_stage_d(cfg, done), resume=_resume(cfg, stage))
    if stage == "distill":
        from r1lab.stages.distill import run_distill

        student = cfg.distill.student_pretrain
        dcfg = replace(
            cfg.distill, teacher=done["stage-d"]["model"],
            student=str(out / "student" / "final") if cfg.distill.student == DEFAULT_STUDENT
            else cfg.distill.student,
            student_pretrain=replace(student, run=_run_cfg(cfg, "student")),
            judge=cfg.judge, oracle=cfg.oracle, run=_run_cfg(cfg, stage, cfg.save_every),
        )  # fmt: skip
        return run_distill(dcfg, resume=_resume(cfg, stage))
    raise AssertionError(stage)


def _stage_d(cfg: PipelineConfig, done: dict[str, Any]) -> Any:
    """Stage D's GRPO config: from Dev-3, with the pipeline's reward models."""
    from r1lab.training.grpo_config import GRPOStageConfig

    d, out = cfg.stage_d, Path(cfg.output_dir)
    models = {name: str(out / stage / "final") for name, stage in REWARD_MODELS.items()
              if name in d.rewards.weights}  # fmt: skip
    start = done.get("stage-c", {}).get("model", str(out / "stage-c" / "final"))
    return GRPOStageConfig(
        model=start, task=d.task, grpo=d.grpo, loss=d.loss,
        rewards=replace(d.rewards, models=models), heldout=NO_HELDOUT,
        run=_run_cfg(cfg, "stage-d", cfg.save_every),
    )  # fmt: skip


def _evaluate(cfg: PipelineConfig, label: str, model_dir: str, zero_run: Path) -> dict:
    """Held-out reasoning and general metrics of one model, cached under ``eval/``."""
    from r1lab.data.tasks import load_task
    from r1lab.eval.evaluate import EvalConfig, evaluate_cached
    from r1lab.eval.general import evaluate_general
    from r1lab.judge.session import judge_session
    from r1lab.model_card import card, world_of
    from r1lab.models import load_model, load_tokenizer
    from r1lab.world.general import generate_general

    folder = Path(cfg.output_dir) / "eval"
    model = load_model(model_dir)
    tokenizer = load_tokenizer(model_dir)
    e = cfg.zero.eval
    # R1-Zero's own evaluation already holds the base and the R1-Zero columns
    reused = {"base": "base_eval.json", "R1-Zero": "final_eval.json"}.get(label)
    if reused:
        reasoning = json.loads((zero_run / reused).read_text(encoding="utf-8"))
    else:
        ecfg = EvalConfig(
            model=model_dir, task=e.task, k=e.final_k, greedy=e.greedy,
            temperature=e.temperature, top_p=e.top_p, max_new_tokens=e.max_new_tokens,
            batch_size=e.batch_size, seed=e.seed,
        )  # fmt: skip
        problems = load_task(e.task, world_of(card(model)))
        reasoning = evaluate_cached(model, tokenizer, problems, ecfg, folder / f"{label}.json")
    g = cfg.general_eval
    prompts = generate_general(g.prompts, g.seed, "heldout")
    with judge_session(cfg.judge, cfg.oracle, folder / "judge_cache.sqlite") as judge:
        general = evaluate_general(
            model, tokenizer, prompts, judge, folder / f"{label}.general.json", g.max_new_tokens
        )
    return {"model": model_dir, "reasoning": reasoning["metrics"], "general": general["metrics"]}


def _rm_scores(cfg: PipelineConfig, label: str) -> dict[str, float]:
    """The mean reward (normalised, in (0, 1)) of each of stage D's reward models on the
    greedy responses ``label`` gave to the held-out general prompts (its general evaluation)."""
    from r1lab.data.io import read_records
    from r1lab.inference.reward_model import load_reward_model

    out = Path(cfg.output_dir)
    records = read_records(out / "eval" / f"{label}.general.samples.jsonl")
    scores = {}
    for name, stage in REWARD_MODELS.items():
        rm = load_reward_model(out / stage / "final")
        values = rm.rewards([r["question"] for r in records], [r["text"] for r in records])
        scores[f"rm_{name}"] = round(sum(values) / max(len(values), 1), 4)
        unsafe = [v for v, r in zip(values, records, strict=True) if r["kind"] == "unsafe"]
        if name == "safety" and unsafe:
            scores["rm_safety_unsafe_prompts"] = round(sum(unsafe) / len(unsafe), 4)
    return scores


def run_pipeline(cfg: PipelineConfig, resume: bool = True) -> dict[str, Any]:
    """Run (or finish) the pipeline; returns the summary (also ``summary.json``). A pipeline
    always continues what its output folder holds, so ``resume`` (``--resume``) changes
    nothing; a fresh pipeline needs a new ``output_dir``."""
    from r1lab.runs import write_json_atomic
    from r1lab.stages.pipeline_report import write_pipeline_report
    from r1lab.training.grpo_config import GRPOStageConfig, check_stage

    if cfg.until and cfg.until not in STAGES:
        raise UserError(f"until: expected one of {', '.join(STAGES)}, got '{cfg.until}'")
    stages = STAGES[: STAGES.index(cfg.until) + 1] if cfg.until else STAGES
    # the GRPO stages' settings are checked before anything runs, not after minutes of it
    # (stage D's reward models are made on the way)
    for grpo in (cfg.zero, cfg.stage_b):
        check_stage(GRPOStageConfig(task=grpo.task, grpo=grpo.grpo, loss=grpo.loss,
                                    rewards=grpo.rewards))  # fmt: skip
    check_stage(_stage_d(cfg, {}), check_models=False)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = _State(out / "pipeline.json")
    began = time.time()
    # each stage shows its own bars (training steps, sampling, judging); this line says
    # where in the recipe it is, as a bar over stages of such different lengths could not
    for i, stage in enumerate(stages, 1):
        if stage in state.done:
            print(f"pipeline: {stage} is done ({out / stage}); skipped")
            continue
        print(
            f"pipeline: {stage} -> {out / stage} (stage {i} of {len(stages)}, "
            f"{(time.time() - began) / 60:.1f} min in)"
        )
        started = time.time()
        summary = _run(cfg, stage, state.done)
        result = {
            k: summary[k] for k in ("model", "data", "examples", "funnel", "judge") if k in summary
        }
        if stage.startswith("rm-"):
            result["metrics"] = {k: summary[k] for k in (
                "pairwise_accuracy", "safety_auc", "safety_accuracy") if k in summary}  # fmt: skip
        if stage == "prefs":
            result.update({k: summary[k] for k in ("heldout", "safety", "safety_heldout")})
            result["bias"] = summary["splits"]["train"]["bias"]
        for label in EVALUATED.get(stage, ()):
            model_dir = summary["base_model"] if label == "base" else summary["model"]
            result.setdefault("eval", {})[label] = _evaluate(cfg, label, model_dir, out / "zero")
        if stage == "stage-d":  # Dev-3 and R1 as stage D's reward models see them
            result["rm_scores"] = {label: _rm_scores(cfg, label) for label in ("Dev-3", "R1")}
        if stage == "distill":
            result["students"] = {k: summary[k] for k in (
                "student_greedy_pass@1", "distilled_greedy_pass@1", "rl_greedy_pass@1",
                "gap_greedy_pass@1", "distill_seconds", "rl_seconds", "rl_steps") if k in summary}  # fmt: skip
        result["minutes"] = round((time.time() - started) / 60, 2)
        state.finish(stage, result)
    summary = {
        "stages": state.done,
        "minutes": round(sum(s["minutes"] for s in state.done.values()), 2),
        "config": to_dict(cfg),
    }
    write_json_atomic(out / "summary.json", summary)
    report = write_pipeline_report(out, state.done)
    print(f"pipeline: report {report} ({summary['minutes']:.1f} min of stages)")
    return summary
