"""``r1lab rm``: train the helpfulness or the safety reward model (report §9.2).

With no arguments: build the embedded world's preference data (``r1lab prefs`` with the
oracle judge; reused when its run is complete), train the helpfulness reward model from the
policy that wrote the candidates (the report's reward models are the policy's architecture
with a reward head), evaluate it on the held-out pairs, and save ``runs/rm-helpfulness/final``,
a folder plain ``AutoModelForSequenceClassification.from_pretrained`` loads. ``kind=safety``
trains the safety model on the safe/unsafe verdicts instead.

``summary.json`` holds ``pairwise_accuracy`` (helpfulness) or ``safety_auc`` and
``safety_accuracy`` (safety) on the held-out data, and the training curve's ends.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1lab.config import one_of, option, section, to_dict
from r1lab.errors import UserError
from r1lab.runs import RunConfig
from r1lab.stages.prefs import PrefsConfig
from r1lab.training.rm import RMTrainConfig

__all__ = ["RMStageConfig", "run_rm"]

# per kind: the prefs summary's keys of the training and held-out files
_DATA = {"helpfulness": ("data", "heldout"), "safety": ("safety", "safety_heldout")}


@dataclass
class RMStageConfig:
    """``r1lab rm``: a reward model from a model folder and labelled data."""

    kind: str = option(
        "helpfulness",
        "helpfulness (pairs, Bradley-Terry loss, reads the answer part) or safety (labelled "
        "responses, point-wise loss, reads the whole response)",
        check=one_of("helpfulness", "safety"),
    )
    model: str = option(
        "", "model folder the reward model starts from (empty: the policy of prefs.model)"
    )
    data: str = option(
        "",
        "training file (JSONL/Parquet): prompt, chosen, rejected for helpfulness; prompt, "
        "response, safe for safety (empty: built by the prefs section)",
    )
    heldout: str = option(
        "", "held-out file of the same fields (empty: the prefs run's, when data is empty)"
    )
    prefs: PrefsConfig = section(PrefsConfig)
    train: RMTrainConfig = section(RMTrainConfig)
    run: RunConfig = section(RunConfig)


def _prefs_summary(cfg: PrefsConfig) -> dict[str, Any]:
    """The summary of the prefs run of ``cfg``: read back when that run finished, else run."""
    from r1lab.stages.prefs import run_prefs

    folder = Path(cfg.run.output_dir) / (cfg.run.name or "prefs")
    done = folder / "summary.json"
    if done.is_file():
        print(f"rm: using the preference data of {folder}")
        return json.loads(done.read_text(encoding="utf-8"))
    return run_prefs(cfg, resume=folder.exists())


def _read(path: str, kind: str) -> list[dict[str, Any]]:
    from r1lab.data.io import read_records
    from r1lab.training.rm import FIELDS, rm_rows

    return rm_rows(read_records(path, required=FIELDS[kind]), kind, path)


def load_rm_init(folder: str | Path) -> tuple[Any, Any]:
    """A causal LM folder (or a reward model) as a reward model with a fresh one-output head,
    and its tokenizer."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    from r1lab.models import check_model_dir, load_tokenizer

    path = check_model_dir(folder)
    hf_logging.disable_progress_bar()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "score.weight newly initialised" is the point here
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    except (OSError, ValueError) as e:
        raise UserError(
            f"{path}: cannot load as a reward model ({str(e).splitlines()[0]})"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, load_tokenizer(path)


def run_rm(cfg: RMStageConfig, resume: bool = False) -> dict[str, Any]:
    """Train, evaluate and save one reward model; returns the summary (also
    ``summary.json``)."""
    from r1lab.config import validate
    from r1lab.model_card import set_card
    from r1lab.runs import Run, save_model_atomic, seed_everything
    from r1lab.training.rm import evaluate_rm, train_rm

    started = time.time()
    validate(cfg)
    validate(cfg.train)
    if cfg.data:
        train_path, heldout_path = cfg.data, cfg.heldout
    else:
        prefs = _prefs_summary(cfg.prefs)
        train_path, heldout_path = (prefs[k] for k in _DATA[cfg.kind])
        heldout_path = cfg.heldout or heldout_path
    rows = _read(train_path, cfg.kind)
    heldout = _read(heldout_path, cfg.kind) if heldout_path else []
    init = cfg.model or cfg.prefs.model
    model, tokenizer = load_rm_init(init)
    run = Run.create(cfg.run, f"rm-{cfg.kind}", cfg, resume=resume)
    seed_everything(cfg.run.seed)
    train = train_rm(model, tokenizer, rows, cfg.kind, cfg.train, run, cfg.run, resume=resume)
    metrics = evaluate_rm(model, tokenizer, heldout, cfg.kind, cfg.train)
    set_card(
        model,
        reward_model={"kind": cfg.kind, "mean": train["score_mean"], "std": train["score_std"],
                      "max_length": cfg.train.max_length},
    )  # fmt: skip
    final = save_model_atomic(model, tokenizer, run.path / "final")
    summary = {
        "stage": "rm",
        "kind": cfg.kind,
        **{k: v for k, v in metrics.items() if k != "examples"},
        "heldout_examples": metrics["examples"],
        "train": train,
        "data": train_path,
        "heldout": heldout_path,
        "base_model": str(init),
        "model": str(final),
        "minutes": round((time.time() - started) / 60, 2),
        "config": to_dict(cfg),
    }
    run.write_summary(summary)
    run.close()
    shown = ", ".join(f"{k} {v}" for k, v in metrics.items() if k != "examples")
    print(f"rm ({cfg.kind}): {shown} on {metrics['examples']} held-out examples; model in {final}")
    return summary
