"""The items a reviewer sees, read from either file the pipeline writes for one:

* a cold-start review queue (``review_queue.jsonl`` of :mod:`r1lab.stages.coldstart`):
  ``id``, ``question``, ``gold``, ``original`` (R1-Zero's trace), ``rewritten`` (the judge's
  rewrite, what stage A trains on) and ``language``;
* a rejection-sampling SFT file (``sft.jsonl`` of :mod:`r1lab.stages.sample`): ``prompt``,
  ``response``, ``id``, ``language`` and ``source``; no original trace and no gold.

Both become one :class:`Item`. Either may carry ``filters``, a mapping of filter name to
verdict (true: kept), shown beside the verdicts the page recomputes
(:mod:`r1lab.review.checks`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from r1lab.errors import UserError

__all__ = ["Item", "load_items", "QUEUE_FIELDS", "SFT_FIELDS"]

QUEUE_FIELDS = ("id", "question", "gold", "original", "rewritten", "language")
SFT_FIELDS = ("prompt", "response", "id", "language")


@dataclass(frozen=True)
class Item:
    """One trace to review; ``rewritten`` is what an accept exports."""

    key: str  # the item's name in the decision store (see :func:`item_key`)
    id: str  # the problem's id (several items may share one when per_prompt > 1)
    question: str
    rewritten: str
    language: str
    source: str  # "coldstart" for a queue, the SFT file's own source otherwise
    original: str | None = None  # R1-Zero's trace; None for an SFT file
    gold: str | None = None
    filters: dict[str, bool] = field(default_factory=dict)


def item_key(id: str, question: str, original: str | None, rewritten: str) -> str:
    """A name for an item that survives a rerun of the stage that wrote the file.

    Decisions are kept by content rather than by line: a queue rebuilt in another order keeps
    every decision on the trace it was made on, and a changed trace is undecided again.
    """
    blob = json.dumps([id, question, original, rewritten], ensure_ascii=False)
    return hashlib.blake2b(blob.encode(), digest_size=10).hexdigest()


def load_items(path: str | Path) -> list[Item]:
    """The items of a review queue or an SFT file, in file order.

    The kind is told by the first record (``rewritten``: a queue, else an SFT file); a
    malformed line, a missing field or a field of the wrong type is a one-line
    :class:`UserError` naming the file and line.
    """
    from r1lab.data.io import read_records

    path = Path(path)
    first = read_records(path)
    if not first:
        raise UserError(f"{path}: no records to review")
    queue = "rewritten" in first[0]
    records = read_records(path, required=QUEUE_FIELDS if queue else SFT_FIELDS)
    items: list[Item] = []
    seen: dict[str, int] = {}
    for i, r in enumerate(records):
        try:
            item = _queue_item(r) if queue else _sft_item(r)
        except _FieldError as e:
            raise UserError(f"{path}:{_line_of(path, i)}: {e}") from None
        # identical records share a content key; number the repeats so each has its own
        seen[item.key] = seen.get(item.key, 0) + 1
        if seen[item.key] > 1:
            item = replace(item, key=f"{item.key}-{seen[item.key]}")
        items.append(item)
    return items


class _FieldError(Exception):
    """A field of the wrong type; :func:`load_items` adds the file and line."""


def _text(r: dict[str, Any], name: str) -> str:
    value = r[name]
    if not isinstance(value, str):
        raise _FieldError(f"field '{name}' must be a string, got {type(value).__name__}")
    return value


def _scalar(r: dict[str, Any], name: str) -> str:
    """An id or a gold, which other tools write as numbers too."""
    value = r[name]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _FieldError(f"field '{name}' must be a string or a number, got {value!r}")
    return str(value)


def _filters(r: dict[str, Any]) -> dict[str, bool]:
    value = r.get("filters") or {}
    if not isinstance(value, dict) or not all(isinstance(v, bool) for v in value.values()):
        raise _FieldError("field 'filters' must map filter names to true or false")
    return {str(k): v for k, v in value.items()}


def _queue_item(r: dict[str, Any]) -> Item:
    id, question, original, rewritten = (
        _scalar(r, "id"), _text(r, "question"), _text(r, "original"), _text(r, "rewritten")
    )  # fmt: skip
    return Item(
        key=item_key(id, question, original, rewritten),
        id=id,
        question=question,
        rewritten=rewritten,
        language=_text(r, "language"),
        source="coldstart",
        original=original,
        gold=_scalar(r, "gold"),
        filters=_filters(r),
    )


def _sft_item(r: dict[str, Any]) -> Item:
    id, question, response = _scalar(r, "id"), _text(r, "prompt"), _text(r, "response")
    source = r.get("source")
    return Item(
        key=item_key(id, question, None, response),
        id=id,
        question=question,
        rewritten=response,
        language=_text(r, "language"),
        source=source if isinstance(source, str) else "sft",
        gold=_scalar(r, "gold") if r.get("gold") is not None else None,
        filters=_filters(r),
    )


def _line_of(path: Path, index: int) -> int:
    """The line of the ``index``-th record (read_records skips blank lines; a Parquet file's
    "line" is its row). Only called on an error, so reading the file again costs nothing."""
    from r1lab.data.tasks import line_numbers

    lines = line_numbers(path, 0)  # the rule read_records skips blank lines by
    return lines[index] if index < len(lines) else index + 1
