"""The fuzz tests' hard guard: a hang ends the run with every thread's traceback.

Hypothesis's ``deadline`` fails an example that was slow, but only once it returns; an
example that never returns (catastrophic regex backtracking, an endless loop) would stall CI
instead. :func:`faulthandler.dump_traceback_later` watches from its own thread, so it fires
even while the main thread is stuck in C code, and it leaves SIGALRM (math-verify's timeout)
alone.
"""

from __future__ import annotations

import faulthandler
import sys
from collections.abc import Iterator
from typing import Any

import pytest

HANG_S = 180  # far above any fuzz test's budget: only a real hang reaches it


@pytest.fixture(autouse=True)
def hang_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    faulthandler.dump_traceback_later(HANG_S, exit=True, file=_real_stderr(request.config))
    yield
    faulthandler.cancel_dump_traceback_later()


def _real_stderr(config: pytest.Config) -> Any:
    """The terminal's stderr: pytest captures file descriptor 2 itself during a test, and a
    traceback written there would vanish with the process. pytest's faulthandler plugin keeps
    a copy of the real one."""
    try:
        from _pytest.faulthandler import fault_handler_stderr_fd_key

        return config.stash[fault_handler_stderr_fd_key]
    except (ImportError, KeyError):
        return sys.__stderr__
