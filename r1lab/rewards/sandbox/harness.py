"""The host side of the sandbox: :class:`Sandbox` starts one bubblewrap sandbox per execution
and :class:`SandboxPool` runs executions on worker threads with a bounded queue."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1lab.errors import UserError
from r1lab.rewards.sandbox.base import PACKAGE_HINT, Limits, SandboxUnavailable, Verdict
from r1lab.rewards.sandbox.capture import capture, decide
from r1lab.rewards.sandbox.seccomp import seccomp_filter

log = logging.getLogger(__name__)


@dataclass
class _Job:
    program: str
    tests: list[str]
    setup: str
    entry_point: str | None


class Sandbox:
    """Runs a program against tests in a fresh bubblewrap sandbox per call to :meth:`run`.

    ``python`` is the interpreter used inside, Python 3.10 or later (default: this one's
    base interpreter; as root, one that ``sandbox_uid`` can read, e.g. ``/usr/bin/python3``).
    ``unsafe`` runs without any isolation, for debugging where bubblewrap is missing.
    Thread-safe: run it from many threads (see :class:`SandboxPool`).
    """

    def __init__(
        self,
        limits: Limits | None = None,
        bwrap: str = "bwrap",
        python: str | None = None,
        unsafe: bool = False,
        sandbox_uid: int = 65534,
    ):
        self.limits = limits or Limits()
        self.unsafe = unsafe
        self._bwrap = bwrap
        self._python_opt = python
        self._sandbox_uid = sandbox_uid
        self._ready = False
        self._lock = threading.Lock()
        self._prefix: list[str] = []
        self._python = ""
        self._runner_code = b""
        self._boot = ""
        self._seccomp = b""
        if unsafe:
            log.warning(
                "UNSAFE code sandbox: programs run WITHOUT isolation (no namespaces, no seccomp,"
                " no read-only file system): model-written code can read your files and "
                "environment, reach the network and leave processes behind. Use it only to "
                "debug on a machine you do not care about."
            )

    # --- public ---------------------------------------------------------------------------

    def run(
        self,
        program: str,
        tests: Sequence[str],
        setup: str = "",
        entry_point: str | None = None,
    ) -> Verdict:
        """Run ``program`` and then each of ``tests`` (Python source, one test each).

        ``setup`` is the task's own code, run where the tests run, before them (HumanEval's
        prompt, which defines helpers such as ``poly``; MBPP's ``test_setup_code``).
        ``entry_point`` names the program's function that the tests call; it is bound after
        the setup, so the program's version wins over a stub of the same name in the setup.
        """
        if not tests:
            raise UserError("code sandbox: no tests to run")
        self.check()
        return self._execute(_Job(program, list(tests), setup, entry_point))

    def check(self) -> None:
        """Raise :class:`SandboxUnavailable` unless executions can run here (checked once)."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            self._prepare()
            probe = self._execute(_Job("def f():\n    return 1\n", ["assert f() == 1"], "", None))
            if not probe.passed:
                detail = (probe.stderr.strip().splitlines() or [probe.reason])[-1]
                raise SandboxUnavailable(
                    f"the code sandbox does not work on this machine: {probe.status}, {detail}"
                )
            self._ready = True

    # --- set-up ---------------------------------------------------------------------------

    def _prepare(self) -> None:
        self._python = self._pick_python()
        self._runner_code, self._boot = _runner_payload(self._python)
        if self.unsafe:
            return
        found = shutil.which(self._bwrap)
        if found is None:
            raise SandboxUnavailable(
                f"the code sandbox needs bubblewrap, and '{self._bwrap}' was not found: "
                f"{PACKAGE_HINT}; or opt in to running without isolation (unsafe=True)"
            )
        self._seccomp = seccomp_filter()
        self._prefix = [found, *_bwrap_args(self._python, self.limits)]

    def _pick_python(self) -> str:
        own = os.path.realpath(getattr(sys, "_base_executable", "") or sys.executable)
        if self._python_opt:
            chosen = shutil.which(self._python_opt) or self._python_opt
            if not os.path.isfile(chosen):
                raise SandboxUnavailable(f"sandbox python '{self._python_opt}' not found")
            chosen = os.path.realpath(chosen)
        else:
            chosen = own
        if self.unsafe or os.geteuid() != 0 or _others_can_run(chosen):
            return chosen
        if not self._python_opt and _others_can_run("/usr/bin/python3"):
            log.info(
                "code sandbox: %s is not readable by uid %d, which the sandbox runs as under "
                "root; using /usr/bin/python3",
                chosen,
                self._sandbox_uid,
            )
            return os.path.realpath("/usr/bin/python3")
        raise SandboxUnavailable(
            f"running as root, the sandbox runs as uid {self._sandbox_uid} so that the process "
            f"limit holds, and that user cannot read {chosen}; set the sandbox python to an "
            "interpreter outside /root (for example /usr/bin/python3)"
        )

    # --- one execution --------------------------------------------------------------------

    def _execute(self, job: _Job) -> Verdict:
        lim = self.limits
        start = time.monotonic()
        fds: list[int] = []  # every pipe end opened here, to close them all if the start fails

        def pipe() -> tuple[int, int]:
            r, w = os.pipe()
            fds.extend((r, w))
            return r, w

        code_r, code_w = pipe()
        prog_r, prog_w = pipe()
        job_r, job_w = pipe()
        verdict_r, verdict_w = pipe()
        child_fds = [code_r, prog_r, job_r, verdict_w]
        argv = [
            self._python,
            "-I",
            "-S",
            "-B",
            "-u",
            "-c",
            self._boot,
            *map(str, child_fds),
            *map(str, _rlimits(lim, self.unsafe)),
        ]
        scratch = None
        kwargs: dict[str, Any] = {}
        if self.unsafe:
            scratch = tempfile.mkdtemp(prefix="r1lab-unsafe-")
            kwargs = {"cwd": scratch, "start_new_session": True}
        else:
            sec_r, sec_w = pipe()
            os.write(sec_w, self._seccomp)  # a few hundred bytes: fits the pipe buffer
            os.close(sec_w)
            fds.remove(sec_w)
            info_r, info_w = pipe()
            child_fds += [sec_r, info_w]
            argv = [*self._prefix, "--seccomp", str(sec_r), "--info-fd", str(info_w), *argv]
            if os.geteuid() == 0:
                uid = self._sandbox_uid
                kwargs = {"user": uid, "group": uid, "extra_groups": []}
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=child_fds,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                **kwargs,
            )
        except OSError as e:
            for fd in fds:
                os.close(fd)
            raise SandboxUnavailable(f"cannot start the code sandbox ({e})") from None
        for fd in child_fds:
            os.close(fd)
        # The sandbox's PID 1, to be killed rather than bwrap: bwrap then reaps it, and PID 1
        # of a namespace is reaped only once every process of the namespace is gone, so when
        # bwrap exits nothing of the program is left (killing bwrap instead would leave the
        # namespace to be torn down after this call returned).
        init = None if self.unsafe else _sandbox_init(info_r, start + lim.timeout_s)
        for fd in (code_w, prog_w, job_w):
            os.set_blocking(fd, False)
        job_text = _dump(["d", *[[k, v] for k, v in _job_fields(job)]])
        outgoing = {
            code_w: self._runner_code,
            prog_w: job.program.encode("utf-8", "surrogatepass"),
            job_w: job_text.encode("ascii"),
        }

        def kill() -> None:
            # The PID namespace dies with its first process; the unsafe mode has only the
            # process group to go by.
            with contextlib.suppress(ProcessLookupError):
                if self.unsafe:
                    os.killpg(proc.pid, signal.SIGKILL)
                elif init is not None:
                    signal.pidfd_send_signal(init, signal.SIGKILL)
                else:
                    proc.kill()

        try:
            cap = capture(proc, outgoing, verdict_r, lim, start, kill)
        finally:
            if init is not None:
                os.close(init)
            if self.unsafe:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                if scratch:
                    shutil.rmtree(scratch, ignore_errors=True)
        verdict = decide(cap, len(job.tests), proc.returncode)
        verdict.time_s = round(time.monotonic() - start, 4)
        return verdict


