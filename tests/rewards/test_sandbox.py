"""The code sandbox: verdicts, the data-only channel, and a battery of hostile programs.

Every hostile program renames itself (``prctl(PR_SET_NAME)``, inherited by its children) to
a fresh token, so that a process it leaves behind would show up in the host's /proc.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest

from r1lab.rewards.sandbox import (
    Limits,
    Sandbox,
    SandboxPool,
    SandboxUnavailable,
    seccomp_filter,
)
from r1lab.rewards.sandbox.protocol import _Codec, _ProtocolError, _Proxy

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"
)

LIMITS = Limits(
    timeout_s=2.0, cpu_s=1, memory_mb=256, max_procs=8, scratch_mb=16, output_bytes=4096
)


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    sb = Sandbox(LIMITS)
    sb.check()
    return sb


# --- verdicts and the data-only channel ---------------------------------------------------


@needs_bwrap
def test_pass_fail_and_reasons(sandbox):
    program = "def add(a, b):\n    print('adding', a, b)\n    return a + b\n"
    v = sandbox.run(program, ["assert add(1, 2) == 3", "x = add(2, 2)\nassert x == 5"])
    assert (v.status, v.tests_passed, v.tests_total, v.share) == ("failed", 1, 2, 0.5)
    assert v.test_errors == [None, "AssertionError at line 2: assert x == 5"]
    assert v.stdout == "adding 1 2\nadding 2 2\n"
    assert sandbox.run(program, ["assert add(1, 2) == 3"]).passed

    v = sandbox.run("def add(a, b:\n", ["assert add(1, 2) == 3"])
    assert v.status == "error" and "SyntaxError" in v.reason


@needs_bwrap
def test_setup_and_entry_point_like_humaneval(sandbox):
    # The task's setup (HumanEval's prompt) defines a helper and a stub of the entry point;
    # the tests use the task's helper and the program's function.
    setup = "def double(x):\n    return 2 * x\n\ndef f(x):\n    'stub'\n"
    program = "def double(x):\n    return 0\n\ndef f(x):\n    return x * 2\n"
    test = "def check(candidate):\n    assert candidate(3) == double(3)\n\ncheck(f)\n"
    assert sandbox.run(program, [test], setup=setup, entry_point="f").passed
    v = sandbox.run("def g(x):\n    return 6\n", [test], setup=setup, entry_point="f")
    assert v.status == "failed" and "does not define f" in v.reason


@needs_bwrap
def test_objects_iterators_callbacks_and_exceptions_cross_the_channel(sandbox):
    program = """
from collections import namedtuple, OrderedDict
class Node:
    def __init__(self, v):
        self.v, self.left = v, None
def depth(n):
    return 0 if n is None else 1 + depth(n.left)
def squares(k):
    return map(lambda i: i * i, range(k))
def apply(fn, xs):
    return [fn(x) for x in xs]
def point():
    return namedtuple("P", "x y")(1, 2)
def ordered():
    return OrderedDict(a=1)
def fail(x):
    raise ValueError(f"bad {x}")
"""
    tests = [
        "root = Node(1)\nroot.left = Node(2)\nassert depth(root) == 2 and root.left.v == 2",
        "assert list(squares(4)) == [0, 1, 4, 9] and 9 in squares(4)",
        "assert apply(lambda x: x + 1, [1, 2]) == [2, 3]",
        "assert point() == (1, 2) and ordered() == {'a': 1}",
        "try:\n    fail(3)\nexcept ValueError as e:\n    assert str(e) == 'bad 3'\nelse:\n    assert False",
    ]
    v = sandbox.run(program, tests)
    assert v.passed, v.test_errors


@needs_bwrap
def test_objects_that_claim_equality_or_truth_are_not_believed(sandbox):
    program = """
class Liar(int):
    def __eq__(self, other):
        return True
class Anything:
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    def __bool__(self):
        return True
def f(x):
    return Anything()
def g(x):
    return Liar(7)
class FakeMath:
    def isclose(self, a, b):
        return True
math = FakeMath()
def abs(x):
    return 0
