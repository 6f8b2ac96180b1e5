"""Reading records from JSONL or Parquet with a field mapping; errors name the file and line."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from r1lab.errors import UserError


def read_records(
    path: str | Path,
    fields: Mapping[str, str] | None = None,
    required: list[str] | tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Records of a ``.jsonl`` or ``.parquet`` file, with fields renamed by ``fields``.

    ``fields`` maps our name to the file's name (``{"question": "problem"}``); fields not
    named keep their own names. Every name in ``required`` (our names) must be present in
    every record, or a :class:`UserError` names the file, the line and the missing field.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    if not path.is_file():
        raise UserError(f"{path}: expected a file, found a folder")
    fields = dict(fields or {})
    if path.suffix == ".parquet":
        rows = _read_parquet(path)
    elif path.suffix in (".jsonl", ".json") or path.name.endswith(".jsonl.txt"):
        rows = _read_jsonl(path)
    else:
        raise UserError(f"{path}: unsupported data format (expected .jsonl or .parquet)")
    source_of = {ours: fields.get(ours, ours) for ours in required}
    out = []
    for where, row in rows:
        for ours, theirs in source_of.items():
            if theirs not in row or row[theirs] is None:
                raise UserError(
                    f"{path}:{where}: missing field '{theirs}'"
                    + (f" (mapped to '{ours}')" if theirs != ours else "")
                )
        # renamed from the row as read, so that two names of ours may map to one field of
        # theirs, and names may be swapped ({"question": "answer", "answer": "question"});
        # a required name is there even when its field also went to another name
        mapped = {ours: theirs for ours, theirs in fields.items() if theirs in row}
        rec = {k: v for k, v in row.items() if k not in mapped.values()}
        rec.update({ours: row[theirs] for ours, theirs in {**mapped, **source_of}.items()})
        out.append(rec)
    return out


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
    rows = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(f"{path}:{lineno}: not UTF-8 text ({e.reason})") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(
                    f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})"
                ) from None
            except RecursionError:
                raise UserError(f"{path}:{lineno}: JSON nested too deeply") from None
            except ValueError as e:  # an integer of more than 4,300 digits
                raise UserError(
                    f"{path}:{lineno}: malformed JSON ({str(e).split(';')[0]})"
                ) from None
            if not isinstance(obj, dict):
                raise UserError(
                    f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}"
                )
            rows.append((lineno, obj))
    return rows


def _read_parquet(path: Path) -> list[tuple[int, dict]]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()  # to_pylist too: a date out of Python's range
    except Exception as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise UserError(f"{path}: cannot read Parquet ({reason})") from None
    return [(i + 1, row) for i, row in enumerate(rows)]  # "line" = row number


def write_jsonl(path: str | Path, records: list[dict[str, Any]]) -> None:
    """Write records atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(path)
