"""The review's pieces without a server: reading both input files into items (and the one-line
errors of a bad one), the decision store (newest wins, history kept, nothing lost when the
process dies or two writers race) and the export (exactly the accepted and edited items,
written atomically)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from review_samples import queue_records, read_jsonl, sft_records, write_jsonl

from r1lab.data.io import read_records
from r1lab.errors import UserError
from r1lab.review.export import accepted_examples, counts, write_export
from r1lab.review.items import load_items
from r1lab.review.store import DecisionStore

# --- items ---------------------------------------------------------------------------------


def test_a_queue_and_an_sft_file_become_the_same_items(queue_file, sft_file):
    q = load_items(queue_file)
    assert len(q) == 5
    first = queue_records()[0]
    assert (q[0].id, q[0].question, q[0].gold, q[0].language, q[0].source) == (
        "p0", first["question"], first["gold"], "en", "coldstart"
    )  # fmt: skip
    assert (q[0].original, q[0].rewritten) == (first["original"], first["rewritten"])
    s = load_items(sft_file)
    assert [(i.id, i.source, i.original, i.gold) for i in s] == [
        ("s0", "reasoning", None, None), ("g0", "general/greeting", None, None)
    ]  # fmt: skip
    assert s[0].question == "What is 2+3?" and s[0].rewritten == sft_records()[0]["response"]
    assert len({i.key for i in q + s}) == 7


def test_keys_follow_the_content_not_the_line(tmp_path):
    records = queue_records()
    a = load_items(write_jsonl(tmp_path / "a.jsonl", records))
    b = load_items(write_jsonl(tmp_path / "b.jsonl", records[::-1]))
    assert [i.key for i in a] == [i.key for i in b][::-1]
    changed = dict(records[0], rewritten=records[0]["rewritten"] + " ")
    assert load_items(write_jsonl(tmp_path / "c.jsonl", [changed]))[0].key != a[0].key
    twice = load_items(write_jsonl(tmp_path / "d.jsonl", [records[0], records[0]]))
    assert twice[0].key == a[0].key and twice[1].key == f"{a[0].key}-2"


def test_a_file_s_own_filter_verdicts_are_kept(tmp_path):
    record = dict(queue_records(1)[0], filters={"correct": True, "no_mixing": False})
    (item,) = load_items(write_jsonl(tmp_path / "q.jsonl", [record]))
    assert item.filters == {"correct": True, "no_mixing": False}


def _line(**change: object) -> str:
    """A queue record with fields changed (None: missing, as read_records counts it)."""
    return json.dumps(dict(queue_records(1)[0], **change))


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["{not json"], ":2: malformed JSON"),
        (["[1, 2]"], ":2: expected a JSON object, got list"),
        ([_line(rewritten=None)], ":2: missing field 'rewritten'"),
        (["", _line(question=7)], ":3: field 'question' must be a string, got int"),
        ([_line(gold=[5])], ":2: field 'gold' must be a string or a number"),
        ([_line(filters="yes")], ":2: field 'filters' must map filter names to true or false"),
    ],
)
def test_a_bad_line_is_a_one_line_error_naming_file_and_line(tmp_path, lines, message):
    path = tmp_path / "queue.jsonl"
    path.write_text("\n".join([_line(), *lines]) + "\n")
    with pytest.raises(UserError) as e:
        load_items(path)
    assert str(e.value).startswith(f"{path}{message}") and "\n" not in str(e.value)


def test_an_sft_file_needs_its_fields(tmp_path):
    path = write_jsonl(tmp_path / "sft.jsonl", [{"prompt": "q", "response": "r", "id": "x"}])
    with pytest.raises(UserError, match=r"sft.jsonl:1: missing field 'language'"):
        load_items(path)
    with pytest.raises(UserError, match="no records to review"):
        load_items(write_jsonl(tmp_path / "empty.jsonl", []))
    with pytest.raises(UserError, match="file not found"):
        load_items(tmp_path / "none.jsonl")


# --- the store -----------------------------------------------------------------------------


def test_the_newest_decision_wins_and_every_one_is_kept(tmp_path):
    store = DecisionStore(tmp_path / "d.sqlite")
    store.decide("a", "accepted")
    store.decide("b", "rejected")
    store.decide("a", "edited", "new text")
    reopened = DecisionStore(tmp_path / "d.sqlite")  # a restarted server sees the same
    current = reopened.current()
    assert {k: (d.decision, d.text) for k, d in current.items()} == {
        "a": ("edited", "new text"), "b": ("rejected", None)
    }  # fmt: skip
    assert [d.decision for d in reopened.history("a")] == ["edited", "accepted"]
    assert reopened.get("c") is None and reopened.history("c") == []
    with sqlite3.connect(tmp_path / "d.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_decision_is_checked(tmp_path):
    store = DecisionStore(tmp_path / "d.sqlite")
    with pytest.raises(ValueError, match="one of accepted, rejected, edited"):
        store.decide("a", "maybe")
    with pytest.raises(ValueError, match="needs its text"):
        store.decide("a", "edited")
    with pytest.raises(ValueError, match="only an edited one"):
        store.decide("a", "accepted", "text")
    assert store.current() == {}


def test_two_writers_lose_nothing(tmp_path):
    """Two tabs (here: threads, each through its own store) deciding the same items at once:
    every row is kept and each item's decision is the one committed last."""
    path = tmp_path / "d.sqlite"
    DecisionStore(path)
    last: dict[str, int] = {}
    lock = threading.Lock()

    def tab(decision: str) -> None:
        store = DecisionStore(path)
        for i in range(25):
            d = store.decide(f"item{i % 5}", decision)
            with lock:
                if d.seq > last.get(d.item, 0):
                    last[d.item] = d.seq

    threads = [threading.Thread(target=tab, args=(d,)) for d in ("accepted", "rejected")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store = DecisionStore(path)
    assert sum(len(store.history(f"item{i}")) for i in range(5)) == 50
    assert {k: d.seq for k, d in store.current().items()} == last


def test_a_killed_process_keeps_its_decisions(tmp_path):
    path = tmp_path / "d.sqlite"
    code = (
        "import os, sys; from r1lab.review.store import DecisionStore; "
        "s = DecisionStore(sys.argv[1]); s.decide('a', 'accepted'); "
        "s.decide('b', 'edited', 'kept'); os.kill(os.getpid(), 9)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], timeout=60)
    assert done.returncode == -9
    current = DecisionStore(path).current()
    assert (current["a"].decision, current["b"].text) == ("accepted", "kept")


def test_a_file_that_is_not_a_database_is_a_one_line_error(tmp_path):
    bad = tmp_path / "d.sqlite"
    bad.write_text("not a database, but long enough to have a header " * 4)
    with pytest.raises(UserError, match=r"d.sqlite: cannot use as the decisions database"):
        DecisionStore(bad)
    with pytest.raises(UserError, match="cannot use as the decisions database"):
        DecisionStore(tmp_path / "no" / "such" / "folder.sqlite")


# --- the export ----------------------------------------------------------------------------


def test_the_export_is_exactly_the_accepted_and_edited_items(queue_file, tmp_path):
    items = load_items(queue_file)
    store = DecisionStore(tmp_path / "d.sqlite")
    store.decide(items[0].key, "accepted")
    store.decide(items[1].key, "rejected")
    store.decide(items[2].key, "edited", "my rewrite")
    store.decide(items[3].key, "accepted")
    store.decide(items[3].key, "rejected")  # changed their mind: left out
    store.decide("not-in-the-file", "accepted")
    current = store.current()
    examples = accepted_examples(items, current)
    assert examples == [
        {"prompt": items[0].question, "response": items[0].rewritten, "id": "p0",
         "language": "en", "source": "coldstart", "review": "accepted"},
        {"prompt": items[2].question, "response": "my rewrite", "id": "p2",
         "language": "en", "source": "coldstart", "review": "edited"},
    ]  # fmt: skip
    assert counts(items, current) == {
        "total": 5, "decided": 4, "accepted": 1, "edited": 1, "rejected": 2
    }  # fmt: skip
    out = write_export(tmp_path / "out" / "reviewed.jsonl", examples)
    assert read_jsonl(out) == examples
    # the SFT stage reads it as it is
    assert len(read_records(out, required=("prompt", "response"))) == 2
    assert [p.name for p in out.parent.iterdir()] == ["reviewed.jsonl"]  # no temporary left


def test_a_failed_export_leaves_the_old_file(tmp_path, monkeypatch):
    out = tmp_path / "reviewed.jsonl"
    out.write_text("old\n")

    def broken(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="No space left"):
        write_export(out, [{"prompt": "q", "response": "r"}])
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["reviewed.jsonl"]


def test_the_export_of_an_sft_file_keeps_its_sources(sft_file, tmp_path):
    items = load_items(sft_file)
    store = DecisionStore(tmp_path / "d.sqlite")
    for item in items:
        store.decide(item.key, "accepted")
    examples = accepted_examples(items, store.current())
    assert [(e["id"], e["source"]) for e in examples] == [
        ("s0", "reasoning"), ("g0", "general/greeting")
    ]  # fmt: skip
    assert Path(write_export(tmp_path / "x.jsonl", examples)).exists()
