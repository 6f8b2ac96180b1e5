"""The review app: the page (:mod:`r1lab.review.page`) and the small JSON API it calls.

``GET /`` the page; ``GET /api/items`` the file, its size, the progress and the checks' names;
``GET /api/items/{n}`` item ``n`` (0-based) with its checks, decision and history;
``POST /api/items/{n}/decision`` ``{"key", "decision", "text"}`` records one; ``GET
/api/export`` the accepted set as JSONL, ``POST /api/export`` writes it to the export path.

A decision names the item's ``key`` as well as its place, so one made on a page opened
before the server was restarted on a rebuilt file goes to the trace that was on screen or
is refused (409), never to whatever is at that place now.

Every endpoint, the page included, takes the token when one is set (``Authorization:
Bearer``, or ``?token=`` for the page and the download link). Without a token the server
listens on a loopback address only (:mod:`r1lab.review.stage` sees to it) and answers only
requests addressed to a loopback name, so a web page elsewhere cannot reach it by pointing a
domain of its own at 127.0.0.1; a POST must be JSON, which a form on another site cannot
send without the browser asking first.
"""

from __future__ import annotations

import dataclasses
import functools
import hmac
import ipaddress
import secrets
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict

from r1lab.data.filters import FilterConfig
from r1lab.review.checks import CHECKS, file_checks, text_checks
from r1lab.review.export import accepted_examples, counts, export_jsonl, write_export
from r1lab.review.items import Item
from r1lab.review.page import render_page
from r1lab.review.store import Decision, DecisionStore

__all__ = ["create_app", "is_loopback"]

_CSP = (
    "default-src 'none'; script-src 'nonce-{n}'; style-src 'nonce-{n}'; connect-src 'self'; "
    "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine
    only: ``localhost``, 127.0.0.0/8, ``::1``."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_of(header: str) -> str:
    """The host name of a ``Host`` header (``127.0.0.1:8765``, ``[::1]:8765``, ``localhost``)."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class DecisionBody(BaseModel):
    """A reviewer's decision on one item, as the page sends it."""

    model_config = ConfigDict(extra="forbid")
    key: str
    decision: str
    text: str | None = None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(
    items: list[Item],
    store: DecisionStore,
    export_path: str | Path,
    filters: FilterConfig | None = None,
    token: str = "",
    source: str = "",
) -> FastAPI:
    """The app reviewing ``items`` into ``store``; the export writes ``export_path``.

    The checks of the file's traces are computed here, so call it from the main thread
    (:mod:`r1lab.review.checks` says why); ``source`` names the file on the page.
    """
    fc = filters or FilterConfig()
    export_path = Path(export_path)
    checks = file_checks(items, fc)
    app = FastAPI(title="r1lab review", docs_url=None, redoc_url=None, openapi_url=None)

    @functools.lru_cache(maxsize=1024)
    def edit_checks(text: str, gold: str | None, language: str) -> dict[str, bool | None]:
        return text_checks(text, gold, language, fc)

    @app.middleware("http")
    async def _guard(request: Request, call_next: Any) -> Response:
        if token:
            auth = request.headers.get("authorization", "")
            given = auth[7:] if auth[:7].lower() == "bearer " else ""
            given = given or request.query_params.get("token", "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return _error(401, "this review needs its token: open the URL r1lab review printed")
        elif not is_loopback(_host_of(request.headers.get("host", ""))):
            return _error(403, "without a token only requests to a loopback address are answered")
        if request.method == "POST" and not request.headers.get("content-type", "").startswith(
            "application/json"
        ):
            return _error(415, "a POST must be application/json")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(400, f"{where or 'request'}: {first.get('msg', 'invalid request')}")

    def view(n: int, current: dict[str, Decision]) -> dict[str, Any]:
        item = items[n]
        decision = current.get(item.key)
        item_checks = dict(checks[item.key])
        shown = None
        if decision is not None:
            shown = {"decision": decision.decision, "text": decision.text, "at": decision.at}
            if decision.text is not None:
                item_checks["edited"] = edit_checks(decision.text, item.gold, item.language)
        after = [*range(n + 1, len(items)), *range(n)]  # from here on, then from the start
        return {
            "n": n,
            "total": len(items),
            "item": dataclasses.asdict(item),
            "checks": item_checks,
            "decision": shown,
            "history": [{"decision": h.decision, "at": h.at} for h in store.history(item.key)],
            "progress": counts(items, current),
            "next_undecided": next((m for m in after if items[m].key not in current), None),
        }

    def at(n: int) -> JSONResponse | None:
        if not 0 <= n < len(items):
            return _error(404, f"no item {n}: the file has items 0 to {len(items) - 1}")
        return None

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        headers = {
            "Content-Security-Policy": _CSP.format(n=nonce),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        }
        return HTMLResponse(render_page(nonce), headers=headers)

    @app.get("/api/items")
    def summary() -> dict[str, Any]:
        current = store.current()
        undecided = [n for n, item in enumerate(items) if item.key not in current]
        return {
            "file": source,
            "total": len(items),
            "progress": counts(items, current),
            "first_undecided": undecided[0] if undecided else None,
            "checks": CHECKS,
        }

    @app.get("/api/items/{n}", response_model=None)
    def get_item(n: int) -> dict[str, Any] | JSONResponse:
        return at(n) or view(n, store.current())

    @app.post("/api/items/{n}/decision", response_model=None)
    def decide(n: int, body: DecisionBody) -> dict[str, Any] | JSONResponse:
        if (missing := at(n)) is not None:
            return missing
        if body.key != items[n].key:
            return _error(409, f"item {n} is not the one the page shows any more: reload it")
        if body.decision == "edited":
            if body.text is None or not body.text.strip():
                return _error(400, "text: an edited decision needs the edited text")
            text = body.text
        else:
            text = None  # the text of an accept is the rewrite, of a reject nothing
        try:
            store.decide(body.key, body.decision, text)
        except ValueError as e:
            return _error(400, f"decision: {e}")
        return view(n, store.current())

    @app.get("/api/export")
    def download() -> Response:
        body = export_jsonl(accepted_examples(items, store.current()))
        disposition = f'attachment; filename="{export_path.name}"'
        return Response(
            body, media_type="application/x-ndjson",
            headers={"Content-Disposition": disposition},
        )  # fmt: skip

    @app.post("/api/export")
    def export() -> dict[str, Any]:
        current = store.current()
        examples = accepted_examples(items, current)
        path = write_export(export_path, examples)
        return {"path": str(path), "examples": len(examples), "progress": counts(items, current)}

    return app
