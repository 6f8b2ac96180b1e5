"""Experiment trackers: each metrics line a run logs, sent to TensorBoard, wandb or trackio too.

``metrics.jsonl`` stays the record (the reports, ``--resume`` and ``r1lab report`` read it);
a tracker is a live view of it. ``run.trackers`` chooses them:

- ``tensorboard``: event files under ``<run folder>/tensorboard/``
  (``tensorboard --logdir runs``);
- ``wandb``: a Weights & Biases run in ``<run folder>/wandb/``, offline unless the user
  sets ``WANDB_MODE`` (``wandb sync`` uploads an offline run later);
- ``trackio``: a local trackio run (its database is trackio's own, ``TRACKIO_DIR``;
  ``trackio show`` is the dashboard).

wandb and trackio log under the project ``run.project``, as a run named after the run folder.
Each line's ``step`` is the tracker's step and its numbers are the values (strings and
lists stay in ``metrics.jsonl`` only).

A tracker's package is imported only when a run chooses it (``pip install 'r1lab[track]'``
installs all three), and it is opened at the run's first metrics line, so a stage that logs no
step (a data stage) starts none. It is closed with the run's summary (or :meth:`Run.close`).

Resume: the lines logged past the checkpoint are dropped from ``metrics.jsonl`` and logged
again. TensorBoard is told so: the resumed event file starts by purging the steps from there
on, so the dashboard shows each step once, with its new value. wandb and trackio cannot
rewind a run: the resumed process is a new run of the same name that starts at that step,
beside the interrupted one.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Protocol

from r1lab.config import Check
from r1lab.errors import UserError

__all__ = ["TRACKERS", "Trackers", "check_trackers", "scalars", "tracker_names"]

# tracker -> the Python package (module and pip name) it needs
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}


def tracker_names() -> Check:
    """The config check of ``run.trackers``: every name one of :data:`TRACKERS`."""
    return Check(
        lambda names: all(n in TRACKERS for n in names), f"a list of {', '.join(TRACKERS)}"
    )


def _installed(module: str) -> bool:
    if module in sys.modules:  # imported already (or blocked, as None)
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


def check_trackers(names: list[str]) -> None:
    """A one-line error for an unknown tracker, or one whose package is not installed."""
    for name in names:
        if name not in TRACKERS:
            raise UserError(
                f"run.trackers: unknown tracker '{name}' (expected {', '.join(TRACKERS)})"
            )
        package = TRACKERS[name]
        if not _installed(package):
            raise UserError(
                f"run.trackers: {name} needs the Python package '{package}': "
                f"pip install {package} (or pip install 'r1lab[track]' for all three)"
            )


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of a metrics line, but its step (flags count as 0/1)."""
    return {k: float(v) for k, v in record.items() if k != "step" and isinstance(v, (int, float))}


class Tracker(Protocol):
    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


class TensorBoard:
    """Scalars in ``<folder>/tensorboard/``; ``purge_step`` hides what an earlier process of
    the run logged from that step on (a resume logs those steps again)."""

    def __init__(self, folder: Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(folder / "tensorboard"), purge_step=purge_step)

    def log(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self._writer.add_scalar(key, value, step)
        self._writer.flush()  # a line per step: the dashboard (and a crash) sees every one

    def close(self) -> None:
        self._writer.close()


class Wandb:
    """A wandb run in ``<folder>/wandb/``, offline unless ``WANDB_MODE`` says otherwise."""

    def __init__(self, folder: Path, name: str, project: str, config: dict[str, Any]) -> None:
        import wandb

        mode = {} if os.environ.get("WANDB_MODE") else {"mode": "offline"}
        # create_new: a stage that runs another in-process (distill) gives each its own run
        self._run = wandb.init(
            project=project, name=name, dir=str(folder), config=config, reinit="create_new",
            **mode,
        )  # fmt: skip

    def log(self, metrics: dict[str, float], step: int) -> None:
        self._run.log(metrics, step=step)

    def close(self) -> None:
        self._run.finish()


class Trackio:
    """A trackio run, logged locally (or where trackio's own settings send it)."""

    def __init__(self, name: str, project: str, config: dict[str, Any]) -> None:
        import trackio

        self._run = trackio.init(project=project, name=name, config=config)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self._run.log(metrics, step=step)

    def close(self) -> None:
        import trackio

        self._run.finish()
        # trackio finishes its current run again at exit (printing it again) unless told
        current = getattr(getattr(trackio, "context_vars", None), "current_run", None)
        if current is not None and current.get() is self._run:
            current.set(None)


class Trackers:
    """The trackers of one run folder: opened at its first metrics line, closed with the run.

    ``names`` are checked here (:func:`check_trackers`), so a run with a tracker that cannot
    be used is refused before anything is written.
    """

    def __init__(
        self, names: list[str], folder: Path, project: str, config: dict[str, Any] | None = None
    ) -> None:
        check_trackers(names)
        self.names = list(dict.fromkeys(names))
        self.folder = folder
        self.project = project
        self.config = config or {}
        self._open: list[Tracker] | None = None
        self._purge_step: int | None = None
        self._lines = 0

    def resume_after(self, step: int) -> None:
        """The run continues from the checkpoint of ``step``: what was logged past it goes."""
        self._purge_step = step + 1

    def log(self, record: dict[str, Any]) -> None:
        """Send one metrics line to every tracker (``step`` as the step)."""
        self._lines += 1
        if not self.names:
            return
        if self._open is None:
            self._open = [self._start(name) for name in self.names]
            self._purge_step = None
        step = int(record.get("step", self._lines))
        metrics = scalars(record)
        for tracker in self._open:
            tracker.log(metrics, step)

    def _start(self, name: str) -> Tracker:
        try:
            if name == "tensorboard":
                return TensorBoard(self.folder, self._purge_step)
            if name == "wandb":
                return Wandb(self.folder, self.folder.name, self.project, self.config)
            return Trackio(self.folder.name, self.project, self.config)
        except ImportError as e:  # installed, but broken (a missing dependency of its own)
            raise UserError(
                f"run.trackers: {name} cannot be imported ({e}); reinstall it with "
                f"pip install {TRACKERS[name]}"
            ) from None

    def close(self) -> None:
        """Flush and close the open trackers (a later line opens them again)."""
        trackers, self._open = self._open or [], None
        for tracker in trackers:
            tracker.close()
