"""Typed configs: dataclasses read from a YAML recipe plus ``section.field=value`` overrides.

Every field is declared with :func:`option`, which records its help text and, where the
tiny default differs from the DeepSeek-R1 report, the report's full-scale value. The help
text feeds ``--help`` and ``r1lab config`` output, so a field's documentation lives in
exactly one place.
"""

from __future__ import annotations

import dataclasses
import difflib
import reprlib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from r1lab.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class Check:
    """A constraint on one config value: ``test`` says whether a value is allowed and
    ``expect`` says, in the error message, what is (``>= 1``, ``one of a, b``)."""

    test: Callable[[Any], bool]
    expect: str


def at_least(low: float) -> Check:
    return Check(lambda v: v >= low, f">= {low}")


def positive() -> Check:
    return Check(lambda v: v > 0, "> 0")


def in_range(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Check:
    """``low <= v <= high``, either end open on request; shown as ``in [0, 1)`` and the like."""

    def test(v: Any) -> bool:
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)

    return Check(test, f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}")


def a_device() -> Check:
    """A torch device name as the stages take it: auto (CUDA when available), cpu, cuda, cuda:N."""
    return Check(
        lambda v: v in ("auto", "cpu", "cuda") or v.startswith("cuda:"), "auto, cpu, cuda or cuda:N"
    )


def one_of(*choices: str) -> Check:
    return Check(lambda v: v in choices, f"one of {', '.join(choices)}")


def option(default: Any, help: str, report: Any = None, check: Check | None = None) -> Any:
    """A config field with its documentation and, optionally, the values it allows.

    ``report`` is the DeepSeek-R1 report's full-scale value when it differs from the tiny
    default; it is shown in ``--help`` so that scaling up is a matter of reading. ``check``
    is verified by :func:`validate` (so by every :func:`load_config`), before a stage runs;
    ``None`` passes the check of an optional field.
    """
    meta = {"help": help, "report": report, "check": check}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: _copy(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


def section(cls: type[T], **defaults: Any) -> T:
    """A nested config section (a dataclass field whose type is another config).

    ``defaults`` replace the section's own defaults where a stage needs others (pretraining
    takes larger steps than fine-tuning); ``--help`` shows the replaced values.
    """
    if not defaults:
        return dataclasses.field(default_factory=cls)
    return dataclasses.field(default_factory=lambda: cls(**defaults))


def flat_keys(cls_or_obj: Any, prefix: str = "") -> dict[str, dataclasses.Field]:
    """All leaf keys of a config class as dotted paths, mapped to their fields."""
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    hints = typing.get_type_hints(cls)
    keys: dict[str, dataclasses.Field] = {}
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            keys.update(flat_keys(typ, f"{prefix}{f.name}."))
        else:
            keys[f"{prefix}{f.name}"] = f
    return keys


def _unknown(key: str, cls: type, source: str) -> UserError:
    valid = list(flat_keys(cls))
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    if not near:  # a misspelled last part: compare leaf names too
        leaf = key.rsplit(".", 1)[-1]
        by_leaf = {k.rsplit(".", 1)[-1]: k for k in valid}
        hit = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.6)
        near = [by_leaf[hit[0]]] if hit else []
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    return UserError(f"{source}: unknown config key '{key}'{hint}")


def _coerce(value: Any, typ: Any, key: str, source: str) -> Any:
    """Check (and where lossless, convert) a YAML value to the field's declared type."""
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, source)
            except UserError:
                continue
        raise _type_error(value, typ, key, source)
    if typ is Any:
        return value
    if origin is list:
        if not isinstance(value, list):
            raise _type_error(value, typ, key, source)
        return [_coerce(v, args[0], key, source) for v in value] if args else value
    if origin is dict:
        if not isinstance(value, dict):
            raise _type_error(value, typ, key, source)
        if not args:
            return dict(value)
        # keys and values too: a value of no declared type (a nested list, a YAML alias
        # expanding to millions of items) would reach the stage, and `--print-config`
        return {
            _coerce(k, args[0], key, source): _coerce(v, args[1], f"{key}.{k}", source)
            for k, v in value.items()
        }
    if typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if typ is float and isinstance(value, str):
        try:  # YAML reads "3e-6" (no dot) as a string
            return float(value)
        except ValueError:
            raise _type_error(value, typ, key, source) from None
    if typ is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if (
        isinstance(typ, type)
        and isinstance(value, typ)
        and not (typ is int and isinstance(value, bool))
    ):
        return value
    raise _type_error(value, typ, key, source)


