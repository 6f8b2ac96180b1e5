"""Fixtures of the review tests: sample files in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from review_samples import queue_records, sft_records, write_jsonl


@pytest.fixture
def queue_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "review_queue.jsonl", queue_records())


@pytest.fixture
def sft_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "sft.jsonl", sft_records())
