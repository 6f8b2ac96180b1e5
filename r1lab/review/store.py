"""The reviewers' decisions in SQLite: an append-only history, the newest row of an item wins.

Every decision is one row, committed in its own transaction before the page hears back, so
stopping the server (or the machine) at any moment loses at most the decision whose request
had not been answered. Nothing is updated in place: two tabs deciding the same item both
leave their row, and the one committed last is the item's decision (``seq`` is the order of
commits, so no clock decides). The rows are the audit trail: who changed their mind, and
when (``at``, Unix seconds).

The database is in WAL mode, so the export (or ``sqlite3`` in a shell) can read while the
server writes. Each call opens its own connection: the app answers requests from a pool of
threads, and a connection per call needs no lock of ours.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from r1lab.errors import UserError

__all__ = ["DECISIONS", "Decision", "DecisionStore"]

DECISIONS: tuple[str, ...] = ("accepted", "rejected", "edited")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    item TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('accepted', 'rejected', 'edited')),
    text TEXT CHECK ((decision = 'edited') = (text IS NOT NULL)),
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_by_item ON decisions (item, seq);
"""


@dataclass(frozen=True)
class Decision:
    """One reviewer's verdict on an item; ``text`` is the edited response (edited only)."""

    item: str
    decision: str  # one of DECISIONS
    text: str | None
    at: float
    seq: int


class DecisionStore:
    """The decisions file at ``path``, created (with its schema) when missing."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:  # not a database, a folder, no permission
            raise UserError(f"{self.path}: cannot use as the decisions database ({e})") from None

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # autocommit mode: transactions are the explicit BEGIN IMMEDIATE ... COMMIT below
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=FULL")  # a committed decision survives a power cut
            yield db
        finally:
            db.close()

    def decide(self, item: str, decision: str, text: str | None = None) -> Decision:
        """Record ``decision`` on ``item`` (``text``: the edited response, for edited only)."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
        if (decision == "edited") != (text is not None):
            raise ValueError("an edited decision needs its text, and only an edited one has one")
        at = time.time()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.execute(
                    "INSERT INTO decisions (item, decision, text, at) VALUES (?, ?, ?, ?)",
                    (item, decision, text, at),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return Decision(item, decision, text, at, int(cur.lastrowid or 0))

    def current(self) -> dict[str, Decision]:
        """Every decided item's decision: its newest row."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT d.item, d.decision, d.text, d.at, d.seq FROM decisions d JOIN "
                "(SELECT item, MAX(seq) AS seq FROM decisions GROUP BY item) newest "
                "USING (item, seq)"
            ).fetchall()
        return {r[0]: Decision(*r) for r in rows}

    def get(self, item: str) -> Decision | None:
        """``item``'s decision, None while undecided."""
        history = self.history(item, limit=1)
        return history[0] if history else None

    def history(self, item: str, limit: int | None = None) -> list[Decision]:
        """``item``'s decisions, newest first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT item, decision, text, at, seq FROM decisions WHERE item = ? "
                "ORDER BY seq DESC LIMIT ?",
                (item, -1 if limit is None else limit),
            ).fetchall()
        return [Decision(*r) for r in rows]
