"""The review API with FastAPI's TestClient (decisions, checks of an edit, the export, the
token and the loopback guard), and ``r1lab review`` on the command line (export mode, its
one-line errors, and a bad start leaving no file behind)."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from review_samples import SCRIPT, queue_records, read_jsonl

from r1lab.cli import main
from r1lab.review import stage
from r1lab.review.app import create_app, is_loopback
from r1lab.review.items import load_items
from r1lab.review.stage import ReviewConfig
from r1lab.review.store import DecisionStore

LOCAL = "http://127.0.0.1"


@pytest.fixture
def review(queue_file, tmp_path):
    """A client of the app over the sample queue, its items and its export path."""
    items = load_items(queue_file)
    store = DecisionStore(tmp_path / "d.sqlite")
    out = tmp_path / "reviewed.jsonl"
    with TestClient(create_app(items, store, out, source=str(queue_file)), LOCAL) as client:
        yield client, items, out


def _decide(client, n, key, decision, text=None):
    body = {"key": key, "decision": decision} | ({"text": text} if text is not None else {})
    return client.post(f"/api/items/{n}/decision", json=body)


def test_the_page_is_self_contained_and_renders_data_as_text(review):
    client, _, _ = review
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    nonce = csp.split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}">' in r.text and "default-src 'none'" in csp
    assert client.get("/").headers["content-security-policy"] != csp  # a nonce per response
    assert "src=" not in r.text and "http" not in r.text  # nothing fetched from elsewhere
    assert "innerHTML" not in r.text and "insertAdjacentHTML" not in r.text


def test_an_item_with_its_checks(review, queue_file):
    client, items, _ = review
    summary = client.get("/api/items").json()
    assert (summary["total"], summary["first_undecided"], summary["file"]) == (
        5,
        0,
        str(queue_file),
    )
    assert list(summary["checks"])[:2] == ["correct", "readable"]
    view = client.get("/api/items/3").json()
    assert view["item"]["rewritten"] == items[3].rewritten and SCRIPT in view["item"]["rewritten"]
    assert view["item"]["gold"] == "23" and view["decision"] is None and view["history"] == []
    assert view["checks"]["original"]["correct"] is True
    assert view["checks"]["rewritten"]["readable"] is True
    assert view["progress"] == {"total": 5, "decided": 0, "accepted": 0, "edited": 0, "rejected": 0}
    assert client.get("/api/items/5").status_code == 404


def test_decisions_and_their_history(review):
    client, items, _ = review
    r = _decide(client, 0, items[0].key, "accepted")
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["decision"]["decision"] == "accepted" and view["decision"]["text"] is None
    assert view["progress"]["decided"] == 1 and view["next_undecided"] == 1
    _decide(client, 0, items[0].key, "rejected")
    view = client.get("/api/items/0").json()
    assert [h["decision"] for h in view["history"]] == ["rejected", "accepted"]
    assert view["progress"] == {"total": 5, "decided": 1, "accepted": 0, "edited": 0, "rejected": 1}
    # an accept carries no text of its own: it exports the rewrite
    assert (
        _decide(client, 1, items[1].key, "accepted", "ignored").json()["decision"]["text"] is None
    )


def test_bad_decisions_are_refused_with_one_line(review):
    client, items, _ = review
    assert _decide(client, 0, items[1].key, "accepted").status_code == 409
    r = _decide(client, 0, items[0].key, "edited")
    assert r.status_code == 400 and "needs the edited text" in r.json()["error"]
    assert _decide(client, 0, items[0].key, "edited", "  \n").status_code == 400
    r = _decide(client, 0, items[0].key, "maybe")
    assert r.status_code == 400 and "one of accepted, rejected, edited" in r.json()["error"]
    r = client.post("/api/items/0/decision", json={"decision": "accepted"})
    assert r.status_code == 400 and r.json()["error"].startswith("key:")
    assert _decide(client, 9, "x", "accepted").status_code == 404
    r = client.post(
        "/api/items/0/decision", content=f'{{"key": "{items[0].key}", "decision": "accepted"}}',
        headers={"content-type": "text/plain"},
    )  # fmt: skip
    assert r.status_code == 415  # what a form on another site could send
    assert client.get("/api/items").json()["progress"]["decided"] == 0


def test_an_edit_is_checked_again(review):
    """The checks of an edit run in the request's thread (math-verify without its alarm): a
    right answer must read as right there, and a broken format or a wrong answer be seen."""
    client, items, _ = review
    good = items[0].rewritten.replace("I add", "Adding")
    view = _decide(client, 0, items[0].key, "edited", good).json()
    assert view["checks"]["edited"]["correct"] is True
    assert view["checks"]["edited"]["readable"] is True
    wrong = "<think>\nI add them.\n</think>\n<answer>\n99\n</answer> and more"
    view = _decide(client, 1, items[1].key, "edited", wrong).json()
    assert (view["checks"]["edited"]["correct"], view["checks"]["edited"]["readable"]) == (
        False, False
    )  # fmt: skip


def test_the_export_endpoints(review):
    client, items, out = review
    _decide(client, 0, items[0].key, "accepted")
    _decide(client, 1, items[1].key, "rejected")
    _decide(client, 2, items[2].key, "edited", "edited text")
    r = client.get("/api/export")
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert 'filename="reviewed.jsonl"' in r.headers["content-disposition"]
    lines = [line for line in r.text.splitlines() if line]
    assert len(lines) == 2 and "edited text" in lines[1]
    done = client.post("/api/export", json={}).json()
    assert done["path"] == str(out) and done["examples"] == 2
    assert [(e["id"], e["response"], e["review"]) for e in read_jsonl(out)] == [
        ("p0", items[0].rewritten, "accepted"), ("p2", "edited text", "edited")
    ]  # fmt: skip


def test_a_token_guards_every_endpoint(queue_file, tmp_path):
    items = load_items(queue_file)
    app = create_app(items, DecisionStore(tmp_path / "d.sqlite"), tmp_path / "o.jsonl", token="s3")
    with TestClient(app, "http://review.example.org") as client:
        for method, path in [("GET", "/"), ("GET", "/api/items"), ("GET", "/api/items/0"),
                             ("GET", "/api/export"), ("POST", "/api/export")]:  # fmt: skip
            wrong = {"authorization": "Bearer no"}
            assert client.request(method, path).status_code == 401, path
            assert client.request(method, path, headers=wrong).status_code == 401, path
        assert client.get("/", params={"token": "s3"}).status_code == 200
        assert client.get("/api/items", headers={"authorization": "Bearer s3"}).status_code == 200
        r = _decide(client, 0, items[0].key, "accepted")
        assert r.status_code == 401 and "token" in r.json()["error"]


def test_without_a_token_only_loopback_names_are_answered(review):
    client, _, _ = review
    assert client.get("/api/items", headers={"host": "127.0.0.1:8765"}).status_code == 200
    assert client.get("/api/items", headers={"host": "localhost:8765"}).status_code == 200
    assert client.get("/api/items", headers={"host": "[::1]:8765"}).status_code == 200
    r = client.get("/", headers={"host": "rebound.example.com"})  # DNS rebinding
    assert r.status_code == 403
    loopback = ("127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost")
    assert all(is_loopback(h) for h in loopback)
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.1", "::", "example.com"))


# --- r1lab review on the command line ---------------------------------------------------------


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("r1lab: error: ") and err.count("\n") == 1, err
    return err


def test_help_lists_the_keys(capsys):
    assert main(["review", "--help"]) == 0
    out = capsys.readouterr().out
    keys = ("data = 'runs/coldstart/review_queue.jsonl'", "db = ''", "export = ''",
            "host = '127.0.0.1'", "port = 8765", "token = ''", "filters.min_language")  # fmt: skip
    for key in keys:
        assert f"\n  {key}" in out, key


def test_export_on_the_command_line(queue_file, tmp_path, capsys):
    items = load_items(queue_file)
    store = DecisionStore(f"{queue_file}.review.sqlite")  # the default place
    store.decide(items[4].key, "accepted")
    store.decide(items[0].key, "edited", "mine")
    store.decide(items[1].key, "rejected")
    out = tmp_path / "accepted.jsonl"
    assert main(["review", f"data={queue_file}", f"export={out}"]) == 0
    assert [(e["id"], e["review"]) for e in read_jsonl(out)] == [
        ("p0", "edited"),
        ("p4", "accepted"),
    ]
    said = capsys.readouterr().out
    assert "2 examples (1 accepted, 1 edited; 1 rejected, 2 undecided left out)" in said


def test_command_line_errors_are_one_line_and_leave_nothing_behind(queue_file, tmp_path, capsys):
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["review", f"data={tmp_path / 'none.jsonl'}"]) == 2
    assert "none.jsonl: file not found" in _error(capsys)
    assert main(["review", "data=runs/nonexistent/review_queue.jsonl"]) == 2
    _error(capsys)
    assert main(["review", f"data={queue_file}", f"export={tmp_path / 'x.jsonl'}"]) == 2
    assert "no decisions yet" in _error(capsys)
    assert main(["review", f"data={queue_file}", "host=0.0.0.0"]) == 2
    assert "set token=<secret>" in _error(capsys)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["review", f"data={queue_file}", f"port={port}"]) == 2
    assert f"cannot serve on 127.0.0.1:{port}" in _error(capsys)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(queue_file.read_text() + "{oops\n")
    assert main(["review", f"data={bad}"]) == 2
    assert f"{bad}:6: malformed JSON" in _error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "bad.jsonl"])
    DecisionStore(f"{queue_file}.review.sqlite")
    assert main(["review", f"data={queue_file}", f"export={queue_file}"]) == 2
    assert "is the input file" in _error(capsys)
    assert len(read_jsonl(queue_file)) == len(queue_records())


def test_run_review_serves_and_prints_its_url(queue_file, capsys, monkeypatch):
    from r1lab.serve import server as server_module

    servers = []

    class Recorded(server_module.Server):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            servers.append(self)

    monkeypatch.setattr(server_module, "Server", Recorded)  # run_review imports it when run
    monkeypatch.setenv(stage.TOKEN_ENV, "t/k")
    done = threading.Event()

    def serve():
        stage.run_review(ReviewConfig(data=str(queue_file), port=0))
        done.set()

    threading.Thread(target=serve, daemon=True).start()
    deadline = time.monotonic() + 20
    while not (servers and servers[0]._server.started) and time.monotonic() < deadline:
        time.sleep(0.02)
    (server,) = servers
    out = capsys.readouterr().out
    url = f"http://127.0.0.1:{server.port}/?token=t%2Fk"
    assert f"5 items of {queue_file}, 0 decided" in out and f"open {url}" in out
    assert httpx.get(url, timeout=5).status_code == 200
    assert httpx.get(url.split("?")[0], timeout=5).status_code == 401
    server._server.should_exit = True
    assert done.wait(10)
