"""Running untrusted, model-written Python against a task's tests, in a sandbox that holds.

During RL the policy writes the code and is paid when the tests pass, so the code is
adversarial: it will take any way to be scored as passing that the harness leaves open.
Each execution therefore gets a fresh bubblewrap sandbox (``bwrap``), and the verdict is
decided from evidence the program cannot produce without passing the tests.

Isolation, per execution
    New user, PID, network, IPC, UTS and cgroup namespaces, and no nested user namespaces.
    The file system holds read-only binds of the system directories and the Python
    install, a size-capped tmpfs ``/tmp`` (the scratch directory and working directory,
    gone when the sandbox ends) and a minimal ``/dev``; everything else, ``/`` included, is
    read-only, and there is no ``/proc``. The environment is cleared. The network namespace
    has only its own loopback, so nothing outside (the host's 127.0.0.1 included) can be
    reached. A seccomp filter refuses the system calls that reach other processes' memory
    or file descriptors (``ptrace``, ``process_vm_*``, ``pidfd_getfd``), that allocate
    memory outside the limits below (``memfd_create``, SysV shared memory and message
    queues), mounting, keyrings, BPF and the like. Resource limits (``setrlimit``) cap
    address space, CPU time, file size, open files and processes plus threads; the harness
    enforces the wall-time limit with SIGKILL, and since the sandbox's first process is PID
    1 of its namespace, everything the program started (double-forked daemons included)
    dies with it; an execution returns only once bwrap has reaped that PID 1, which the
    kernel allows only when the namespace is empty. When r1lab runs as root the sandbox runs as an unprivileged user (uid
    65534), since the kernel does not apply the process limit to uid 0. Output is read to
    the end but only the first ``Limits.output_bytes`` of each stream are kept.

Why the verdict cannot be forged
    The tests do not run in the program's process. Inside the sandbox, the harness's own
    process T (PID 1, this file's runner section) forks the program process S before it
    reads the tests; S closes every descriptor except its channel to T and only then runs
    the program. T runs the tests itself: when a test calls the program's function, T sends
    the arguments to S and gets back the result, and results cross as JSON that T decodes
    into plain ``int``/``float``/``str``/``list``/``tuple``/``dict``/``set``/… values, never
    code or objects with behaviour of their own (an object that is not plain data arrives
    as an opaque handle whose truth value and equality T refuses to take from S). The
    names a test takes from the program are the program's own definitions: builtins and
    standard modules (a program's own ``abs`` or ``math``) stay T's. So every ``assert``
    is evaluated by T on data, and an "always equal" object, an early ``os._exit(0)``,
    printed success markers or anything read from files, ``argv`` or the environment
    cannot make an assertion hold. T reports each test on a pipe that only T
    holds: S closed its copy before any program code ran and cannot reopen it (no ``/proc``;
    ``ptrace``, ``process_vm_readv`` and ``pidfd_getfd`` are refused; as PID 1, T cannot be
    killed or stopped from inside). There is no secret to steal: the harness trusts that
    pipe, not a token. The verdict is ``passed`` only if T reported every test it was given
    as passed; an exit, a crash or a timeout before that is not passed. The trust this
    leaves: the tests and the task's setup code (HumanEval's prompt, MBPP's setup) run in T
    and are taken as written by the task, not by the policy.

Semantics this implies, compared with running the tests in one interpreter: arguments and
results are passed by value (a mutation of an argument is not seen by the test), the
program runs as module ``solution`` (its ``if __name__ == "__main__":`` block does not
run), and an object of the program's own classes can be passed around, its attributes read
and methods called, but not compared or truth-tested by the tests.

Without bubblewrap the sandbox refuses to run and names the package to install;
``Sandbox(unsafe=True)`` runs without isolation, behind a loud warning, for debugging only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import queue
import select
import selectors
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

try:
    from r1lab.errors import UserError
except ImportError:  # never taken in r1lab; the sandbox receives only the runner section
    UserError = RuntimeError  # type: ignore[misc,assignment]

log = logging.getLogger(__name__)

PACKAGE_HINT = (
    "install the package `bubblewrap` (Debian/Ubuntu: apt-get install bubblewrap; "
    "Fedora: dnf install bubblewrap)"
)


class SandboxUnavailable(UserError):
    """The sandbox cannot run on this machine (no bubblewrap, no user namespaces, …)."""


@dataclass
class Limits:
    """Resource limits of one execution. Per-process limits apply to each process."""

    timeout_s: float = 10.0  # wall clock for the whole execution: start, load, every test
    cpu_s: float = 10.0  # CPU seconds per process (RLIMIT_CPU); past it the process is killed
    memory_mb: int = 512  # address space per process (RLIMIT_AS)
    max_procs: int = 8  # processes plus threads in the sandbox, the harness's own included
    scratch_mb: int = 64  # size of the writable /tmp, which also caps any one file
    max_open_files: int = 64
    output_bytes: int = 64 * 1024  # stdout and stderr kept, each; the rest is read and dropped


@dataclass
class Verdict:
    """The outcome of one execution.

    ``status`` is ``passed`` (every test passed), ``failed`` (a test failed or raised),
    ``timeout`` (the wall-time limit was hit), ``error`` (the program or the task's setup
    did not load, or the sandbox itself failed) or ``killed`` (the program was killed by a
    signal, usually for a resource limit). ``reason`` says why in one line.
    """

    status: str
    reason: str = ""
    tests_passed: int = 0
    tests_total: int = 0
    time_s: float = 0.0
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    test_errors: list[str | None] = field(default_factory=list)  # per test, None if passed

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def share(self) -> float:
        """Share of the tests that passed (0.0 with no tests)."""
        return self.tests_passed / self.tests_total if self.tests_total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, **asdict(self)}


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
            cap = _capture(proc, outgoing, verdict_r, lim, start, kill)
        finally:
            if init is not None:
                os.close(init)
            if self.unsafe:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                if scratch:
                    shutil.rmtree(scratch, ignore_errors=True)
        verdict = _decide(cap, len(job.tests), proc.returncode)
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


# Built once per interpreter: the runner section compiled (marshal) when the sandbox's Python
# reads this one's byte code, else its source, which costs a few ms to compile per execution.
_PAYLOADS: dict[str, tuple[bytes, str]] = {}
_BOOT_CODE = "import marshal,os,sys;exec(marshal.loads(os.fdopen(int(sys.argv[1]),'rb').read()))"
_BOOT_SOURCE = (
    "import os,sys;exec(compile(os.fdopen(int(sys.argv[1]),'rb').read(),'<r1lab-runner>','exec'))"
)
_RUNNER_MARK = "# ==== the runner: inside the sandbox"


def _runner_source() -> str:
    text = Path(__file__).read_text(encoding="utf-8")
    return text[text.index("\n" + _RUNNER_MARK) :] + "\n_runner_main()\n"


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


@dataclass
class _Captured:
    stdout: bytes
    stderr: bytes
    stdout_total: int
    stderr_total: int
    records: list[bytes]
    timed_out: bool


def _capture(
    proc: subprocess.Popen,
    outgoing: dict[int, bytes],
    verdict_r: int,
    lim: Limits,
    start: float,
    kill: Any,
) -> _Captured:
    """Feed the sandbox its inputs and read its outputs until it ends or runs out of time."""
    assert proc.stdout is not None and proc.stderr is not None
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    kept = {out_fd: bytearray(), err_fd: bytearray(), verdict_r: bytearray()}
    total = dict.fromkeys(kept, 0)
    cap = {out_fd: lim.output_bytes, err_fd: lim.output_bytes, verdict_r: 1 << 24}
    pending = {fd: memoryview(data) for fd, data in outgoing.items()}
    sel = selectors.DefaultSelector()
    for fd in kept:
        sel.register(fd, selectors.EVENT_READ)
    for fd in pending:
        sel.register(fd, selectors.EVENT_WRITE)
    deadline = start + lim.timeout_s
    timed_out = False
    try:
        while len(sel.get_map()):
            left = deadline - time.monotonic()
            if left <= 0 and not timed_out:
                timed_out = True
                kill()
                deadline = time.monotonic() + 5  # then only drain what is already written
                for fd in list(pending):
                    sel.unregister(fd)
                    os.close(fd)
                    del pending[fd]
                continue
            if left <= 0:
                break
            for key, _ in sel.select(left):
                fd = key.fd
                if fd in pending:
                    try:
                        n = os.write(fd, pending[fd][: 1 << 16])
                    except (BlockingIOError, InterruptedError):
                        continue
                    except BrokenPipeError:
                        n = len(pending[fd])
                    pending[fd] = pending[fd][n:]
                    if not len(pending[fd]):
                        sel.unregister(fd)
                        os.close(fd)
                        del pending[fd]
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    sel.unregister(fd)
                    continue
                room = cap[fd] - len(kept[fd])
                if room > 0:
                    kept[fd] += chunk[:room]
                total[fd] += len(chunk)
    finally:
        sel.close()
        for fd in pending:
            os.close(fd)
        os.close(verdict_r)
        if proc.poll() is None:
            kill()
        try:  # bwrap exits once the namespace is empty, which takes a fork bomb a moment
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    return _Captured(
        bytes(kept[out_fd]),
        bytes(kept[err_fd]),
        total[out_fd],
        total[err_fd],
        bytes(kept[verdict_r]).splitlines(),
        timed_out,
    )


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


_KILL_HINTS = {"SIGXCPU": "CPU time limit", "SIGKILL": "killed", "SIGSEGV": "crashed"}
# (SIGKILL inside the sandbox comes from the program itself or the kernel, e.g. out of memory)


def _decide(cap: _Captured, n_tests: int, returncode: int | None) -> Verdict:
    """The verdict from the records T wrote on the verdict pipe, and nothing else."""
    import json

    results: list[str | None] = []
    done: dict[str, Any] | None = None
    for line in cap.records:
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # T is trusted but may be cut off mid-line when it is killed
        if "i" in rec and rec["i"] == len(results):
            results.append(None if rec.get("ok") else str(rec.get("error") or "failed"))
        elif rec.get("done"):
            done = rec
    passed = sum(e is None for e in results)
    v = Verdict(
        "error",
        tests_passed=passed,
        tests_total=n_tests,
        stdout=cap.stdout.decode("utf-8", "replace"),
        stderr=cap.stderr.decode("utf-8", "replace"),
        stdout_truncated=cap.stdout_total > len(cap.stdout),
        stderr_truncated=cap.stderr_total > len(cap.stderr),
        test_errors=results + ["not run"] * (n_tests - len(results)),
    )
    program_signal = (done or {}).get("program_signal")
    if done is not None and program_signal and passed < n_tests:
        name = _signal_name(program_signal)
        v.status = "killed"
        v.reason = f"the program was killed by {name} ({_KILL_HINTS.get(name, 'signal')})"
    elif done is not None and done.get("load_error"):
        v.status, v.reason = "error", f"the program did not load: {done['load_error']}"
    elif done is not None and done.get("setup_error"):
        v.status, v.reason = "error", f"the task's setup failed: {done['setup_error']}"
    elif done is not None and len(results) == n_tests:
        if passed == n_tests:
            v.status, v.reason = "passed", f"{passed}/{n_tests} tests passed"
        else:
            first = next(i for i, e in enumerate(results) if e is not None)
            v.status = "failed"
            v.reason = f"{passed}/{n_tests} tests passed; test {first}: {results[first]}"
    elif cap.timed_out:
        v.status = "timeout"
        v.reason = f"the wall-time limit was reached ({passed}/{n_tests} tests passed by then)"
    elif returncode is not None and (returncode < 0 or returncode > 128):
        num = -returncode if returncode < 0 else returncode - 128
        v.status, v.reason = "killed", f"the sandbox was killed by {_signal_name(num)}"
    else:
        last = (v.stderr.strip().splitlines() or ["no report"])[-1]
        v.reason = f"the sandbox ended without a verdict (exit {returncode}): {last}"
    return v


# --- seccomp ----------------------------------------------------------------------------------

# Refused with EPERM. Numbers from the kernel's unistd headers; aarch64 uses the generic table.
_DENY = {
    "x86_64": (
        0xC000003E,
        [101, 310, 311, 438, 312, 319, 447, 29, 68, 165, 166, 155, 161, 272, 308, 429, 428, 430]
        + [431, 432, 433, 442, 250, 248, 249, 321, 298, 323, 425, 426, 427, 300, 246, 320, 175]
        + [313, 176, 169, 167, 168, 163, 179, 103, 153, 212, 304, 303, 135, 134, 136, 139, 156],
    ),
    "aarch64": (
        0xC00000B7,
        [117, 270, 271, 438, 272, 279, 447, 194, 186, 40, 39, 41, 51, 97, 268, 429, 428, 430]
        + [431, 432, 433, 442, 219, 217, 218, 280, 241, 282, 425, 426, 427, 262, 104, 294, 105]
        + [273, 106, 142, 224, 225, 89, 60, 116, 58, 18, 265, 264, 92],
    ),
}
_DENIED_NAMES = (
    "ptrace process_vm_readv process_vm_writev pidfd_getfd kcmp memfd_create memfd_secret "
    "shmget msgget mount umount2 pivot_root chroot unshare setns move_mount open_tree fsopen "
    "fsconfig fsmount fspick mount_setattr keyctl add_key request_key bpf perf_event_open "
    "userfaultfd io_uring_setup io_uring_enter io_uring_register fanotify_init kexec_load "
    "kexec_file_load init_module finit_module delete_module reboot swapon swapoff acct quotactl "
    "syslog vhangup lookup_dcookie open_by_handle_at name_to_handle_at personality"
)


def seccomp_filter(machine: str | None = None) -> bytes:
    """The classic-BPF seccomp program (``struct sock_filter[]``) that bwrap installs."""
    machine = machine or platform.machine()
    if machine not in _DENY:
        raise SandboxUnavailable(
            f"the code sandbox's seccomp filter supports x86_64 and aarch64, not {machine}"
        )
    arch, numbers = _DENY[machine]
    ld_abs, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    eperm, allow, kill = 0x00050000 | 1, 0x7FFF0000, 0x80000000

    def op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
        return struct.pack("HBBI", code, jt, jf, k)

    prog = [op(ld_abs, 4), op(jeq, arch, 1, 0), op(ret, kill), op(ld_abs, 0)]
    if machine == "x86_64":  # the x32 ABI's numbers would slip past the list
        prog += [op(jge, 0x40000000, 0, 1), op(ret, eperm)]
    for nr in numbers:
        prog += [op(jeq, nr, 0, 1), op(ret, eperm)]
    prog.append(op(ret, allow))
    return b"".join(prog)


# ==== the runner: inside the sandbox ==========================================================
# Everything from the line above to the end of the file is what the sandbox runs: the
# harness's process T, which forks the program process S (see the module docstring). It is
# sent alone, so it uses no name defined above, and only the standard library's cheap C
# modules, since it starts on every execution.


class _ProtocolError(Exception):
    """The other process sent something that is not a well-formed message."""


class _RemoteError(Exception):
    """An exception raised by the other process whose type does not exist here."""


class _ProgramGone(Exception):
    """The program process has exited, so nothing more can be asked of it."""


def _scanner():
    import _json

    class _Options:
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int

        @staticmethod
        def parse_constant(name):
            raise _ProtocolError(f"bad constant {name}")

    return _json.make_scanner(_Options()), _json.encode_basestring_ascii


class _Channel:
    """Newline-framed JSON messages over a pair of pipes."""

    def __init__(self, rfd, wfd, limit=1 << 26):
        self._reader = open(rfd, "rb", buffering=1 << 16)  # noqa: SIM115 (lives as long as T)
        self._wfd = wfd
        self._limit = limit
        self._scan, _ = _scanner()
        self.closed = False

    def send(self, text):
        import os

        if self.closed:
            raise _ProgramGone("the program has exited")
        data = memoryview((text + "\n").encode("ascii"))
        try:
            while data:
                data = data[os.write(self._wfd, data) :]
        except OSError:
            self.closed = True
            raise _ProgramGone("the program has exited") from None

    def recv(self):
        if self.closed:
            raise _ProgramGone("the program has exited")
        line = self._reader.readline(self._limit)
        if not line:
            self.closed = True
            raise _ProgramGone("the program has exited")
        if not line.endswith(b"\n"):
            self.closed = True
            raise _ProtocolError("message too long")
        try:
            text = line[:-1].decode("ascii")
            value, end = self._scan(text, 0)
        except (StopIteration, ValueError, RecursionError) as e:
            self.closed = True
            raise _ProtocolError(f"malformed message ({type(e).__name__})") from None
        if end != len(text) or type(value) is not list or not value or type(value[0]) is not str:
            self.closed = True
            raise _ProtocolError("malformed message")
        return value


class _Proxy:
    """An object of the other process, known here by a handle.

    Calls, attribute access, iteration, indexing, ``len``, ``str`` and ``repr`` are asked of
    the other process; what it answers is decoded as data. Truth value and comparison are
    refused: taking them from the program would let an object claim to equal anything.
    """

    __slots__ = ("_codec", "_id")

    def __init__(self, codec, hid):
        object.__setattr__(self, "_codec", codec)
        object.__setattr__(self, "_id", hid)

    def __call__(self, *args, **kwargs):
        return self._codec.request("call", self, list(args), kwargs)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._codec.request("getattr", self, name)

    def __setattr__(self, name, value):
        self._codec.request("setattr", self, name, value)

    def __iter__(self):
        return self._codec.request("iter", self)

    def __next__(self):
        return self._codec.request("next", self)

    def __getitem__(self, key):
        return self._codec.request("getitem", self, key)

    def __len__(self):
        n = self._codec.request("len", self)
        if type(n) is not int:
            raise TypeError("len() of a remote object is not an int")
        return n

    def __repr__(self):
        text = self._codec.request("repr", self)
        return text if type(text) is str else "<remote object>"

    def __str__(self):
        text = self._codec.request("str", self)
        return text if type(text) is str else "<remote object>"

    def __bool__(self):
        raise TypeError("the program returned an object that is not plain data (no truth value)")

    def __eq__(self, other):
        if other is self:
            return True
        raise TypeError("the program returned an object that is not plain data (no comparison)")

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = object.__hash__


class _Codec:
    """Values to JSON text and back, plus the request/reply loop over a channel.

    Plain data (None, bool, int, float, complex, str, bytes, list, tuple, dict, set,
    frozenset, range) travels as tagged JSON; any other object stays where it is and travels
    as a handle. ``serves`` lists what the other process may ask of this one's objects.
    Decoding builds only the types named here, whatever the text says.
    """

    def __init__(self, channel, serves):
        import builtins

        self.chan = channel
        self.serves = serves
        self._own = {}  # handle -> own object the other process may refer to
        self._handle_of = {}  # id(object) -> handle
        self._proxies = {}  # the other process's handle -> proxy
        self._builtins = builtins
        _, self._quote = _scanner()

    # encoding
    def enc(self, x, depth=0):
        if depth > 200:
            raise RecursionError("value nested too deeply")
        if x is None:
            return "null"
        t = type(x)
        if t is bool:
            return "true" if x else "false"
        if t is str:
            return self._quote(x)
        if t is int:
            return str(x) if -(2**62) < x < 2**62 else f'["I","{x:x}"]'
        if t is float:
            r = float.__repr__(x)
            return r if r[-1].isdigit() else f'["F","{r}"]'
        if t is list or t is tuple:
            tag = "l" if t is list else "t"
            return f'["{tag}"' + "".join("," + self.enc(v, depth + 1) for v in x) + "]"
        if t is dict:
            items = "".join(
                f",[{self.enc(k, depth + 1)},{self.enc(v, depth + 1)}]" for k, v in x.items()
            )
            return f'["d"{items}]'
        if t is _Proxy and x._codec is self:
            return f'["o",{x._id}]'
        if t is _Module:
            return f'["m",{self._quote(x.name)}]'
        for base, plain in _PLAIN:
            if isinstance(x, base) and t is not base:  # subclasses travel as their base's data
                return self.enc(plain(x), depth)
        if t is set or t is frozenset:
            tag = "s" if t is set else "f"
            return f'["{tag}"' + "".join("," + self.enc(v, depth + 1) for v in x) + "]"
        if t is bytes or t is bytearray:
            return f'["{"b" if t is bytes else "y"}","{x.hex()}"]'
        if t is complex:
            return f'["c",{self.enc(x.real)},{self.enc(x.imag)}]'
        if t is range:
            return f'["r",{x.start},{x.stop},{x.step}]'
        if getattr(self._builtins, getattr(x, "__name__", ""), None) is x:
            return f'["B","{x.__name__}"]'  # len, int, str…: the other side has its own
        key = id(x)
        if key not in self._handle_of:
            self._handle_of[key] = len(self._own)
            self._own[len(self._own)] = x
        return f'["h",{self._handle_of[key]}]'

    # decoding
    def dec(self, x, depth=0):
        t = type(x)
        if t is str or t is int or t is float or t is bool or x is None:
            return x
        if t is not list or not x or type(x[0]) is not str or depth > 200:
            raise _ProtocolError("malformed value")
        tag, rest = x[0], x[1:]
        if tag == "l":
            return [self.dec(v, depth + 1) for v in rest]
        if tag == "t":
            return tuple(self.dec(v, depth + 1) for v in rest)
        if tag == "d":
            out = {}
            for pair in rest:
                if type(pair) is not list or len(pair) != 2:
                    raise _ProtocolError("malformed dict")
                out[self.dec(pair[0], depth + 1)] = self.dec(pair[1], depth + 1)
            return out
        if tag == "s":
            return {self.dec(v, depth + 1) for v in rest}
        if tag == "f":
            return frozenset(self.dec(v, depth + 1) for v in rest)
        if len(rest) == 1 and type(rest[0]) is str:
            arg = rest[0]
            try:
                if tag == "I":
                    return int(arg, 16)
                if tag == "F" and arg in ("nan", "inf", "-inf"):
                    return float(arg)
                if tag == "b":
                    return bytes.fromhex(arg)
                if tag == "y":
                    return bytearray.fromhex(arg)
            except ValueError:
                raise _ProtocolError("malformed value") from None
            if tag == "B":
                found = getattr(self._builtins, arg, None)
                if callable(found):
                    return found
            if tag == "m":
                return _import_stdlib(arg)
        if tag == "c" and len(rest) == 2 and all(type(v) in (int, float) for v in rest):
            return complex(rest[0], rest[1])
        if tag == "F" and len(rest) == 1 and type(rest[0]) is str:
            raise _ProtocolError("malformed float")
        if tag == "r" and len(rest) == 3 and all(type(v) is int for v in rest):
            return range(*rest)
        if tag in ("h", "o") and len(rest) == 1 and type(rest[0]) is int:
            hid = rest[0]
            if tag == "o":
                if hid not in self._own:
                    raise _ProtocolError("unknown handle")
                return self._own[hid]
            if hid not in self._proxies:
                self._proxies[hid] = _Proxy(self, hid)
            return self._proxies[hid]
        raise _ProtocolError(f"unknown value tag {tag!r}")

    # requests and replies
    def request(self, op, target, *args):
        parts = "".join("," + self.enc(a) for a in args)
        self.chan.send(f'["{op}",{self.enc(target)}{parts}]')
        return self.wait_reply()

    def wait_reply(self):
        while True:
            msg = self.chan.recv()
            if msg[0] == "ok" and len(msg) == 2:
                return self.dec(msg[1])
            if msg[0] == "err" and len(msg) == 3:
                raise _exception(self._builtins, msg[1], msg[2])
            self.serve(msg)

    def serve(self, msg):
        try:
            if msg[0] not in self.serves or len(msg) < 2:
                raise PermissionError(f"request {msg[0]!r} is not served")
            target = self.dec(msg[1])
            if type(target) is _Proxy or target is None:
                raise _ProtocolError("a request must name an object of this process")
            args = [self.dec(a) for a in msg[2:]]
            result = self.serves[msg[0]](target, *args)
            reply = f'["ok",{self.enc(result)}]'
        except _ProtocolError:
            raise
        except BaseException as e:  # even SystemExit: the program's exit is its answer here
            reply = f'["err",{self._quote(type(e).__name__)},{self._quote(_short(e))}]'
        self.chan.send(reply)


# How an instance of a subclass of a plain type becomes that plain type without asking the
# subclass (whose __str__ or __int__ could say anything).
_PLAIN = (
    (int, int.__index__),
    (float, float.__float__),
    (str, str.__str__),
    (list, list),
    (tuple, tuple),
    (dict, dict),
    (set, set),
    (frozenset, frozenset),
)


def _short(e, limit=400):
    text = str(e)
    return text if len(text) <= limit else text[:limit] + "…"


def _exception(builtins, name, message):
    if type(name) is not str or type(message) is not str:
        return _ProtocolError("malformed error")
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)
        except Exception:
            pass
    return _RemoteError(f"{name}: {message}")


def _import_stdlib(name):
    import sys

    if name.partition(".")[0] not in sys.stdlib_module_names:
        raise _ProtocolError(f"not a standard-library module: {name}")
    __import__(name)
    return sys.modules[name]


def _call(obj, args, kwargs):
    if type(args) is not list or type(kwargs) is not dict:
        raise TypeError("malformed call")
    return obj(*args, **kwargs)


# What T answers when S asks about T's objects (functions and iterators the tests passed in):
# calling them and iterating, never reading their attributes, which would reach T's globals.
def _t_call(obj, args, kwargs):
    if type(obj) is not type(_call):
        raise PermissionError("only functions passed by the tests can be called back")
    return _call(obj, args, kwargs)


_T_SERVES = {"call": _t_call, "iter": iter, "next": next}
_S_SERVES = {
    "call": _call,
    "getattr": getattr,
    "setattr": setattr,
    "iter": iter,
    "next": next,
    "getitem": lambda obj, key: obj[key],
    "len": len,
    "repr": repr,
    "str": str,
}


def _runner_main():
    import _signal
    import builtins
    import os
    import resource
    import sys

    # argv: code fd (already read), program fd, job fd, verdict fd, then the limits
    _, prog_fd, job_fd, verdict_fd, cpu, mem, fsize, nofile, nproc = map(int, sys.argv[1:10])
    # As PID 1, T ignores signals it has no handler for; Python installs one for SIGINT.
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    for res, value in (
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_AS, (mem, mem)),
        (resource.RLIMIT_FSIZE, (fsize, fsize)),
        (resource.RLIMIT_NOFILE, (nofile, nofile)),
        (resource.RLIMIT_NPROC, (nproc, nproc)),
        (resource.RLIMIT_CORE, (0, 0)),
    ):
        if value[0] >= 0:
            resource.setrlimit(res, value)
    t_read, s_write = os.pipe()
    s_read, t_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        # S: let go of everything of T's before any program code runs.
        for fd in (job_fd, verdict_fd, t_read, t_write):
            os.close(fd)
        _program_main(prog_fd, s_read, s_write)
    for fd in (prog_fd, s_read, s_write):
        os.close(fd)

    def report(text):
        data = memoryview((text + "\n").encode("ascii"))
        while data:
            data = data[os.write(verdict_fd, data) :]

    codec = _Codec(_Channel(t_read, t_write), _T_SERVES)
    quote = codec._quote
    with os.fdopen(job_fd, "rb") as f:
        scan, _ = _scanner()
        job = codec.dec(scan(f.read().decode("ascii"), 0)[0])

    def finish(**fields):
        status = _reap(pid)
        parts = ['"done":true'] + [f'"{k}":{quote(v)}' for k, v in fields.items()]
        if status is not None:
            parts.append(f'"program_signal":{status}')
        report("{" + ",".join(parts) + "}")
        os._exit(0)

    try:
        exports = codec.wait_reply()
        if type(exports) is not dict:
            raise _ProtocolError("malformed exports")
    except _ProgramGone:
        finish(load_error=_exit_description(pid))
    except BaseException as e:
        finish(load_error=f"{type(e).__name__}: {_short(e)}")
    ns = {"__name__": "__test__", "__builtins__": builtins}
    entry = job["entry_point"]
    for name, value in exports.items():
        # Names the tests may take for the standard ones (builtins, stdlib modules) stay
        # T's own: a program exporting its own `abs` or `math` must not answer for them.
        if type(name) is not str or name.startswith("__"):
            continue
        if name != entry and hasattr(builtins, name):
            continue
        if name in sys.stdlib_module_names:
            try:
                value = _import_stdlib(name)
            except ImportError:
                continue
        ns[name] = value
    try:
        if job["setup"]:
            exec(compile(job["setup"], "<setup>", "exec"), ns)
    except BaseException as e:
        finish(setup_error=f"{type(e).__name__}: {_short(e)}")
    if entry:
        ns[entry] = exports[entry] if entry in exports else _missing(entry)
    for i, source in enumerate(job["tests"]):
        try:
            exec(compile(source, f"<test {i}>", "exec"), ns)
            report(f'{{"i":{i},"ok":true}}')
        except BaseException as e:
            if isinstance(e, _ProgramGone):
                e = _ProgramGone(_exit_description(pid))
            report(f'{{"i":{i},"ok":false,"error":{quote(_describe(e, i, source))}}}')
    finish()


def _missing(name):
    def missing(*args, **kwargs):
        raise NameError(f"the program does not define {name}")

    return missing


def _describe(e, i, source):
    """``Type: message``, and for a failed assertion with no message, the assertion's line."""
    text = f"{type(e).__name__}: {_short(e)}" if str(e) else type(e).__name__
    tb, line = e.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == f"<test {i}>":
            line = tb.tb_lineno
        tb = tb.tb_next
    lines = source.splitlines()
    if line is not None and 0 < line <= len(lines):
        text += f" at line {line}: {lines[line - 1].strip()[:200]}"
    return text