class SandboxPool:
    """Executions on ``workers`` threads, with at most ``queue_size`` waiting.

    :meth:`submit` returns a future at once while the queue has room and blocks while it is
    full, so a producer (the trainer's reward step) cannot run ahead of the sandbox without
    bound; executions overlap with whatever the caller does meanwhile.
    """

    def __init__(self, sandbox: Sandbox, workers: int = 2, queue_size: int | None = None):
        if workers < 1:
            raise UserError("sandbox pool: need workers >= 1")
        self.sandbox = sandbox
        self._queue: queue.Queue[tuple[Future[Verdict], _Job] | None] = queue.Queue(
            queue_size or 4 * workers
        )
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"sandbox-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    def submit(
        self,
        program: str,
        tests: Sequence[str],
        setup: str = "",
        entry_point: str | None = None,
    ) -> Future[Verdict]:
        if self._closed:
            raise RuntimeError("SandboxPool is closed")
        fut: Future[Verdict] = Future()
        self._queue.put((fut, _Job(program, list(tests), setup, entry_point)))
        return fut

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fut, job = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(self.sandbox.run(job.program, job.tests, job.setup, job.entry_point))
            except BaseException as e:
                fut.set_exception(e)


# --- harness internals ----------------------------------------------------------------------


def _job_fields(job: _Job) -> list[tuple[str, Any]]:
    return [
        ("tests", ["l", *job.tests]),
        ("setup", job.setup),
        ("entry_point", job.entry_point),
    ]


