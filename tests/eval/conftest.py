"""Shared fixtures of the evaluation tests: the real data files under the shared data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from r1lab.data.tasks import data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder, found as ``r1lab eval`` finds it (``$R1LAB_DATA_DIR`` or
    ``../shared/data``). Missing data fails rather than skips: the acceptance test needs it."""
    root = data_dir()
    for rel in ("gsm8k/test.jsonl", "math500/test.jsonl"):
        assert (root / rel).is_file(), f"{root / rel} not found; set R1LAB_DATA_DIR"
    return root
