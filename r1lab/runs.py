"""Run folders: ``runs/<name>/`` with config, metrics, checkpoints and summary.

One process writes a run folder at a time: :meth:`Run.create` takes an exclusive ``flock``
on ``<run>/.lock`` and holds it for the life of the process, so the OS releases it when the
process ends however it ends (a SIGKILLed run can be resumed at once), and a second writer
(a plain start, ``--resume`` or ``run.overwrite``) is refused with the holder's PID.

A checkpoint is written under ``checkpoints/.tmp-step-N`` and renamed to ``step-N`` only when
every file is on disk, so a crash never leaves a half-written checkpoint that ``--resume``
could pick up.

Every metrics line also goes to the trackers ``run.trackers`` chooses (TensorBoard, wandb,
trackio: :mod:`r1lab.tracking.trackers`); they are closed with the summary.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import os
import random
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from r1lab.config import at_least, option, save_config, to_dict
from r1lab.errors import UserError
from r1lab.tracking.trackers import Trackers, tracker_names

_STEP_DIR = re.compile(r"^step-(\d+)$")
LOCK = ".lock"
LOGS = ("metrics.jsonl", "samples.jsonl")  # per-step logs, cut back to the step resumed from
_HELD: dict[Path, int] = {}  # run folder -> the descriptor of the lock this process holds


@dataclass
class RunConfig:
    """Where a run writes and how often it checkpoints."""

    name: str = option(
        "", "run name; the run folder is <output_dir>/<name> (empty: the stage's name)"
    )
    output_dir: str = option("runs", "parent folder of run folders")
    seed: int = option(0, "seed for torch, numpy and python random")
    save_every: int = option(
        0, "checkpoint every N optimizer steps (0: only at the end)", check=at_least(0)
    )
    keep_last: int = option(
        2, "checkpoints kept on disk (older ones are deleted)", check=at_least(0)
    )
    overwrite: bool = option(
        False, "allow writing into a run folder that already holds a finished run"
    )
    trackers: list[str] = option(
        [],
        "also send every metrics line to these trackers: tensorboard (<run folder>/tensorboard), "
        "wandb (offline unless WANDB_MODE is set), trackio (local); pip install 'r1lab[track]'",
        check=tracker_names(),
    )
    project: str = option("r1lab", "the wandb / trackio project; the run is named after its folder")


class Run:
    """An open run folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self._lock: int | None = None
        self._config: Any = None  # written by restore() once the checkpoint agrees with it
        self.trackers = Trackers([], self.path, "")  # Run.create sets the chosen ones

    @classmethod
    def create(cls, cfg: RunConfig, default_name: str, config: Any, resume: bool = False) -> Run:
        """Open (and lock) the run folder for writing: a new one, the one to resume, or a
        finished one to replace with ``run.overwrite``. Call it only once the stage's config,
        data and model are checked: it is the first thing a stage writes.

        With ``resume`` the config is written by :meth:`restore`, after the checkpoint was
        found to agree with it, so a refused resume leaves the folder as it was."""
        run = cls(Path(cfg.output_dir) / (cfg.name or default_name))
        # checked (known, installed) before the folder is made; opened at the first line
        run.trackers = Trackers(cfg.trackers, run.path, cfg.project, _plain(config))
        run.path.mkdir(parents=True, exist_ok=True)
        had_lock = (run.path / LOCK).exists()
        run._acquire()
        contents = [p for p in run.path.iterdir() if p.name != LOCK]
        if contents and not resume and not cfg.overwrite:
            if not had_lock:  # a folder from before locks: leave it as it was
                (run.path / LOCK).unlink()
            run.close()
            raise UserError(
                f"{run.path}: run folder exists; pass --resume to continue it, "
                f"run.overwrite=true to replace it, or run.name=<new> for a new one"
            )
        if resume:
            run._config = config
            return run
        for p in contents:  # overwrite: everything but the lock we hold
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        save_config(config, run.path / "config.yaml")
        return run

    def _acquire(self) -> None:
        key = self.path.resolve()
        if key in _HELD:  # this process holds it already (a stage calling another in-process)
            self._lock = _HELD[key]
            return
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UserError(
                f"{self.path}: run folder is in use by another r1lab process (PID {holder}); "
                f"wait for it to end or stop it, or choose run.name=<new>"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock = _HELD[key] = fd

    def close(self) -> None:
        """Close the trackers and release the folder's lock (the process's exit does it too)."""
        self.trackers.close()
        if self._lock is not None:
            _HELD.pop(self.path.resolve(), None)
            os.close(self._lock)
            self._lock = None

    # --- metrics -----------------------------------------------------------------------------
    def log(self, record: dict[str, Any]) -> None:
        """Append one step's metrics (a line of JSON) to ``metrics.jsonl``, and send its numbers
        to the run's trackers."""
        self._append("metrics.jsonl", record)
        self.trackers.log(record)

    def log_sample(self, record: dict[str, Any]) -> None:
        """Append one sampled response with its step and rewards to ``samples.jsonl``."""
        self._append("samples.jsonl", record)

    def _append(self, name: str, record: dict[str, Any]) -> None:
        with open(self.path / name, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")

    def metrics(self, name: str = "metrics.jsonl") -> list[dict[str, Any]]:
        path = self.path / name
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, after_step: int) -> None:
        """Drop the lines of the step logs (``metrics.jsonl``, ``samples.jsonl``) past
        ``after_step``: written after the checkpoint we resume from. TensorBoard drops them
        too (a later process cannot take back what it sent to wandb or trackio)."""
        self.trackers.resume_after(after_step)
        for name in LOGS:
            if not (self.path / name).exists():
                continue
            kept = [m for m in self.metrics(name) if m.get("step", 0) <= after_step]
            tmp = self.path / f"{name}.tmp"
            tmp.write_text("".join(json.dumps(m, ensure_ascii=False) + "\n" for m in kept))
            os.replace(tmp, self.path / name)

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write ``summary.json``: the run is done, so its trackers are flushed and closed."""
        write_json_atomic(self.path / "summary.json", summary)
        self.trackers.close()

    # --- checkpoints -------------------------------------------------------------------------
    def restore(
        self,
        model: Any,
        optimizer: Any,
        scheduler: Any,
        layout: dict[str, Any] | None = None,
        steps: int | None = None,
    ) -> dict[str, Any]:
        """Continue from the newest checkpoint that loads: its weights, optimizer, scheduler
        and RNG state go into the live objects, the metric lines logged after it are dropped
        (they will be logged again), and its saved ``state`` (``step``, …) is returned; ``{}``
        and no metrics kept when there is no checkpoint yet.

        A checkpoint that does not load (a damaged file) is skipped, with a message, for the
        one before it. The run is refused, with what differs, when the checkpoint was written
        with another ``layout`` (the settings that decide what a step trains on) or has done
        more than ``steps`` steps. The config is written only once all of this holds.
        """
        state: dict[str, Any] = {}
        for checkpoint in reversed(complete_checkpoints(self.checkpoints)):
            try:
                saved = load_trainer_state(checkpoint)
                self._check_resume(saved["state"], layout or {}, steps)
                load_weights(model, checkpoint)
            except UserError:
                raise
            except Exception as e:
                print(
                    f"r1lab: {checkpoint} cannot be loaded ({type(e).__name__}: "
                    f"{' '.join(str(e).split())[:200]}); trying the checkpoint before it",
                    file=sys.stderr,
                )
                continue
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            set_rng_state(saved["rng"])
            state = saved["state"]
            print(f"r1lab: resuming {self.path} from {checkpoint.name}", file=sys.stderr)
            break
        else:
            if complete_checkpoints(self.checkpoints):
                raise UserError(f"{self.checkpoints}: no checkpoint loads; nothing to resume")
        self.truncate_metrics(int(state.get("step", 0)))
        if self._config is not None:
            save_config(self._config, self.path / "config.yaml")
            self._config = None
        return state

    def _check_resume(
        self, state: dict[str, Any], layout: dict[str, Any], steps: int | None
    ) -> None:
        done = int(state.get("step", 0))
        if steps is not None and done > steps:
            raise UserError(
                f"{self.path}: cannot resume: the checkpoint has done {done} steps, more than "
                f"the {steps} this config asks for"
            )
        saved = state.get("layout", {})
        differs = [
            f"{k} {saved[k]} -> {v}" for k, v in layout.items() if k in saved and saved[k] != v
        ]
        if differs:
            raise UserError(
                f"{self.path}: cannot resume: the checkpoint was trained with another batch "
                f"layout ({', '.join(differs)})"
            )

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
        with _writing(tmp, f"checkpoint step-{step}"):
            tmp.mkdir(parents=True)
            save_model(model, tokenizer, tmp)
            extra = {"rng": rng_state(), "state": state or {}}
            if optimizer is not None:
                extra["optimizer"] = optimizer.state_dict()
            if scheduler is not None:
                extra["scheduler"] = scheduler.state_dict()
            # Serialised in memory and written by Python, so that a failing write is an
            # OSError with its cause, not a C++ stream error.
            buffer = io.BytesIO()
            torch.save(extra, buffer)
            (tmp / "trainer_state.pt").write_bytes(buffer.getvalue())
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


def _plain(config: Any) -> dict[str, Any]:
    """A stage config as the dict the trackers record with the run."""
    try:
        return to_dict(config)
    except TypeError:  # not a dataclass (a caller in code)
        return {}


def _checkpoint_steps(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    return [
        int(m.group(1)) for p in folder.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))
    ]


def complete_checkpoints(folder: Path) -> list[Path]:
    """The complete ``step-N`` folders, oldest first (temporary ``.tmp-*`` ones are ignored)."""
    return [folder / f"step-{s}" for s in sorted(_checkpoint_steps(folder))]


@contextlib.contextmanager
def _writing(tmp: Path, what: str) -> Iterator[None]:
    """Write ``tmp`` (a folder to be renamed into place); on any failure remove it, so a
    partial write never stays behind, and report a failed write (a full disk) in one line."""
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        yield
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        cause = _write_failure(e, tmp)
        if cause is None:
            raise
        raise UserError(f"cannot save {what}: {cause}; nothing of it was kept") from None


def _write_failure(e: BaseException, tmp: Path) -> str | None:
    """``path: reason`` when ``e`` is a failed write, else None."""
    if isinstance(e, OSError):
        return f"{e.filename or tmp}: {e.strerror or e}"
    # Writers in native code (safetensors) raise their own types; a full disk is errno 28.
    text = str(e)
    if "os error 28" in text or "No space left" in text:
        return f"{tmp}: {os.strerror(errno.ENOSPC)}"
    return None


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
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per save of a one-file model says nothing
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)


def save_model_atomic(model: Any, tokenizer: Any, folder: str | Path) -> Path:
    """Write a model folder under a temporary name and rename it into place when complete."""
    folder = Path(folder)
    tmp = folder.parent / f".tmp-{folder.name}"
    with _writing(tmp, f"model {folder}"):
        save_model(model, tokenizer, tmp)
        _fsync_dir(tmp)
    if folder.exists():
        shutil.rmtree(folder)
    os.rename(tmp, folder)
    return folder


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
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