_wait_status = {}


def _reap(pid):
    """The signal that ended the program process, if it ended by one."""
    import os

    if pid not in _wait_status:
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if got == 0:
            return None
        _wait_status[pid] = status
    status = _wait_status[pid]
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else None


def _exit_description(pid):
    import os
    import time

    for _ in range(50):  # the channel closes as the process exits; wait for that a moment
        if _reap(pid) is not None or pid in _wait_status:
            break
        time.sleep(0.002)
    if pid not in _wait_status:
        return "the program closed its channel to the tests"
    status = _wait_status[pid]
    if os.WIFSIGNALED(status):
        return f"the program process was killed by signal {os.WTERMSIG(status)}"
    return f"the program process exited with code {os.WEXITSTATUS(status)}"


def _program_main(prog_fd, rfd, wfd):
    import builtins
    import os
    import sys

    with os.fdopen(prog_fd, "rb") as f:
        source = f.read().decode("utf-8", "surrogateescape")
    codec = _Codec(_Channel(rfd, wfd), _S_SERVES)
    module = type(sys)("solution")
    module.__builtins__ = builtins
    sys.modules["solution"] = module
    try:
        exec(compile(source, "<program>", "exec"), module.__dict__)
        exports = {}
        for name, value in list(module.__dict__.items()):
            if name.startswith("__"):
                continue
            if type(value) is not type(sys):
                exports[name] = value
            elif value.__name__.partition(".")[0] in sys.stdlib_module_names:
                exports[name] = _Module(value.__name__)
        reply = f'["ok",{codec.enc(exports)}]'
    except BaseException as e:
        where = ""
        tb = e.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == "<program>":
                where = f" (line {tb.tb_lineno})"
            tb = tb.tb_next
        if isinstance(e, SyntaxError):
            where = ""  # its message names the line already
        message = f"{_short(e)}{where}"
        reply = f'["err",{codec._quote(type(e).__name__)},{codec._quote(message)}]'
    try:
        codec.chan.send(reply)
        while True:
            codec.serve(codec.chan.recv())
    except BaseException:
        pass
    os._exit(0)


class _Module:
    """A module the program imported, sent by name: T imports its own copy (stdlib only)."""

    def __init__(self, name):
        self.name = name
