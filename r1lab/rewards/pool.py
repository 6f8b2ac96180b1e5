"""Rule-based rewards evaluated asynchronously in worker processes (module 3 of the RL system).

The trainer submits a batch right after generation and collects the scores after the
reference/inference pass, so slow answer checking overlaps with it::

    pool = RewardPool([RewardSpec("accuracy"), RewardSpec("format", inline=True)])
    fut = pool.submit(samples)          # returns at once
    ...                                 # reference log-probs, etc.
    result = fut.result()               # RewardResult: total, per_reward, failures

Why processes and not threads: math-verify bounds sympy with SIGALRM, which works only in
a process's main thread, and a reward stuck in C code cannot be interrupted at all; it
can only be killed. So each worker runs one task at a time in its main thread, and the
pool kills and replaces a worker whose task runs past ``timeout_s``.

Failure policy: a reward that raises, returns the wrong number of values, kills its worker
or runs past its time limit fails on the samples of that task (a chunk of ``chunk_size``
samples); a non-finite value fails its sample alone. Failed samples are marked in
``RewardResult.failed`` and counted in ``RewardResult.failures``; a sample on which a reward
of non-zero weight failed has no total (``RewardResult.unscored``): the trainer leaves it out
rather than take it for a wrong answer. The run goes on.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import itertools
import logging
import math
import multiprocessing as mp
import signal
import sys
import threading
import time
from collections.abc import Collection, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from r1lab.errors import UserError
from r1lab.rewards.base import RewardFn, Sample, get_reward
from r1lab.rewards.config import RewardsConfig, RewardSpec

log = logging.getLogger(__name__)

# A worker that dies this many times in a row before it is ready cannot start at all (a
# broken environment, not a bad reward): the pool stops and the futures raise.
_MAX_START_FAILURES = 3


@dataclass
class RewardResult:
    """Scores of one batch, in sample order."""

    total: list[float]  # Σ weight · reward per sample (0.0 where unscored)
    per_reward: dict[str, list[float]]  # unweighted, failed samples as 0.0
    failures: dict[str, int]  # samples the reward failed on
    errors: dict[str, str] = field(default_factory=dict)  # first error message per reward
    failed: dict[str, list[bool]] = field(default_factory=dict)  # per reward, per sample
    unscored: list[bool] = field(default_factory=list)  # a weighted reward failed: no total
    seconds: float = 0.0  # time spent computing them: inline, plus each chunk in its worker

    def __post_init__(self) -> None:  # a result built without masks: nothing failed
        n = len(self.total)
        for name in self.per_reward:
            self.failed.setdefault(name, [False] * n)
        self.unscored = self.unscored or [False] * n

    def metrics(self) -> dict[str, float]:
        """Batch means over the samples each reward scored, for metrics.jsonl:
        ``reward/total``, ``reward/<name>``, ``reward_failures/<name>``."""
        out = {"reward/total": _mean(self.total, self.unscored)}
        for name, values in self.per_reward.items():
            out[f"reward/{name}"] = _mean(values, self.failed.get(name, []))
            out[f"reward_failures/{name}"] = float(self.failures.get(name, 0))
        return out


def _mean(values: list[float], failed: list[bool]) -> float:
    kept = [v for i, v in enumerate(values) if not (i < len(failed) and failed[i])]
    return sum(kept) / max(len(kept), 1)


class RewardPool:
    """Evaluates a weighted set of rewards over batches, in worker processes.

    ``timeout_s`` bounds one reward on one chunk, counted from when a ready worker receives
    it; chunks of one batch run in parallel on ``workers`` processes. Rewards marked inline
    (and all rewards when ``workers == 0``) run synchronously inside :meth:`submit`, with
    exceptions caught but no time limit. Unknown reward names raise :class:`UserError` here,
    not at the first batch.
    """

    def __init__(
        self,
        specs: Sequence[RewardSpec],
        workers: int = 2,
        timeout_s: float = 60.0,
        chunk_size: int = 8,
        start_method: str = "forkserver",
    ):
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise UserError(f"rewards: a reward is named twice in {names}")
        if workers < 0 or chunk_size < 1 or not timeout_s > 0:
            raise UserError("rewards: need workers >= 0, chunk_size >= 1 and timeout_s > 0")
        self.specs = list(specs)
        self._fns: dict[str, RewardFn] = {s.name: get_reward(s.name) for s in specs}
        self._inline = [s for s in specs if s.inline or workers == 0]
        self._remote = [s for s in specs if not (s.inline or workers == 0)]
        self._timeout_s = timeout_s
        self._chunk_size = chunk_size
        self._closed = False
        self._dispatcher: _Dispatcher | None = None
        if self._remote:
            self._dispatcher = _Dispatcher(workers, timeout_s, _context(start_method))
            atexit.register(self.close)

    @classmethod
    def from_config(cls, cfg: RewardsConfig) -> RewardPool:
        return cls(cfg.specs(), cfg.workers, cfg.timeout_s, cfg.chunk_size, cfg.start_method)

    def submit(
        self, samples: Sequence[Sample], active: Collection[str] | None = None
    ) -> Future[RewardResult]:
        """Start scoring ``samples``; the future's result is their :class:`RewardResult`.

        Only the rewards in ``active`` (None: all) are computed, and a reward with ``tasks``
        only on the samples of those tasks (``meta["task"]``): elsewhere its value is exactly
        0, it is not called, and it cannot fail (the reward schedule and stage D's routing).
        """
        if self._closed:
            raise RuntimeError("RewardPool is closed")
        batch = _Batch(list(samples), self.specs)

        def applies(spec: RewardSpec) -> list[int]:
            if active is not None and spec.name not in active:
                return []
            return [
                i for i, x in enumerate(batch.samples)
                if not spec.tasks or x.meta.get("task") in spec.tasks
            ]  # fmt: skip

        for spec in self._inline:
            idx = applies(spec)
            if not idx:
                continue
            began = time.monotonic()
            try:
                values, error = self._fns[spec.name]([batch.samples[i] for i in idx]), None
            except Exception as e:
                values, error = None, f"{type(e).__name__}: {e}"
            batch.seconds += time.monotonic() - began
            batch.record(spec.name, idx, values, error)
        tasks = []
        for spec in self._remote:
            idx = applies(spec)
            for start in range(0, len(idx), self._chunk_size):
                chunk = idx[start : start + self._chunk_size]
                tasks.append(_Task(batch, spec.name, chunk, [batch.samples[i] for i in chunk]))
        batch.pending = len(tasks)
        if tasks:
            assert self._dispatcher is not None
            self._dispatcher.put(tasks)
        else:
            batch.finish()
        return batch.future

    def __call__(self, samples: Sequence[Sample]) -> RewardResult:
        """Score ``samples`` and wait for the result."""
        return self.submit(samples).result()

    def close(self) -> None:
        """Stop the workers; futures still pending raise ``RuntimeError``."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        if self._dispatcher is not None:
            self._dispatcher.stop()

    def __enter__(self) -> RewardPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- batches and tasks --------------------------------------------------------------------


class _Batch:
    def __init__(self, samples: list[Sample], specs: Sequence[RewardSpec]):
        self.samples = samples
        self.weights = {s.name: s.weight for s in specs}
        self.per_reward = {s.name: [0.0] * len(samples) for s in specs}
        self.failed = {s.name: [False] * len(samples) for s in specs}
        self.errors: dict[str, str] = {}
        self.seconds = 0.0
        self.pending = 0
        self.future: Future[RewardResult] = Future()
        self.future.set_running_or_notify_cancel()  # no cancel(): the pool owns its completion

    def record(self, name: str, indices: list[int], values: Any, error: str | None) -> None:
        count = len(indices)
        if error is None:
            try:
                values = [float(v) for v in values]
                if len(values) != count:
                    error = f"returned {len(values)} values for {count} samples"
            except Exception as e:
                error = f"returned {type(values).__name__}, not a list of floats ({e})"
        if error is not None:
            for i in indices:
                self.failed[name][i] = True
            self.errors.setdefault(name, error)
            return
        for i, v in zip(indices, values, strict=True):
            if math.isfinite(v):
                self.per_reward[name][i] = v
            else:
                self.failed[name][i] = True
                self.errors.setdefault(name, f"non-finite value {v}")

    def finish(self) -> None:
        n = len(self.samples)
        weighted = [name for name, w in self.weights.items() if w != 0]
        unscored = [any(self.failed[name][i] for name in weighted) for i in range(n)]
        total = [
            0.0
            if unscored[i]
            else sum(self.weights[name] * values[i] for name, values in self.per_reward.items())
            for i in range(n)
        ]
        failures = {name: sum(mask) for name, mask in self.failed.items()}
        for name, count in failures.items():
            if count:
                log.warning(
                    "reward '%s' failed on %d of %d samples: %s", name, count, n, self.errors[name]
                )
        self.future.set_result(
            RewardResult(
                total, self.per_reward, failures, self.errors, self.failed, unscored, self.seconds
            )
        )


@dataclass
class _Task:
    batch: _Batch
    name: str
    indices: list[int]  # of the samples in the batch
    samples: list[Sample]
    id: int = 0
    sent: float = 0.0  # when a worker took it (time.monotonic)


# --- worker processes ---------------------------------------------------------------------


def _context(start_method: str) -> mp.context.BaseContext:
    if start_method not in ("forkserver", "spawn"):
        raise UserError(f"rewards.start_method: expected forkserver or spawn, got '{start_method}'")
    if start_method not in mp.get_all_start_methods():
        start_method = "spawn"
    ctx = mp.get_context(start_method)
    if start_method == "forkserver":
        # Workers fork from a server that has imported the rewards (math-verify, sympy) once,
        # so replacing a killed worker takes milliseconds.
        ctx.set_forkserver_preload(["r1lab.rewards.rules"])
    return ctx


def _worker_main(conn: Connection, sys_path: list[str]) -> None:
    # The trainer handles Ctrl-C and closes the pool; a worker interrupted mid-reward would
    # only report a spurious failure.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # User rewards import from the trainer's path, which a forkserver does not inherit.
    sys.path[:] = sys_path
    import r1lab.rewards.rules  # noqa: F401  (registers the built-in rewards)

    fns: dict[str, RewardFn] = {}
    conn.send(("ready",))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the trainer is gone
            return
        if msg is None:
            return
        task_id, name, samples = msg
        try:
            if name not in fns:
                fns[name] = get_reward(name)
            values, error = [float(v) for v in fns[name](samples)], None
        except BaseException as e:  # even SystemExit: a reward must not end its worker
            values, error = None, f"{type(e).__name__}: {e}"
        conn.send((task_id, values, error))


class _Worker:
    def __init__(self, ctx: mp.context.BaseContext):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, list(sys.path)), daemon=False)
        self.proc.start()
        child.close()
        self.ready = False
        self.task: _Task | None = None
        self.deadline = math.inf

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


