"""Fuzzed config input: overrides, recipe files and the command line that reads them.

Whatever the keys and values, :func:`r1lab.config.load_config` returns a config or raises a
one-line :class:`UserError`, and ``r1lab <stage> --print-config ...`` exits 0 with the config
as YAML or exits 2 with one line ``r1lab: error: ...`` on stderr: never a traceback, never a
hang. Keys are drawn from the real config classes (every dotted key and section), misspelt
and made up; values are YAML of every kind, broken YAML included.
"""

from __future__ import annotations

import functools
import io
from contextlib import redirect_stderr, redirect_stdout
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

from r1lab.cli import STAGES, _resolve, main
from r1lab.config import flat_keys, load_config, parse_overrides, to_dict
from r1lab.errors import UserError

FUZZ = settings(
    max_examples=80,
    deadline=timedelta(seconds=5),
    derandomize=True,  # the same examples on every run: CI stays reproducible
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no explain phase: it is slow
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# a few stages cover every kind of field: sections in sections (pipeline), dict fields
# (grpo, sft), optional numbers (grpo), device and choice checks (eval, serve)
FUZZED_STAGES = ("grpo", "sft", "eval", "serve", "pipeline")


@functools.cache
def config_class(stage: str) -> type:
    return _resolve(STAGES[stage].config, stage)


@functools.cache
def keys_of(stage: str) -> tuple[list[str], list[str]]:
    """(leaf keys, section names) of a stage's config, all dotted."""
    leaves = list(flat_keys(config_class(stage)))
    sections = sorted({leaf.rsplit(".", i)[0] for leaf in leaves for i in (1, 2) if "." in leaf})
    return leaves, sections


def one_line(message: str) -> None:
    assert message.strip(), "empty error message"
    assert len(message.splitlines()) == 1, f"not one line: {message!r}"


# --- values: YAML of every kind ----------------------------------------------------------

YAML_WORDS = [
    *("true", "false", "yes", "no", "on", "off", "null", "~", "", " ", "Null", "TRUE"),
    *(".nan", ".inf", "-.inf", "nan", "inf", "1e-6", "3e-6", "1.5e-6", "1e999", "1.0e+999"),
    *("-0", "0x1f", "0o17", "0b101", "1_000", "+5", "1,000", "1:30", "2001-12-14", "12:30:00"),
    *("'quoted'", '"dq\\n"', '"\\ud800"', "'", '"', "[1, 2]", "[a, b]", "[]", "{}", "[[1]]"),
    *("{a: 1}", "{general: [0.5, 1.0]}", "{8200: 65536}", "{a: {b: c}}", "{1: [x]}", "[1, [2]]"),
    *("[", "{", "]", "}", ":", "- x", "a: b", "a:b", "? a", "|", ">", "#c", "---", "...", "@"),
    *("&a [1]", "*a", "!!binary aGVsbG8=", "!!set {a, b}", "!!python/object:os.system"),
    *("!!float 1", "!!str 3", "!!int x", "!!timestamp 2001", "!<tag:x> 1", "%YAML 1.1", "`"),
    *("!!float x", "!!int 0x", "!!bool maybe", "!!timestamp 2001-13-45", "!!null x", "!!omap [a]"),
    *("\t", "a\tb", "a\nb", "\r", "\x00", "\x85", "\u2028", "é", "中文", "auto", "cpu", "cuda:0"),
    *("9" * 5000, "[" * 200 + "]" * 200, "{a: " * 100 + "1" + "}" * 100, "x" * 5000),
]
SCALAR = st.one_of(
    st.sampled_from(YAML_WORDS),
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=12),
)
VALUE = st.one_of(
    SCALAR,
    st.lists(SCALAR, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
    st.dictionaries(SCALAR, SCALAR, max_size=3).map(
        lambda d: "{" + ", ".join(f"{k}: {v}" for k, v in d.items()) + "}"
    ),
)


# --- keys: real, misspelt and made up ----------------------------------------------------


@st.composite
def config_key(draw: st.DrawFn, stage: str) -> str:
    leaves, sections = keys_of(stage)
    kind = draw(st.integers(0, 9))
    if kind <= 4:
        return draw(st.sampled_from(leaves))
    if kind == 5:
        return draw(st.sampled_from(sections))
    key = draw(st.sampled_from(leaves))
    if kind == 6:  # misspelt: a character dropped or added
        i = draw(st.integers(0, len(key)))
        return key[:i] + draw(st.sampled_from(["", "x", ".", "_", " "])) + key[i + 1 :]
    if kind == 7:  # a leaf used as a section, a section in the wrong place
        return key + draw(st.sampled_from([".x", ".", "..", ".lr"]))
    return draw(st.text(max_size=15))  # anything at all


@functools.cache
def defaults_of(stage: str) -> dict[str, object]:
    """Each leaf key's default value."""
    cfg = config_class(stage)()
    out = {}
    for key in keys_of(stage)[0]:
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        out[key] = value
    return out


def typed_value(default: object) -> st.SearchStrategy[str]:
    """YAML for a value of the default's type, so that many overrides get past the parser:
    the default itself, or another value of its kind."""
    dumped = yaml.safe_dump(default, default_flow_style=True)
    same = st.just(dumped.removesuffix("\n...\n").removesuffix("\n"))
    if isinstance(default, bool):
        other = st.sampled_from(["true", "false"])
    elif isinstance(default, int):
        other = st.integers(-2, 10**6).map(str)
    elif isinstance(default, float):
        other = st.floats(-10, 1e4, allow_nan=False).map(repr)
    elif isinstance(default, str):
        other = st.text(max_size=8)
    else:
        other = VALUE
    return st.one_of(same, other)


@st.composite
def override(draw: st.DrawFn, stage: str) -> str:
    if draw(st.integers(0, 15)) == 0:
        return draw(st.text(max_size=10))  # with or without '='
    key = draw(config_key(stage))
    default = defaults_of(stage).get(key)
    if key in defaults_of(stage) and draw(st.booleans()):
        return f"{key}={draw(typed_value(default))}"
    return f"{key}={draw(VALUE)}"


# --- recipes: YAML documents from real keys, then broken ---------------------------------

PY_VALUE = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**30), 10**30),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
# values some field takes, so that a recipe gets past its first key now and then
PLAUSIBLE = st.sampled_from(["auto", "cpu", "", "x", 0, 1, 2, 8, 0.5, 1e-4, True, False, None])


