"""The judge's reply cache: raw replies on disk in SQLite, keyed by everything that shapes them.

Judging is the slow, paid part of building preference and cold-start data, so a resumed
stage must not ask again what it already has. SQLite (stdlib) gives atomic writes and
readers alongside a writer (WAL) for free; one connection shared under a lock is enough for
the judge's few threads, whose time goes to waiting on the server anyway.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

__all__ = ["ReplyCache", "request_key"]


def request_key(
    model: str, messages: list[dict[str, Any]], seed: int, temperature: float, max_tokens: int
) -> str:
    """sha256 of what makes a reply: the same request with another seed is another draw."""
    payload = json.dumps(
        [model, messages, seed, temperature, max_tokens], ensure_ascii=False, sort_keys=True
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ReplyCache:
    """``key -> raw reply`` in a SQLite file (created with its folder when missing)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, reply TEXT NOT NULL)"
            )
            self._db.commit()

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, reply: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?)", (key, reply))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
