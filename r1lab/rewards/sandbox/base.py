"""What users of the sandbox see: its limits, its verdict, and the error raised when it cannot run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from r1lab.errors import UserError

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
