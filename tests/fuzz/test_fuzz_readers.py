"""Fuzzed data files: the JSONL and Parquet readers and the file tasks built on them.

Whatever the bytes, :func:`r1lab.data.io.read_records` returns records or raises a one-line
:class:`UserError` naming the file (and, for JSONL, the line: every line before it reads
cleanly and the named line alone does not); ``load_task`` on such a file returns problems,
each naming its true line, or a one-line error.
"""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

from r1lab.data.io import read_records
from r1lab.data.tasks import TaskConfig, load_task
from r1lab.errors import UserError

FUZZ = settings(
    max_examples=100,
    deadline=timedelta(seconds=5),
    derandomize=True,  # the same examples on every run: CI stays reproducible
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no explain phase: it is slow
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

NAMES = ["question", "answer", "problem", "solution", "id", "language", "x", ""]


def one_line(message: str) -> None:
    assert message.strip(), "empty error message"
    assert len(message.splitlines()) == 1, f"not one line: {message!r}"


def blank(raw: bytes) -> bool:
    """A line read_records skips (and that does not count as a record)."""
    return not raw.decode("utf-8").strip()


# --- JSONL: lines of every kind ----------------------------------------------------------

JSON_VALUE = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**30), 10**30),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=10),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
RECORD = st.dictionaries(st.sampled_from(NAMES), JSON_VALUE, max_size=5)
PLAUSIBLE = st.fixed_dictionaries(
    {"question": st.text(min_size=1, max_size=20), "answer": st.one_of(st.text(), st.integers())}
)
ODD_LINES = [
    b"",
    b"   ",
    b"\t",
    b"\r",
    b"\x0c",
    b"\xe3\x80\x80",  # an ideographic space: blank to str.strip
    b"\xef\xbb\xbf{}",  # a byte-order mark
    b"[" * 5000,  # deeper than json's recursion limit
    b'{"a": ' * 3000 + b"1" + b"}" * 3000,
    b'{"answer": ' + b"9" * 5000 + b', "question": "q"}',  # more digits than int() takes
    b'{"question": "q", "answer": NaN}',
    b'{"question": "q", "answer": 1e999999}',
    b'{"question": "\\ud800", "answer": "1"}',  # a lone surrogate
    b'{"question": "q",\r"answer": "1"}',  # \r is JSON whitespace
    b'\r{"question": "q", "answer": "2"}',
    b'{"question": "q", "answer": "1"}\r{"question": "q"}',
    b'{"question": "q", "answer": "1", "question": "r"}',  # a repeated key
    b"\xff\xfe",
    b"\xc3",
    b"\xed\xa0\x80",  # a UTF-8-encoded surrogate: not UTF-8
    b"null",
    b"[]",
    b'"text"',
    b"12",
    b"\x00",
]


@st.composite
def jsonl_line(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind <= 3:
        obj = draw(st.one_of(PLAUSIBLE, RECORD))
        return json.dumps(obj, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if kind == 4:  # valid JSON, but not an object
        return json.dumps(draw(JSON_VALUE)).encode()
    if kind == 5:  # truncated
        line = json.dumps(draw(PLAUSIBLE)).encode()
        return line[: draw(st.integers(0, len(line)))]
    if kind == 6:
        return draw(st.binary(max_size=30))
    return draw(st.sampled_from(ODD_LINES))


PLAUSIBLE_LINE = PLAUSIBLE.map(lambda r: json.dumps(r, ensure_ascii=False).encode())


@st.composite
def jsonl_file(draw: st.DrawFn, plausible: bool = False) -> bytes:
    """A JSONL file: lines of every kind, or (``plausible``) mostly question/answer ones."""
    line = st.one_of(PLAUSIBLE_LINE, PLAUSIBLE_LINE, jsonl_line()) if plausible else jsonl_line()
    lines = draw(st.lists(line, max_size=6))
    end = draw(st.sampled_from([b"\n", b"", b"\r\n"]))
    return b"\n".join(lines) + end


@st.composite
def field_map(draw: st.DrawFn) -> tuple[dict[str, str], list[str]]:
    """``fields`` (ours -> theirs) and ``required`` for read_records."""
    ours = ["question", "answer", "id"]
    fields = draw(st.dictionaries(st.sampled_from(ours), st.sampled_from(NAMES), max_size=3))
    required = draw(st.lists(st.sampled_from(ours), unique=True, max_size=2))
    return fields, required


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-readers")


def check_read(path: Path, fields: dict[str, str], required: list[str]) -> list[dict] | None:
    """read_records, with the fuzz property: records, or a one-line error naming the file."""
    try:
        records = read_records(path, fields, required)
    except UserError as e:
        event("refused")
        one_line(str(e))
        assert str(e).startswith(f"{path}:"), str(e)
        return None
    event("read")
    assert isinstance(records, list) and all(isinstance(r, dict) for r in records)
    for r in records:
        assert all(r.get(name) is not None for name in required)
    return records


@FUZZ
@given(content=jsonl_file(), mapping=field_map())
@example(content=b"[" * 100_000, mapping=({}, []))  # json's RecursionError
@example(content=b'{"a": ' + b"1" * 5000 + b"}\n", mapping=({}, []))  # int digit limit
@example(  # two names of ours for one field of theirs: was a KeyError in load_task
    content=b'{"x": "q"}\n', mapping=({"question": "x", "answer": "x"}, ["question", "answer"])
)
def test_jsonl_gives_records_or_an_error_naming_file_and_line(
    content: bytes, mapping: tuple[dict[str, str], list[str]], folder: Path
) -> None:
    fields, required = mapping
    path = folder / "data.jsonl"
    path.write_bytes(content)
    lines = content.split(b"\n")
    try:
        records = read_records(path, fields, required)
    except UserError as e:
        event("refused")
        message = str(e)
        one_line(message)
        m = re.match(rf"{re.escape(str(path))}:(\d+): ", message)
        assert m, message
        n = int(m.group(1))
        assert 1 <= n <= len(lines)
        # the named line is bad: the lines before it parse (their fields are checked once
        # the whole file has parsed, so a missing field may be named after a later line's
        # broken JSON)...
        path.write_bytes(b"\n".join(lines[: n - 1]))
        read_records(path, fields)
        # ...and it alone does not read
        path.write_bytes(lines[n - 1])
        with pytest.raises(UserError):
            read_records(path, fields, required)
        return
    event("read")
    assert len(records) == sum(not blank(raw) for raw in lines)
    for rec in records:
        assert all(rec.get(name) is not None for name in required)


def test_renamed_fields_are_read_from_the_row_as_read(folder: Path) -> None:
    """Regressions of the field mapping: one field of theirs for two names of ours, a swap."""
    path = folder / "rename.jsonl"
    path.write_text('{"x": "q", "question": "Q", "answer": "A"}\n')
    assert read_records(path, {"question": "x", "answer": "x"}) == [
        {"question": "q", "answer": "q"}
    ]
    assert read_records(path, {"question": "answer", "answer": "question"}) == [
        {"x": "q", "question": "A", "answer": "Q"}
    ]


# --- Parquet: random tables, then random and broken bytes --------------------------------

COLUMN = st.one_of(
    st.lists(st.one_of(st.none(), st.text(max_size=8)), min_size=1, max_size=3).map(pa.array),
    st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=3).map(pa.array),
    st.lists(st.floats(allow_nan=True), min_size=1, max_size=3).map(pa.array),
    st.lists(st.binary(max_size=4), min_size=1, max_size=3).map(pa.array),
    st.lists(st.lists(st.integers(0, 9), max_size=2), min_size=1, max_size=3).map(pa.array),
    st.lists(st.booleans(), min_size=1, max_size=3).map(pa.array),
    # dates and times whose stored number is any int64: many lie outside Python's datetime
    st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=3).map(
        lambda v: pa.array(v, pa.int32()).cast(pa.date32())
    ),
    st.tuples(
        st.sampled_from(
            [pa.date64(), pa.timestamp("us"), pa.timestamp("ns", "UTC"), pa.duration("s")]
        ),
        st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=3),
    ).map(lambda t: pa.array(t[1], pa.int64()).cast(t[0])),
)


