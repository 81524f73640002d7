"""Typed configuration: dataclasses filled from a YAML preset and dotted ``key=value`` overrides.

Every entry point describes its settings as nested dataclasses with a docstring under each field.
``load_config`` reads a YAML file, applies command-line overrides such as ``env.game=coinrun``,
and checks every key, type and range before any work starts. Problems raise ``ConfigError``
naming the key, the file and what is allowed; ``procgen_common.cli`` turns that into one line
on stderr and exit status 2.

Ranges and choices are declared on the field (``bounded(...)`` and ``Literal``), so one checker
(``check``) validates every config in the suite; checks that involve several fields live in a dataclass's
``validate()`` method. The entry points' configs are frozen and ``Checked``: a change is a
``dataclasses.replace``, which builds a new config and checks it like the loader does.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import difflib
import inspect
import math
import re
import textwrap
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

T = TypeVar("T")


class DuplicateKeyError(yaml.YAMLError):
    """A mapping that names one key twice (YAML forbids it; PyYAML would keep the last value)."""

    def __init__(self, key, mark):
        super().__init__(f"duplicate key {key!r}")
        self.key, self.problem_mark = key, mark


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, also reading ``2e6`` and ``3e-4`` as numbers (YAML 1.2 does; 1.1 needs a dot), and
    refusing a key given twice in one mapping (the YAML spec forbids it; PyYAML silently keeps the last one)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise DuplicateKeyError(key, key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


class ConfigError(ValueError):
    """A bad configuration: the message names the key, where it came from and what is allowed."""


def bounded(default: Any, low: float | None = None, high: float | None = None, *, low_open: bool = False):
    """A dataclass field whose numeric value must lie in ``[low, high]`` (``(low, high]`` if low_open)."""
    return dataclasses.field(default=default, metadata={"range": (low, high, low_open)})


def closest(name: str, allowed: typing.Iterable[str]) -> str:
    """' (did you mean X?)' for the closest allowed name, or ''."""
    match = difflib.get_close_matches(name, list(allowed), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass (read from its source)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body
        for node, after in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp)
        return f"list of {_type_name(item)}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints are accepted for floats)."""
    origin = typing.get_origin(tp)
    bad = ValueError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp) or tp in (bool, str):
        if not isinstance(value, tp):
            raise bad
        return value
    if origin is Literal:
        if value not in typing.get_args(tp):
            choices = ", ".join(str(a) for a in typing.get_args(tp))
            raise ValueError(
                f"{key}: {value!r} is not allowed; choose one of {choices}"
                f"{closest(str(value), map(str, typing.get_args(tp)))}"
            )
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is not type(None):
                with contextlib.suppress(ValueError):
                    return _convert(value, arg, key)
        raise bad
    if origin is list:
        if not isinstance(value, list):
            raise bad
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)  # 2e6 steps
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if not math.isfinite(value):
            # NaN passes every < and > comparison, so a range check alone would let it through.
            raise ValueError(f"{key}: {value!r} is not a finite number; give a finite value")
        return float(value)
    raise TypeError(f"unsupported config annotation {tp!r} for {key}")


def _check_range(value: Any, spec: tuple, key: str) -> None:
    low, high, low_open = spec
    if value is None:
        return
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and value > high
    if too_low or too_high:
        if high is None:
            allowed = f"> {low}" if low_open else f">= {low}"
        elif low is None:
            allowed = f"<= {high}"
        else:
            allowed = f"in {'(' if low_open else '['}{low}, {high}]"
        raise ValueError(f"{key}: {value!r} is out of range; allowed {allowed}")


_hints = cache(typing.get_type_hints)


def check(obj: Any) -> None:
    """Check a config dataclass: every field against its annotation and range (an int given for a float becomes a
    float), its sections that are not ``Checked`` likewise, then its ``validate()``. Raises ``ValueError("key: what
    is wrong; what is allowed")``, the key relative to ``obj``, as ``validate()`` methods do."""
    hints = _hints(type(obj))
    for fld in dataclasses.fields(obj):
        value = _convert(getattr(obj, fld.name), hints[fld.name], fld.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, Checked):
            try:
                check(value)
            except ValueError as err:
                raise ValueError(f"{fld.name}.{err}") from None
        if "range" in fld.metadata:
            _check_range(value, fld.metadata["range"], fld.name)
        object.__setattr__(obj, fld.name, value)  # the converted value, also on a frozen dataclass
    if hasattr(obj, "validate"):
        obj.validate()