@st.composite
def recipe_bytes(draw: st.DrawFn, stage: str) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:
        return draw(st.text(max_size=200)).encode("utf-8")
    nested: dict = {}
    for _ in range(draw(st.integers(0, 5))):
        *parents, leaf = draw(config_key(stage)).split(".")
        node = nested
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                break
        else:
            node[leaf] = draw(st.one_of(PY_VALUE, PLAUSIBLE))
    text = yaml.safe_dump(nested, sort_keys=False, allow_unicode=True).encode("utf-8")
    if kind <= 5:
        return text
    # broken: truncated, or bytes put in (invalid UTF-8, a tab, a NUL, a stray bracket)
    i = draw(st.integers(0, len(text)))
    if kind == 6:
        return text[:i]
    junk = draw(st.sampled_from([b"\xff", b"\xc3", b"\t", b"\x00", b"[", b": ", b"\n  - ", b"&"]))
    return text[:i] + junk + text[i + draw(st.integers(0, 1)) :]


# --- the Python API ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def recipe_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-config") / "recipe.yaml"


def same_config(a: object, b: object) -> bool:
    # YAML text compares NaN equal to itself, which dataclass equality does not
    return yaml.safe_dump(to_dict(a)) == yaml.safe_dump(to_dict(b))


@FUZZ
@given(stage=st.sampled_from(FUZZED_STAGES), data=st.data())
@example(stage="grpo", data=["grpo.max_new_tokens=" + "9" * 5000])  # an int YAML cannot build
@example(stage="grpo", data=["grpo.lr=" + "[" * 3000])  # deeper than PyYAML's recursion
@example(stage="grpo", data=["grpo.task_schedule={a: " + "[" * 400 + "]" * 400 + "}"])
@example(stage="grpo", data=["grpo.max_new_tokens_schedule={'8200': x}"])
@example(stage="grpo", data=["model=!!timestamp 2001"])  # PyYAML raised AttributeError
@example(stage="grpo", data=["model=!!bool maybe"])  # ...and KeyError
@example(stage="grpo", data=["gr\rpo\u2028.lr=1"])  # line breaks other than \n in a key
def test_overrides_give_a_config_or_one_line_error(
    stage: str, data: st.DataObject | list[str], recipe_path: Path
) -> None:
    cls = config_class(stage)
    items = data if isinstance(data, list) else data.draw(st.lists(override(stage), max_size=4))
    try:
        cfg = load_config(cls, None, items)
    except UserError as e:
        event("refused")
        one_line(str(e))
        return
    event("loaded")
    assert isinstance(cfg, cls)
    # what --print-config prints is a recipe that gives the same config back
    recipe_path.write_text(
        yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    assert same_config(load_config(cls, recipe_path), cfg)


@st.composite
def typed_override(draw: st.DrawFn, stage: str) -> str:
    key = draw(st.sampled_from(keys_of(stage)[0]))
    return f"{key}={draw(typed_value(defaults_of(stage)[key]))}"


@FUZZ
@given(stage=st.sampled_from(FUZZED_STAGES), data=st.data())
def test_printed_config_reads_back_as_the_same_config(
    stage: str, data: st.DataObject, recipe_path: Path
) -> None:
    """Overrides of the right kind, so that most load: what ``--print-config`` prints of the
    config is a recipe that gives the same config back."""
    cls = config_class(stage)
    try:
        cfg = load_config(cls, None, data.draw(st.lists(typed_override(stage), max_size=3)))
    except UserError as e:  # a value of the right type that fails its check
        event("refused")
        one_line(str(e))
        return
    event("loaded")
    recipe_path.write_text(
        yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    assert same_config(load_config(cls, recipe_path), cfg)


@FUZZ
@given(stage=st.sampled_from(FUZZED_STAGES), data=st.data())
@example(stage="grpo", data=b"grpo:\n  lr: \xff\n")  # not UTF-8
@example(stage="grpo", data=b"[" * 3000)
@example(stage="grpo", data=b"model: !!float x\n")
@example(stage="grpo", data=b"grpo: {max_new_tokens: " + b"9" * 5000 + b"}")
@example(  # a YAML alias bomb: 10**7 items, had --print-config copying them for minutes
    stage="grpo",
    data=b"grpo:\n  task_schedule:\n    a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
    + b"".join(
        f"    {n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n".encode()
        for p, n in zip("abcdef", "bcdefg", strict=True)
    ),
)
@example(stage="grpo", data=b"grpo: {task_schedule: {a: [[&x [1, 1], [*x, *x]]]}}")
def test_recipe_files_give_a_config_or_one_line_error(
    stage: str, data: st.DataObject | bytes, recipe_path: Path
) -> None:
    cls = config_class(stage)
    recipe_path.write_bytes(data if isinstance(data, bytes) else data.draw(recipe_bytes(stage)))
    try:
        cfg = load_config(cls, recipe_path)
    except UserError as e:
        event("refused")
        one_line(str(e))
        # the file is named, unless a value read fine and failed its check afterwards
        assert str(e).startswith((str(recipe_path), "config key ")), str(e)
        return
    event("loaded")
    assert isinstance(cfg, cls)


@FUZZ
@given(items=st.lists(st.text(max_size=12), max_size=4))
def test_parse_overrides_nests_or_refuses_in_one_line(items: list[str]) -> None:
    try:
        nested = parse_overrides(items)
    except UserError as e:
        one_line(str(e))
        return
    assert isinstance(nested, dict)


# --- the command line --------------------------------------------------------------------

ARGV_JUNK = ["--resume", "--recipe", "--print-config", "-x", "--bogus", "--", "=", "=1", "-1"]


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` in-process, with its stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@FUZZ
@given(stage=st.sampled_from(FUZZED_STAGES), data=st.data())
@example(stage="sft", data=["sft.lr_max=[", "--recipe"])
@example(stage="grpo", data=["--recipe", "-", "grpo.lr=1"])
def test_print_config_exits_0_or_2_with_one_line(
    stage: str, data: st.DataObject | list[str], recipe_path: Path
) -> None:
    if isinstance(data, list):
        args = data
    else:
        junk = st.sampled_from([*ARGV_JUNK, f"--recipe={recipe_path}"])
        args = data.draw(st.lists(st.one_of(override(stage), junk), max_size=4))
        if data.draw(st.booleans()):
            recipe_path.write_bytes(data.draw(recipe_bytes(stage)))
            args = ["--recipe", str(recipe_path), *args]
    code, out, err = run_cli([stage, "--print-config", *args])
    event(f"exit {code}")
    if code == 0:
        assert err == ""
        printed = yaml.safe_load(out)  # the config, as YAML that reads back
        assert isinstance(printed, dict) and set(printed) == set(to_dict(config_class(stage)()))
        out.encode("utf-8")  # a real stdout is strict UTF-8: no lone surrogates
    else:
        assert code == 2, (code, err)
        assert out == ""
        assert err.startswith("r1lab: error: ") and err.endswith("\n"), err
        one_line(err)