@st.composite
def parquet_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=100))
    if kind == 1:  # the magic bytes around junk
        return b"PAR1" + draw(st.binary(max_size=60)) + b"PAR1"
    columns = draw(st.lists(COLUMN, min_size=1, max_size=3))
    rows = min(len(c) for c in columns)
    names = draw(st.lists(st.sampled_from(NAMES), min_size=len(columns), max_size=len(columns)))
    buffer = io.BytesIO()
    pq.write_table(pa.table([c[:rows] for c in columns], names=names), buffer)
    data = buffer.getvalue()
    if kind <= 3:
        return data
    i = draw(st.integers(0, len(data) - 1))
    if kind == 4:
        return data[:i]  # truncated
    return data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1 :]  # one byte changed


@FUZZ
@given(content=parquet_bytes(), mapping=field_map())
def test_parquet_gives_records_or_an_error_naming_the_file(
    content: bytes, mapping: tuple[dict[str, str], list[str]], folder: Path
) -> None:
    path = folder / "data.parquet"
    path.write_bytes(content)
    check_read(path, *mapping)


def test_a_parquet_date_out_of_range_is_one_line(folder: Path) -> None:
    """Regression: the conversion to Python objects (after the read) raised a traceback."""
    path = folder / "date.parquet"
    pq.write_table(
        pa.table({"question": pa.array([2**31 - 1], pa.int32()).cast(pa.date32())}), path
    )
    with pytest.raises(UserError, match="date.parquet: cannot read Parquet"):
        read_records(path)


# --- the jsonl task on such files --------------------------------------------------------


@FUZZ
@given(
    content=jsonl_file(plausible=True),
    question=st.sampled_from(["", "", "question", "problem", "x"]),
    answer=st.sampled_from(["", "", "answer", "solution", "question"]),
    fmt=st.sampled_from(["", "", "plain", "gsm8k", "boxed", "latex"]),
    limit=st.integers(0, 3),
    template=st.sampled_from(["{question}", "Q: {question}", "no placeholder"]),
)
@example(  # lines split at \r too (text mode) had the sources name the wrong lines
    content=b'\r{"question": "q", "answer": "1"}\n{"question": "q",\r"answer": "2"}\n',
    question="",
    answer="",
    fmt="",
    limit=0,
    template="{question}",
)
def test_jsonl_task_gives_problems_on_their_lines_or_one_line_error(
    content: bytes, question: str, answer: str, fmt: str, limit: int, template: str, folder: Path
) -> None:
    path = folder / "task.jsonl"
    path.write_bytes(content)
    cfg = TaskConfig(
        name="jsonl",
        path=str(path),
        question_field=question,
        answer_field=answer,
        answer_format=fmt,
        limit=limit,
        prompt_template=template,
    )
    try:
        problems = load_task(cfg)
    except UserError as e:
        event("refused")
        one_line(str(e))
        return
    event("loaded")
    lines = content.split(b"\n")
    for p in problems:
        assert isinstance(p.question, str) and p.question.strip()
        assert isinstance(p.answer, str) and p.answer
        where, line = p.meta["source"].rsplit(":", 1)
        assert where == str(path)
        record = json.loads(lines[int(line) - 1])
        assert record[question or "question"] == p.question
