"""The reviewed set as the SFT file stage A reads: the accepted and edited items, nothing else.

Each line is ``{"prompt", "response", "id", "language", "source", "review"}``: the response is
the rewrite for an accepted item and the reviewer's text for an edited one; ``review`` says
which. Rejected and undecided items are left out, in the input's order otherwise, so the file
is ``r1lab sft data.path=...`` as it is.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from r1lab.review.items import Item
from r1lab.review.store import Decision

__all__ = ["accepted_examples", "counts", "export_jsonl", "write_export"]


def accepted_examples(items: list[Item], decisions: dict[str, Decision]) -> list[dict[str, Any]]:
    """The SFT examples of the accepted and edited ``items`` (``decisions`` by item key)."""
    examples = []
    for item in items:
        d = decisions.get(item.key)
        if d is None or d.decision == "rejected":
            continue
        response = d.text if d.decision == "edited" else item.rewritten
        examples.append(
            {"prompt": item.question, "response": response, "id": item.id,
             "language": item.language, "source": item.source, "review": d.decision}
        )  # fmt: skip
    return examples


def counts(items: list[Item], decisions: dict[str, Decision]) -> dict[str, int]:
    """``total``, ``decided`` and how many of each decision, over ``items`` only (a decision
    on an item no longer in the file is not counted)."""
    by = Counter(decisions[i.key].decision for i in items if i.key in decisions)
    return {
        "total": len(items),
        "decided": sum(by.values()),
        "accepted": by["accepted"],
        "edited": by["edited"],
        "rejected": by["rejected"],
    }


def export_jsonl(examples: list[dict[str, Any]]) -> str:
    """``examples`` as JSONL text, one example a line."""
    return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples)


def write_export(path: str | Path, examples: list[dict[str, Any]]) -> Path:
    """Write ``examples`` to ``path`` atomically: a reader (or a crash) sees the old file or
    the new one, never half of one.

    The temporary file has a name of its own (two tabs may export at once) in the target's
    folder (``os.replace`` renames only within a file system) and is on disk before the
    rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(export_jsonl(examples))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's file is private; the export is an ordinary data file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
