"""Feeding one execution its inputs, reading its outputs, and deciding its verdict from the
harness's own evidence: the test records on the pipe that only the harness process holds."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from r1lab.rewards.sandbox.base import Limits, Verdict


@dataclass
class Captured:
    stdout: bytes
    stderr: bytes
    stdout_total: int
    stderr_total: int
    records: list[bytes]
    timed_out: bool


def capture(
    proc: subprocess.Popen,
    outgoing: dict[int, bytes],
    verdict_r: int,
    lim: Limits,
    start: float,
    kill: Any,
) -> Captured:
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
    return Captured(
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


def decide(cap: Captured, n_tests: int, returncode: int | None) -> Verdict:
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