"""
    tests = [
        "assert f(1) == 2",
        "assert f(1)",
        "assert not f(1) != 2",
        "assert g(1) == 2",
        "assert math.isclose(g(1), 2)",  # the tests' math and abs are the real ones
        "assert abs(g(1) - 2) < 1e-9",
    ]
    v = sandbox.run(program, tests)
    assert v.tests_passed == 0 and v.status == "failed"
    # an int subclass travels as its int value: compared by T, it is 7
    assert sandbox.run(program, ["assert g(1) == 7"]).passed


# --- the hostile battery ------------------------------------------------------------------


def _procs_named(token: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if Path(entry.path, "comm").read_text().strip() == token:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _contained(sandbox: Sandbox, program: str, tests: list[str], tmp_path: Path, **kw):
    """Run a hostile program; check that nothing of it is left and nothing outside changed."""
    token = "r1h" + secrets.token_hex(6)  # comm holds 15 characters
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "keep.txt").write_text("precious")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    rename = f"import ctypes\nctypes.CDLL(None).prctl(15, b'{token}', 0, 0, 0)\n"
    start = time.monotonic()
    v = sandbox.run(rename + program.replace("DECOY", str(decoy)), tests, **kw)
    elapsed = time.monotonic() - start
    assert elapsed < LIMITS.timeout_s + 3, "the harness must not wait past the time limit"
    assert _procs_named(token) == [], "a process of the sandbox outlived it"
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert (decoy / "keep.txt").read_text() == "precious"
    assert len(v.stdout) <= LIMITS.output_bytes and len(v.stderr) <= LIMITS.output_bytes
    assert not v.passed
    return v


HOSTILE = {
    "infinite loop": ("def f():\n    while True:\n        pass\n", ("timeout", "killed")),
    "loop ignoring SIGTERM": (
        "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "def f():\n    while True:\n        pass\n",
        ("timeout", "killed"),
    ),
    "fork bomb": (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        ("timeout", "killed"),
    ),
    "thread bomb": (
        "import threading, time\nn = 0\ntry:\n    while True:\n"
        "        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
        "        n += 1\nexcept RuntimeError:\n    pass\ndef f():\n    return n\n",
        ("failed",),
    ),
    "memory bomb": (
        "blocks = []\ndef f():\n    while True:\n        blocks.append(bytearray(50 << 20))\n",
        ("failed",),
    ),
    "10 GB file": (
        "def f():\n    with open('/tmp/big', 'wb') as out:\n"
        "        for _ in range(10 * 1024):\n            out.write(b'x' * (1 << 20))\n"
        "    return True\n",
        ("failed",),
    ),
    "delete a folder outside": (
        "import shutil, os\n"
        "def f():\n    shutil.rmtree('DECOY')\n    return not os.path.exists('DECOY')\n",
        ("failed",),
    ),
    "double-forked setsid daemon": (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        time.sleep(0.3)\n        open('DECOY/marker', 'w').write('alive')\n"
        "        time.sleep(60)\n    os._exit(0)\ndef f():\n    return False\n",
        ("failed",),
    ),
    "os._exit(0) before the tests": (
        "import os\nos._exit(0)\ndef f():\n    return True\n",
        ("error",),
    ),
    "killing or stopping the parent": (
        "import os, signal\ndef f():\n"
        "    for pid in (os.getppid(), 1, -1, PARENT):\n"
        "        for sig in (signal.SIGSTOP, signal.SIGTERM, signal.SIGKILL):\n"
        "            try:\n                os.kill(pid, sig)\n"
        "            except OSError:\n                pass\n"
        "    return False\n",
        ("failed",),  # the harness's process lived on to report the failed test
    ),
}


@needs_bwrap
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_program_is_contained(sandbox, tmp_path, name):
    program, statuses = HOSTILE[name]
    program = program.replace("PARENT", str(os.getpid()))
    v = _contained(sandbox, program, ["assert f() is True"], tmp_path)
    assert v.status in statuses, (v.status, v.reason)
    if name == "thread bomb":  # the limit held: the harness's process and the program's,
        assert sandbox.run(program, ["assert 0 < f() <= 6"]).passed  # plus 6 threads
    if name == "double-forked setsid daemon":
        time.sleep(0.5)  # past the daemon's wake-up: nothing may appear, nothing may live
        assert not (tmp_path / "decoy" / "marker").exists()


@needs_bwrap
def test_cannot_read_the_parents_environment(sandbox, tmp_path, monkeypatch):
    secret = "canary-" + secrets.token_hex(8)
    monkeypatch.setenv("R1LAB_TEST_CANARY", secret)
    program = """
import os
def f():
    found = [os.environ.get("R1LAB_TEST_CANARY", "")]
    for path in (f"/proc/{os.getppid()}/environ", "/proc/1/environ", "/proc/self/environ",
                 f"/proc/{PARENT}/environ"):
        try:
            found.append(open(path, "rb").read().decode("latin-1"))
        except OSError:
            pass
    text = " ".join(found)
    print(text)
    return text
"""
    program = program.replace("PARENT", str(os.getpid()))
    v = _contained(sandbox, program, [f"assert '{secret}' in f()"], tmp_path)
    assert v.status == "failed" and secret not in v.stdout


@needs_bwrap
def test_cannot_reach_a_listener_on_the_hosts_loopback(sandbox, tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        program = f"""
import socket
def f():
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=1).close()
        return True
    except OSError:
        return False