class Checked:
    """Base of the frozen config dataclasses (``@dataclass(frozen=True) class X(Checked)``): every instance is
    checked (``check``) when it is built, by ``from_dict``, by ``dataclasses.replace`` or by a direct call, so a
    config that exists is a valid one. A bad value raises a one-line ``ConfigError`` naming the field."""

    def __post_init__(self) -> None:
        try:
            check(self)
        except ValueError as err:
            raise ConfigError(str(err)) from None


def from_dict(cls: type[T], data: Any, where: str, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a nested mapping, checking keys, then ``check``. A ``fill_data(data, where)``
    classmethod may first fill in keys derived from others (``experiments.pipeline``: each stage's env, seed...)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r} ({where})")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise ConfigError(
                f"unknown key '{prefix}{key}'{closest(prefix + str(key), [prefix + f for f in fields])} ({where}); "
                f"allowed under {prefix.rstrip('.') or 'the top level'}: {', '.join(fields)}"
            )
    if hasattr(cls, "fill_data"):
        data = cls.fill_data(data, where)
    kwargs = {name: data[name] for name in fields if name in data}
    for name, value in kwargs.items():
        if dataclasses.is_dataclass(tp := _hints(cls)[name]):
            kwargs[name] = from_dict(tp, value if value is not None else {}, where, f"{prefix}{name}.")
    try:
        obj = cls(**kwargs)
        if not isinstance(obj, Checked):
            check(obj)
    except ValueError as err:
        raise ConfigError(f"{prefix}{err} ({where})") from None
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'env.game=coinrun'`` -> (['env', 'game'], 'coinrun'); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value, e.g. env.game=coinrun")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key; write e.g. train.seed=3")
    try:
        value = yaml.load(raw, Loader=YamlLoader) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, with one-line errors for a missing file or bad YAML."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder, not a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=YamlLoader)
    except DuplicateKeyError as err:
        raise ConfigError(
            f"config file {path} gives key {err.key!r} twice (line {err.problem_mark.line + 1}); keep one"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{line}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text (is it the right file?)") from None
    except OSError as err:
        raise ConfigError(f"config file {path} cannot be read ({err.strerror})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, got {type(data).__name__}")
    return data


def node_at(data: dict, keys: typing.Sequence[str], what: str) -> dict:
    """The mapping under the dotted path ``keys`` of ``data``, made where absent or empty (``env:`` with nothing
    under it); a value that is not a mapping on the way raises a ConfigError starting with ``what``."""
    for part in keys:
        if data.get(part) is None:
            data[part] = {}
        if not isinstance(data[part], dict):
            raise ConfigError(f"{what}: {part} is not a section")
        data = data[part]
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> T:
    """Build a ``cls`` from a YAML file (optional) and ``key=value`` overrides, fully checked."""
    data = read_yaml(path) if path is not None else {}
    where = f"in {path}" if path is not None else "in the defaults"
    for text in overrides:
        keys, value = parse_override(text)
        node_at(data, keys[:-1], f"override {text!r}")[keys[-1]] = value
    if overrides:
        where += " or the command line"
    return from_dict(cls, data, where)


def field_default(cls: type, dotted: str) -> Any:
    """The default of a dotted key (``train.epochs``) of config dataclass ``cls``, read off its fields (a default
    config need not be valid: a key without a default may have to be set); a KeyError for a key that is not one."""
    head, _, rest = dotted.partition(".")
    if rest:
        return field_default(typing.get_type_hints(cls)[head], rest)
    fld = cls.__dataclass_fields__[head]
    return fld.default if fld.default is not dataclasses.MISSING else fld.default_factory()


def to_dict(config: Any) -> dict:
    """Plain nested dict of a config (YAML- and checkpoint-safe)."""
    return dataclasses.asdict(config)


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from procgen_common.checkpoint import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))


def describe(cls: type, prefix: str = "") -> list[str]:
    """One help line per key: ``key (type, default): docstring`` — used by ``--help``."""
    lines = []
    docs = field_docs(cls)
    for fld in dataclasses.fields(cls):
        tp = _hints(cls)[fld.name]
        key = prefix + fld.name
        if dataclasses.is_dataclass(tp):
            lines += ["", f"{key}: {docs.get(fld.name, '')}"]
            lines.extend(describe(tp, key + "."))
            continue
        default = fld.default if fld.default is not dataclasses.MISSING else fld.default_factory()
        lines.append(f"  {key} ({_type_name(tp)}, default {default!r}): {docs.get(fld.name, '')}")
    return lines
