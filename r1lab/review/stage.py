"""``r1lab review``: the human verification of the cold-start data (R1-Zero → filter → rewrite
→ **people check**, report §6.2), as a page served until Ctrl-C, or its export.

The report's cold start is "refined by human annotators"; here a reviewer reads each trace of
``review_queue.jsonl`` (:mod:`r1lab.stages.coldstart`) beside its rewrite, accepts, rejects
or edits it, and exports the accepted set as the SFT file of stage A. A rejection-sampling
``sft.jsonl`` (:mod:`r1lab.stages.sample`) can be reviewed the same way. Decisions go to a
SQLite file beside the input (:mod:`r1lab.review.store`): stop and come back at any time.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r1lab.config import in_range, option, section
from r1lab.data.filters import FilterConfig
from r1lab.errors import UserError

if TYPE_CHECKING:
    from r1lab.review.items import Item

__all__ = ["ReviewConfig", "TOKEN_ENV", "paths", "run_review"]

DEFAULT_DATA = "runs/coldstart/review_queue.jsonl"
TOKEN_ENV = "R1LAB_REVIEW_TOKEN"


@dataclass
class ReviewConfig:
    """``r1lab review``: a queue or SFT file → accept / reject / edit → the accepted set."""

    data: str = option(
        DEFAULT_DATA,
        "the file to review: a cold-start review_queue.jsonl (r1lab coldstart; the pipeline's "
        "is runs/pipeline/coldstart/review_queue.jsonl) or a rejection-sampling sft.jsonl",
    )
    db: str = option(
        "", "SQLite file of the decisions (empty: <data>.review.sqlite beside the input)"
    )
    out: str = option(
        "",
        "where the page's Export writes the accepted set (empty: <data stem>.reviewed.jsonl "
        "beside the input)",
    )
    export: str = option(
        "",
        "write the accepted and edited items to this JSONL file (the SFT file of stage A) "
        "and exit without serving",
    )
    host: str = option(
        "127.0.0.1", "address to listen on (any but a loopback address needs a token)"
    )
    port: int = option(8765, "port to listen on (0: any free port)", check=in_range(0, 65535))
    token: str = option(
        "",
        f"secret every request must carry (empty: ${TOKEN_ENV}, else none); required when "
        "host is not a loopback address",
    )
    filters: FilterConfig = section(FilterConfig)


def paths(cfg: ReviewConfig) -> tuple[Path, Path, Path]:
    """The input, the decisions database and the page's export path of ``cfg``."""
    data = Path(cfg.data)
    db = Path(cfg.db) if cfg.db else data.with_name(data.name + ".review.sqlite")
    out = Path(cfg.out) if cfg.out else data.with_name(data.stem + ".reviewed.jsonl")
    return data, db, out


def run_review(cfg: ReviewConfig) -> dict[str, Any] | None:
    """Serve the review page until Ctrl-C, or with ``export`` set write the accepted set and
    return its counts. Every bad start (no input, a bad line, a busy port, no token where
    one is needed) is a one-line error that leaves no file behind."""
    from r1lab.review.items import load_items
    from r1lab.review.store import DecisionStore

    data, db, out = paths(cfg)
    token = cfg.token or os.environ.get(TOKEN_ENV, "")
    if not cfg.export:
        from r1lab.review.app import is_loopback

        if not token and not is_loopback(cfg.host):
            raise UserError(
                f"host {cfg.host} is reachable from other machines: set token=<secret> "
                f"(or ${TOKEN_ENV}), or serve on 127.0.0.1"
            )
    if not data.exists() and cfg.data == DEFAULT_DATA:
        raise UserError(f"{data}: file not found (build it with r1lab coldstart, or set data=)")
    items = load_items(data)
    writes = {"db": db, "out": out} | ({"export": Path(cfg.export)} if cfg.export else {})
    for key, path in writes.items():
        if path.exists() and path.resolve() == data.resolve():
            raise UserError(f"{key}={path} is the input file; choose another path")
    if cfg.export:
        return _export(items, db, Path(cfg.export))

    from r1lab.review.app import create_app
    from r1lab.review.export import counts
    from r1lab.serve.server import Server

    fresh = not db.exists()
    store = DecisionStore(db)
    try:
        app = create_app(items, store, out, cfg.filters, token, str(data))
        server = Server(app, cfg.host, cfg.port)
    except BaseException:
        if fresh:  # a start that failed leaves no empty database behind
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
        raise
    c = counts(items, store.current())
    print(
        f"r1lab review: {c['total']} items of {data}, {c['decided']} decided (decisions: {db})\n"
        f"  open {url(cfg.host, server.port, token)}  (Ctrl-C stops)",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):  # the way a server stops, not a failure
        server.run()
    return None


def url(host: str, port: int, token: str = "") -> str:
    """The page's address as a browser opens it (with the token, when there is one)."""
    from urllib.parse import quote

    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={quote(token, safe='')}" if token else "")


def _export(items: list[Item], db: Path, path: Path) -> dict[str, Any]:
    from r1lab.review.export import accepted_examples, counts, write_export
    from r1lab.review.store import DecisionStore

    if not db.exists():
        raise UserError(f"{db}: no decisions yet (review first: r1lab review data=...)")
    current = DecisionStore(db).current()
    examples = accepted_examples(items, current)
    write_export(path, examples)
    c = counts(items, current)
    print(
        f"r1lab review: {len(examples)} examples ({c['accepted']} accepted, {c['edited']} "
        f"edited; {c['rejected']} rejected, {c['total'] - c['decided']} undecided left out) "
        f"in {path}"
    )
    return {"examples": len(examples), "path": str(path), **c}