def _dump(tree: Any) -> str:
    """JSON text of a tree of lists, str, int, float, bool and None (the job is trusted)."""
    import json

    return json.dumps(tree, ensure_ascii=True, separators=(",", ":"))


def _rlimits(lim: Limits, unsafe: bool) -> list[int]:
    cpu = max(1, int(lim.cpu_s + 0.999))
    scratch = lim.scratch_mb << 20
    # Without a user namespace, RLIMIT_NPROC would count every process of the user.
    nproc = -1 if unsafe else lim.max_procs
    return [cpu, lim.memory_mb << 20, scratch, lim.max_open_files, nproc]


def _others_can_run(path: str) -> bool:
    """True when a user without any privilege can traverse to and execute ``path``."""
    try:
        parts = Path(path).resolve().parents
        if not all(p.stat().st_mode & stat.S_IXOTH for p in parts):
            return False
        return bool(os.stat(path).st_mode & stat.S_IXOTH)
    except OSError:
        return False


def _bwrap_args(python: str, lim: Limits) -> list[str]:
    args = [
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
        "--hostname",
        "sandbox",
        "--cap-drop",
        "ALL",
    ]
    for d in ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"):
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    prefix = os.path.dirname(os.path.dirname(python))
    if not prefix.startswith("/usr/") and prefix != "/usr":
        args += ["--ro-bind", prefix, prefix]
    args += [
        "--dev",
        "/dev",
        "--remount-ro",
        "/dev",
        "--size",
        str(1 << 20),
        "--tmpfs",
        "/dev/shm",
        "--size",
        str(lim.scratch_mb << 20),
        "--tmpfs",
        "/tmp",
        "--remount-ro",
        "/",
        "--chdir",
        "/tmp",
        "--clearenv",
        "--setenv",
        "PATH",
        "/usr/bin:/bin",
        "--setenv",
        "HOME",
        "/tmp",
        "--setenv",
        "LANG",
        "C.UTF-8",
    ]
    return args


# Built once per interpreter: the runner compiled (marshal) when the sandbox's Python
# reads this one's byte code, else its source, which costs a few ms to compile per execution.
_PAYLOADS: dict[str, tuple[bytes, str]] = {}
_BOOT_CODE = "import marshal,os,sys;exec(marshal.loads(os.fdopen(int(sys.argv[1]),'rb').read()))"
_BOOT_SOURCE = (
    "import os,sys;exec(compile(os.fdopen(int(sys.argv[1]),'rb').read(),'<r1lab-runner>','exec'))"
)
_RUNNER_FILES = ("protocol.py", "runner.py")  # run inside the sandbox, in this order


def _runner_source() -> str:
    here = Path(__file__).parent
    parts = [(here / name).read_text(encoding="utf-8") for name in _RUNNER_FILES]
    return "\n".join(parts) + "\n_runner_main()\n"


def _runner_payload(python: str) -> tuple[bytes, str]:
    if python not in _PAYLOADS:
        source = _runner_source()
        same = False
        if python == os.path.realpath(sys.executable):
            same = True
        else:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                out = subprocess.run(
                    [python, "-I", "-S", "-c", "import sys;print(sys.implementation.cache_tag)"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
                same = out.stdout.strip() == sys.implementation.cache_tag
        if same:
            import marshal

            code = compile(source, "<r1lab-runner>", "exec")
            _PAYLOADS[python] = (marshal.dumps(code), _BOOT_CODE)
        else:
            _PAYLOADS[python] = (source.encode("utf-8"), _BOOT_SOURCE)
    return _PAYLOADS[python]


def _sandbox_init(info_r: int, deadline: float) -> int | None:
    """A pidfd of the sandbox's PID 1, from bwrap's ``--info-fd`` report (which bwrap writes
    and closes right after creating it); None if bwrap ended without one."""
    import json

    data = b""
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([info_r], [], [], max(deadline - time.monotonic(), 0))
            chunk = os.read(info_r, 4096) if ready else b""
            if not chunk:
                break
            data += chunk
    finally:
        os.close(info_r)
    try:
        return os.pidfd_open(int(json.loads(data)["child-pid"]))
    except (ValueError, KeyError, TypeError, OSError):
        return None