"""
        v = _contained(sandbox, program, ["assert f() is True"], tmp_path)
        assert v.status == "failed"
        with pytest.raises(TimeoutError):
            listener.accept()


@needs_bwrap
def test_a_flood_of_output_is_capped(sandbox, tmp_path):
    program = (
        "import sys\nfor _ in range(100):\n    sys.stdout.write('y' * (1 << 20))\n"
        "def f():\n    return 1\n"
    )
    v = _contained(sandbox, program, ["assert f() == 2"], tmp_path)
    assert v.stdout_truncated and len(v.stdout) == LIMITS.output_bytes
    assert v.status == "failed"


@needs_bwrap
def test_forged_success_markers_and_sentinels_do_not_pass(sandbox, tmp_path):
    # Print what a harness might look for, write it to every descriptor, read everything a
    # sentinel could hide in (argv, own source, files, /proc), try to reach the harness's
    # process, then leave before the tests.
    program = r"""
import ctypes, gc, os, sys
fake = b'{"done":true}\n{"i":0,"ok":true}\n["ok",true]\nPASSED\nALL TESTS PASSED\n'
seen = [" ".join(sys.argv)]
for root in ("/", "/tmp", "/dev"):
    for name in os.listdir(root):
        seen.append(name)
for obj in gc.get_objects():
    if isinstance(obj, dict):
        seen.extend(str(v)[:100] for v in obj.values() if isinstance(v, (str, bytes)))
libc = ctypes.CDLL(None, use_errno=True)
attach = libc.ptrace(16, 1, 0, 0)   # PTRACE_ATTACH to the harness's process, pid 1
steal = libc.syscall(438, 0, 3, 0)  # pidfd_getfd
try:
    os.memfd_create("x")
    memfd = True
except OSError:
    memfd = False
print(attach, steal, memfd, flush=True)
for fd in range(64):
    try:
        os.write(fd, fake)
    except OSError:
        pass
os._exit(0)
def f():
    return True
"""
    v = _contained(sandbox, program, ["assert f() is True"], tmp_path)
    assert v.status == "error" and v.tests_passed == 0
    assert "-1 -1 False" in v.stdout  # ptrace, pidfd_getfd and memfd_create are refused


# --- the pool, the missing tool, the unsafe mode ------------------------------------------


@needs_bwrap
def test_pool_runs_jobs_concurrently_with_a_bounded_queue(sandbox):
    program = "def sq(x):\n    return x * x\n"
    with SandboxPool(sandbox, workers=2, queue_size=1) as pool:
        futures = [pool.submit(program, [f"assert sq({i}) == {i * i + i % 2}"]) for i in range(6)]
        assert [f.result().passed for f in futures] == [i % 2 == 0 for i in range(6)]
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(program, ["assert True"])


def test_missing_bubblewrap_names_the_package():
    sb = Sandbox(bwrap="/nonexistent/bwrap")
    with pytest.raises(SandboxUnavailable, match="install the package `bubblewrap`"):
        sb.run("def f():\n    return 1\n", ["assert f() == 1"])


def test_unsafe_mode_is_an_explicit_loud_opt_in(caplog):
    with caplog.at_level(logging.WARNING):
        sb = Sandbox(bwrap="/nonexistent/bwrap", unsafe=True, python=sys.executable)
    assert "UNSAFE" in caplog.text
    v = sb.run("def f():\n    return 1\n", ["assert f() == 1", "assert f() == 2"])
    assert (v.status, v.tests_passed) == ("failed", 1)


def test_seccomp_filter_layout():
    # load arch, check it, kill otherwise, load nr, x32 guard (2), 2 per denied call, allow
    prog = seccomp_filter("x86_64")
    assert len(prog) == 8 * (4 + 2 + 2 * 52 + 1)
    assert len(seccomp_filter("aarch64")) == 8 * (4 + 2 * 48 + 1)
    with pytest.raises(SandboxUnavailable, match="riscv64"):
        seccomp_filter("riscv64")


def test_decoding_builds_only_plain_data():
    codec = _Codec(None, {})
    value = ["l", 1, 2.5, "s", None, True, ["t", ["I", "-ff"]], ["d", [["f", 1], ["s", 2]]]]
    assert codec.dec(value) == [1, 2.5, "s", None, True, (-255,), {frozenset({1}): {2}}]
    assert type(codec.dec(["h", 3])) is _Proxy
    for bad in (["x", 1], ["o", 7], ["m", "r1lab"], ["F", "1e999x"], {"a": 1}, ["d", [1]]):
        with pytest.raises(_ProtocolError):
            codec.dec(bad)


def test_remote_objects_refuse_truth_and_comparison():
    proxy = _Codec(None, {}).dec(["h", 0])
    with pytest.raises(TypeError):
        bool(proxy)
    with pytest.raises(TypeError):
        _ = proxy == 1
    with pytest.raises(TypeError):
        _ = proxy != 1
    assert proxy == proxy  # identity is the one comparison it allows


@needs_bwrap
def test_a_sleeping_program_is_stopped_at_the_wall_time_limit(sandbox):
    # No CPU is used, so only the harness's wall-clock kill can end it.
    start = time.monotonic()
    v = sandbox.run("import time\ndef f():\n    time.sleep(30)\n", ["f()"])
    assert v.status == "timeout" and time.monotonic() - start < LIMITS.timeout_s + 2
