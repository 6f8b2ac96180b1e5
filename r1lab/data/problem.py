"""A verifiable problem: the unit every task, reward and evaluation works on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Problem:
    """One prompt with its reference answer.

    ``question`` is the user's text (the chat template is applied later). ``answer`` is the
    gold answer as text, checked with math-verify (or, for code, ``meta["tests"]``).
    ``meta`` holds ``language`` ("en" or "zh": the target language of the chain of thought),
    ``family`` and anything else a reward needs.
    """

    id: str
    question: str
    answer: str
    meta: dict[str, Any] = field(default_factory=dict)