class _Dispatcher:
    """One thread that feeds tasks to workers, collects replies and enforces time limits."""

    def __init__(self, n_workers: int, timeout_s: float, ctx: mp.context.BaseContext):
        self._ctx = ctx
        self._timeout_s = timeout_s
        self._queue: collections.deque[_Task] = collections.deque()
        self._incoming: collections.deque[_Task] = collections.deque()
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._stopping = False
        self._woken = False
        self._error: BaseException = RuntimeError("RewardPool is closed")
        self._start_failures = 0
        self._wake_r, self._wake_w = ctx.Pipe(duplex=False)
        self._workers = [_Worker(ctx) for _ in range(n_workers)]
        self._thread = threading.Thread(target=self._run, name="reward-pool", daemon=True)
        self._thread.start()

    # called from the trainer's threads
    def put(self, tasks: list[_Task]) -> None:
        with self._lock:
            if self._stopping:
                raise RuntimeError(f"RewardPool is closed ({self._error})")
            for t in tasks:
                t.id = next(self._ids)
            self._incoming.extend(tasks)
            self._wake()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._wake()
        self._thread.join(30)

    def _wake(self) -> None:
        # At most one wake-up byte in flight: a full pipe would block put() under the lock.
        if not self._woken:
            self._woken = True
            self._wake_w.send_bytes(b"")

    # the dispatcher thread
    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._stopping:
                        break
                    self._queue.extend(self._incoming)
                    self._incoming.clear()
                    if self._woken:
                        self._wake_r.recv_bytes()
                        self._woken = False
                self._assign()
                waiting = [self._wake_r] + [w.conn for w in self._workers]
                waiting += [w.proc.sentinel for w in self._workers]
                deadline = min((w.deadline for w in self._workers), default=math.inf)
                timeout = None if deadline == math.inf else max(0.0, deadline - time.monotonic())
                ready = wait(waiting, timeout)
                for w in list(self._workers):
                    if w.conn in ready:
                        self._receive(w)
                for w in list(self._workers):
                    if w in self._workers and w.proc.sentinel in ready:
                        self._replace(w)
                now = time.monotonic()
                for w in list(self._workers):
                    if w.task is not None and now >= w.deadline:
                        self._replace(w, f"timed out after {self._timeout_s:g} s")
        except BaseException as e:
            log.exception("reward pool stopped")
            self._error = e
        finally:
            self._shutdown(self._error)

    def _assign(self) -> None:
        for w in self._workers:
            if not self._queue:
                return
            if not w.ready or w.task is not None:
                continue
            task = self._queue.popleft()
            try:
                w.conn.send((task.id, task.name, task.samples))
            except OSError:  # died between tasks: not the task's fault, so it runs elsewhere
                self._queue.appendleft(task)
                self._replace(w)
                continue
            except Exception as e:  # pickling fails before anything is written
                self._done(task, None, f"cannot send the samples to a worker ({e})")
                continue
            task.sent = time.monotonic()
            w.task, w.deadline = task, task.sent + self._timeout_s

    def _receive(self, w: _Worker) -> None:
        try:
            msg = w.conn.recv()
        except (EOFError, OSError):
            self._replace(w)
            return
        if msg == ("ready",):
            w.ready = True
            self._start_failures = 0
            return
        task_id, values, error = msg
        task = w.task
        if task is None or task.id != task_id:  # cannot happen: one task per worker at a time
            raise RuntimeError(f"reward worker answered task {task_id}, not its own")
        w.task, w.deadline = None, math.inf
        self._done(task, values, error)

    def _replace(self, w: _Worker, reason: str | None = None) -> None:
        """Kill ``w`` (if still alive), fail its task with ``reason`` (default: it died),
        start a new worker."""
        self._workers.remove(w)
        w.kill()
        if reason is None:
            reason = f"worker died (exit code {w.proc.exitcode})"
        if w.task is not None:
            self._done(w.task, None, reason)
        elif not w.ready:
            self._start_failures += 1
            if self._start_failures >= _MAX_START_FAILURES:
                raise RuntimeError(f"reward workers cannot start ({reason})")
        self._workers.append(_Worker(self._ctx))

    def _done(self, task: _Task, values: Any, error: str | None) -> None:
        batch = task.batch
        if task.sent:
            batch.seconds += time.monotonic() - task.sent
        batch.record(task.name, task.indices, values, error)
        batch.pending -= 1
        if batch.pending == 0:
            batch.finish()

    def _shutdown(self, error: BaseException) -> None:
        with self._lock:
            self._stopping = True
            pending = list(self._queue) + list(self._incoming)
        pending += [w.task for w in self._workers if w.task is not None]
        for batch in {id(t.batch): t.batch for t in pending}.values():
            if not batch.future.done():
                batch.future.set_exception(error)
        for w in self._workers:
            if w.task is None and w.proc.is_alive():
                with contextlib.suppress(OSError):
                    w.conn.send(None)
        for w in self._workers:
            if w.task is None:
                w.proc.join(2)
            w.kill()
