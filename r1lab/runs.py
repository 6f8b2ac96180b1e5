"""Run folders: ``runs/<name>/`` with config, metrics, checkpoints and summary.

A checkpoint is written under ``checkpoints/.tmp-step-N`` and renamed to ``step-N`` only when
every file is on disk, so a crash never leaves a half-written checkpoint that ``--resume``
could pick up.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from r1lab.config import option, save_config
from r1lab.errors import UserError

_STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class RunConfig:
    """Where a run writes and how often it checkpoints."""

    name: str = option(
        "", "run name; the run folder is <output_dir>/<name> (empty: the stage's name)"
    )
    output_dir: str = option("runs", "parent folder of run folders")
    seed: int = option(0, "seed for torch, numpy and python random")
    save_every: int = option(0, "checkpoint every N optimizer steps (0: only at the end)")
    keep_last: int = option(2, "checkpoints kept on disk (older ones are deleted)")
    overwrite: bool = option(
        False, "allow writing into a run folder that already holds a finished run"
    )


class Run:
    """An open run folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"

    @classmethod
    def create(cls, cfg: RunConfig, default_name: str, config: Any, resume: bool = False) -> Run:
        run = cls(Path(cfg.output_dir) / (cfg.name or default_name))
        if run.path.exists() and any(run.path.iterdir()) and not resume and not cfg.overwrite:
            raise UserError(
                f"{run.path}: run folder exists; pass --resume to continue it, "
                f"run.overwrite=true to replace it, or run.name=<new> for a new one"
            )
        if run.path.exists() and cfg.overwrite and not resume:
            shutil.rmtree(run.path)
        run.path.mkdir(parents=True, exist_ok=True)
        save_config(config, run.path / "config.yaml")
        return run

    # --- metrics -----------------------------------------------------------------------------
    def log(self, record: dict[str, Any]) -> None:
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")

    def metrics(self) -> list[dict[str, Any]]:
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, after_step: int) -> None:
        """Drop metric lines past ``after_step`` (written after the checkpoint we resume from)."""
        kept = [m for m in self.metrics() if m.get("step", 0) <= after_step]
        tmp = self.path / "metrics.jsonl.tmp"
        tmp.write_text("".join(json.dumps(m, ensure_ascii=False) + "\n" for m in kept))
        os.replace(tmp, self.path / "metrics.jsonl")

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.path / "summary.json", summary)

    # --- checkpoints -------------------------------------------------------------------------
    def latest_checkpoint(self) -> Path | None:
        return latest_checkpoint(self.checkpoints)

    def restore(self, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
        """Continue from the latest complete checkpoint: its weights, optimizer, scheduler and
        RNG state go into the live objects, the metric lines logged after it are dropped (they
        will be logged again), and its saved ``state`` (``step``, …) is returned; ``{}`` and
        no metrics kept when there is no checkpoint yet."""
        checkpoint = self.latest_checkpoint()
        state: dict[str, Any] = {}
        if checkpoint is not None:
            load_weights(model, checkpoint)
            saved = load_trainer_state(checkpoint)
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            set_rng_state(saved["rng"])
            state = saved["state"]
        self.truncate_metrics(int(state.get("step", 0)))
        return state

    def save_checkpoint(
        self,
        step: int,
        model: Any,
        tokenizer: Any,
        optimizer: Any = None,
        scheduler: Any = None,
        state: dict | None = None,
        keep_last: int = 2,
    ) -> Path:
        """Model (safetensors) + tokenizer + optimizer/scheduler/RNG/trainer state, atomically."""
        final = self.checkpoints / f"step-{step}"
        tmp = self.checkpoints / f".tmp-step-{step}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        save_model(model, tokenizer, tmp)
        extra = {"rng": rng_state(), "state": state or {}}
        if optimizer is not None:
            extra["optimizer"] = optimizer.state_dict()
        if scheduler is not None:
            extra["scheduler"] = scheduler.state_dict()
        torch.save(extra, tmp / "trainer_state.pt")
        write_json_atomic(tmp / "trainer_state.json", {"step": step, **(state or {})})
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(self.checkpoints)
        self._prune(keep_last)
        return final

    def _prune(self, keep_last: int) -> None:
        if keep_last <= 0:
            return
        steps = sorted(_checkpoint_steps(self.checkpoints))
        for s in steps[:-keep_last]:
            shutil.rmtree(self.checkpoints / f"step-{s}", ignore_errors=True)


def _checkpoint_steps(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    return [
        int(m.group(1)) for p in folder.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))
    ]


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete ``step-N`` folder (temporary ``.tmp-*`` folders are ignored)."""
    steps = _checkpoint_steps(folder)
    return folder / f"step-{max(steps)}" if steps else None


def load_trainer_state(checkpoint: Path) -> dict[str, Any]:
    return torch.load(checkpoint / "trainer_state.pt", weights_only=False)


def load_weights(model: torch.nn.Module, folder: str | Path) -> None:
    """Load a Hugging Face folder's safetensors weights into ``model`` in place.

    Keys missing from the files are accepted only where the model ties them to a loaded
    parameter (``save_pretrained`` writes tied embeddings once).
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    state: dict[str, torch.Tensor] = {}
    for name in files:
        state.update(load_file(folder / name))
    missing, unexpected = model.load_state_dict(state, strict=False)
    params = dict(model.named_parameters(remove_duplicate=False))
    loaded = {id(params[k]) for k in state if k in params}
    untied = [k for k in missing if k not in params or id(params[k]) not in loaded]
    if unexpected or untied:
        raise UserError(
            f"{folder}: weights do not fit the model (missing {untied[:3]}, unexpected {unexpected[:3]})"
        )


def save_model(model: Any, tokenizer: Any, folder: Path) -> None:
    """A Hugging Face folder that plain ``from_pretrained`` loads (safetensors weights)."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)


def save_model_atomic(model: Any, tokenizer: Any, folder: str | Path) -> Path:
    """Write a model folder under a temporary name and rename it into place when complete."""
    folder = Path(folder)
    tmp = folder.parent / f".tmp-{folder.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_model(model, tokenizer, tmp)
    _fsync_dir(tmp)
    if folder.exists():
        shutil.rmtree(folder)
    os.rename(tmp, folder)
    return folder


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _fsync_dir(folder: Path) -> None:
    for p in folder.iterdir():
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