def _type_error(value: Any, typ: Any, key: str, source: str) -> UserError:
    name = getattr(typ, "__name__", None) or str(typ).replace("typing.", "")
    return UserError(f"{source}: config key '{key}' expects {name}, got {_short_repr(value)}")


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 200
_REPR.maxlevel = 4  # a YAML alias nests a value many times over: repr it bounded


def _short_repr(value: Any) -> str:
    """``repr(value)``, with long strings, lists and deep nesting elided (``...``)."""
    return _REPR.repr(value)


def _apply(obj: Any, data: dict, root: type, source: str, prefix: str = "") -> None:
    if not isinstance(data, dict):
        raise UserError(f"{source}: section '{prefix.rstrip('.') or '<top>'}' must be a mapping")
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if k not in names:
            raise _unknown(key, root, source)
        typ = hints[k]
        if dataclasses.is_dataclass(typ):
            if v is None:
                continue
            _apply(getattr(obj, k), v, root, source, f"{key}.")
        else:
            setattr(obj, k, _coerce(v, typ, key, source))


def parse_overrides(overrides: list[str]) -> dict:
    """``["grpo.lr=1e-6", "run.name=x"]`` -> nested dict; values are read as YAML scalars."""
    nested: dict = {}
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override '{item}': expected section.field=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise UserError(f"override '{item}': empty key before '='")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        except Exception as e:  # what PyYAML lets through as Python's own errors
            raise UserError(f"override '{key}': {_unreadable(e)}") from None
        node = nested
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UserError(f"override '{item}': '{p}' is both a value and a section")
        node[parts[-1]] = value
    return nested


def _unreadable(e: Exception) -> str:
    """What YAML could not read, for the errors PyYAML lets through as Python's own: nesting
    deeper than Python's recursion limit, an int of more than 4,300 digits, a tagged scalar
    its constructor fails on (``!!timestamp 2001``)."""
    if isinstance(e, RecursionError):
        return "not readable as YAML (nested too deeply)"
    if isinstance(e, ValueError):
        return f"not readable as YAML ({str(e).split(';')[0]})"
    return f"not readable as YAML (a value PyYAML cannot build: {type(e).__name__})"


def load_config(
    cls: type[T], recipe: str | Path | None = None, overrides: list[str] | None = None
) -> T:
    """Defaults of ``cls``, then the recipe file, then command-line overrides (last wins)."""
    cfg = cls()
    if recipe:
        path = Path(recipe)
        if not path.is_file():
            raise UserError(f"{path}: recipe file not found")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"{path}: not UTF-8 text (byte {e.start})") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            raise UserError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
        except Exception as e:
            raise UserError(f"{path}: {_unreadable(e)}") from None
        _apply(cfg, data, cls, str(path))
    if overrides:
        _apply(cfg, parse_overrides(overrides), cls, "command line")
    validate(cfg)
    return cfg


def validate(cfg: Any) -> None:
    """Raise a one-line :class:`UserError` for the first value that fails its field's check."""
    for key, f in flat_keys(cfg).items():
        check = f.metadata.get("check")
        if check is None:
            continue
        value = _value(cfg, key)
        if value is not None and not check.test(value):
            raise UserError(f"config key '{key}' must be {check.expect}, got {_short_repr(value)}")


def _value(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True))


def describe(cls: type) -> str:
    """Every key with its default, report value and help, for ``--help``."""
    lines = []
    defaults = cls()
    for key, f in flat_keys(cls).items():
        report = f.metadata.get("report")
        rep = f" [report: {report}]" if report is not None else ""
        check = f.metadata.get("check")
        allowed = f" ({check.expect})" if check is not None else ""
        lines.append(
            f"  {key} = {_value(defaults, key)!r}{rep}\n      {f.metadata.get('help', '')}{allowed}"
        )
    return "\n".join(lines)
