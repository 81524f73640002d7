"""The typed config loader: YAML + overrides, key/type/range checks, one-line errors, help text."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import pytest

from procgen_common.config import (
    Checked,
    ConfigError,
    bounded,
    closest,
    describe,
    from_dict,
    load_config,
    parse_override,
    read_yaml,
    save_config,
)


@dataclass
class Inner:
    """An inner section."""

    rate: float = bounded(0.5, 0.0, 1.0)
    """A rate in [0, 1]."""
    size: int = bounded(4, 0, low_open=True)
    """A positive size."""
    mode: Literal["fast", "slow"] = "fast"
    """How to go."""
    limit: float | None = bounded(None, 0.0)
    """Optional limit."""
    names: list[str] = field(default_factory=lambda: ["a"])
    """Some names."""

    def validate(self) -> None:
        if self.size > 100 and self.mode == "fast":
            raise ValueError("size: must be <= 100 in fast mode")


@dataclass
class Outer:
    """The top level."""

    inner: Inner = field(default_factory=Inner)
    """The inner section."""
    flag: bool = False
    """A switch."""
    label: str = "x"
    """A label."""


def test_defaults_without_file_or_overrides():
    assert load_config(Outer) == Outer()


def test_yaml_then_overrides_with_yaml_typed_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  rate: 0.25\n  size: 8\nlabel: from-file\n")
    cfg = load_config(Outer, path, ["inner.size=16", "flag=true", "inner.names=[b, c]", "inner.limit=3"])
    assert cfg.inner.rate == 0.25  # from the file
    assert cfg.inner.size == 16  # the override wins over the file
    assert cfg.flag is True
    assert cfg.label == "from-file"
    assert cfg.inner.names == ["b", "c"]
    assert cfg.inner.limit == 3.0 and isinstance(cfg.inner.limit, float)  # ints are accepted for floats


def test_null_optional_and_empty_yaml(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(Outer, path, ["inner.limit=null"]).inner.limit is None


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("inner.rte=0.1", ["unknown key 'inner.rte'", "did you mean 'inner.rate'", "allowed under inner"]),
        ("flg=true", ["unknown key 'flg'", "did you mean 'flag'"]),
        ("inner.size=abc", ["inner.size", "expected int", "'abc'"]),
        ("inner.size=2.5", ["inner.size", "expected int"]),
        ("inner.size=true", ["inner.size", "expected int"]),  # bools are not ints
        ("flag=maybe", ["flag", "expected bool", "'maybe'"]),
        ("inner.rate=1.5", ["inner.rate", "out of range", "[0.0, 1.0]"]),
        ("inner.rate=-0.1", ["inner.rate", "out of range"]),
        ("inner.size=0", ["inner.size", "out of range", "> 0"]),
        ("inner.limit=-1", ["inner.limit", "out of range"]),
        ("inner.rate=.nan", ["inner.rate", "nan is not a finite number"]),  # NaN passes every < and > test
        ("inner.rate=-.inf", ["inner.rate", "-inf is not a finite number"]),
        ("inner.limit=.inf", ["inner.limit", "expected float | null", "inf"]),
        ("inner.mode=slwo", ["inner.mode", "'slwo' is not allowed", "fast, slow", "did you mean 'slow'"]),
        ("inner.names=abc", ["inner.names", "expected list of str"]),
        ("inner.names=[1]", ["inner.names[0]", "expected str"]),
        ("inner=3", ["inner", "expected a mapping"]),
        ("inner.size=200", ["inner.size", "must be <= 100 in fast mode"]),  # a validate() check, prefixed
        ("noequals", ["key=value"]),
        ("=3", ["empty key"]),
        ("inner..rate=3", ["empty key"]),
    ],
)
def test_bad_values_raise_config_error_naming_the_key(override, needles):
    with pytest.raises(ConfigError) as info:
        load_config(Outer, None, [override])
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_error_names_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  size: -3\n")
    with pytest.raises(ConfigError, match=r"inner\.size.*" + str(path).replace(".", r"\.")):
        load_config(Outer, path)


def test_missing_file_invalid_yaml_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        read_yaml(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping of keys, got list"):
        load_config(Outer, listed)


def test_duplicate_keys_wrong_encoding_and_folders_are_refused_naming_the_file(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("env:\n  game: starpilot\n  num_envs: 4\n  game: coinrun\n")
    with pytest.raises(ConfigError, match=r"dup.yaml gives key 'game' twice \(line 4\)"):
        read_yaml(dup)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00 garbage")
    with pytest.raises(ConfigError, match="binary.yaml is not UTF-8 text"):
        read_yaml(binary)
    with pytest.raises(ConfigError, match="is a folder, not a YAML file"):
        read_yaml(tmp_path)
    assert read_yaml(_write(tmp_path / "ok.yaml", "a: {x: 1}\nb: {x: 2}\n")) == {"a": {"x": 1}, "b": {"x": 2}}


def _write(path, text):
    path.write_text(text)
    return path


def test_parse_override_parses_values_as_yaml():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=0.5") == (["a"], 0.5)
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=null") == (["a"], None)
    assert parse_override("a=x=y") == (["a"], "x=y")  # split on the first '=' only
    assert parse_override("a=") == (["a"], "")
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])


def test_closest_suggests_only_near_names():
    assert closest("starpilt", ["starpilot", "coinrun"]) == " (did you mean 'starpilot'?)"
    assert closest("zzzz", ["starpilot", "coinrun"]) == ""


def test_save_config_round_trips(tmp_path):
    cfg = load_config(Outer, None, ["inner.size=9", "inner.mode=slow", "inner.limit=2.5", "label=y"])
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(Outer, tmp_path / "saved.yaml") == cfg


def test_describe_lists_every_key_with_type_default_and_docstring():
    text = "\n".join(describe(Outer))
    for line in [
        "inner: The inner section.",
        "  inner.rate (float, default 0.5): A rate in [0, 1].",
        "  inner.mode ('fast' | 'slow', default 'fast'): How to go.",
        "  inner.limit (float | null, default None): Optional limit.",
        "  inner.names (list of str, default ['a']): Some names.",
        "  flag (bool, default False): A switch.",
    ]:
        assert line in text.splitlines(), line


def test_override_into_empty_yaml_section_is_accepted(tmp_path):
    # A preset with an empty section (`env:` with nothing under it) loads fine by itself ...
    path = tmp_path / "c.yaml"
    path.write_text("inner:\nlabel: y\n")
    assert load_config(Outer, path).inner == Inner()


def test_override_into_empty_yaml_section_is_applied(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\nlabel: y\n")
    assert load_config(Outer, path, ["inner.size=7"]).inner.size == 7


@dataclass(frozen=True)
class Section(Checked):
    """A frozen section that checks itself."""

    rate: float = bounded(0.5, 0.0, 1.0)
    """A rate in [0, 1]."""
    low: int = 0
    """At most high."""
    high: int = 1
    """At least low."""

    def validate(self) -> None:
        if self.low > self.high:
            raise ValueError(f"low: {self.low} is above high {self.high}")


@dataclass(frozen=True)
class Top(Checked):
    """A frozen config holding a checked section and a plain one."""

    section: Section = field(default_factory=Section)
    """Checks itself."""
    inner: Inner = field(default_factory=Inner)
    """A plain dataclass: checked by the config that holds it."""


def test_a_checked_config_is_frozen():
    config = load_config(Top, None, ["section.rate=0.25"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.section.rate = 2.0  # a change must go through dataclasses.replace, which checks it
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.section = Section()


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        (lambda c: dataclasses.replace(c.section, rate=1.5), ["rate: 1.5 is out of range", "[0.0, 1.0]"]),
        (lambda c: dataclasses.replace(c.section, low=3, high=2), ["low: 3 is above high 2"]),  # validate()
        (lambda c: dataclasses.replace(c.section, rate="fast"), ["rate: expected float, got 'fast'"]),
        (lambda c: Section(rate=float("nan")), ["rate: nan is not a finite number"]),  # a direct call too
        # A plain section held by a checked config is checked, with its key, when the config is rebuilt.
        (lambda c: dataclasses.replace(c, inner=Inner(size=0)), ["inner.size: 0 is out of range"]),
        (lambda c: dataclasses.replace(c, inner=Inner(size=200)), ["inner.size: must be <= 100 in fast mode"]),
        (lambda c: dataclasses.replace(c, section=3), ["section: expected Section, got 3"]),
    ],
)
def test_replace_and_direct_construction_check_like_the_loader(change, needles):
    config = load_config(Top)
    with pytest.raises(ConfigError) as info:
        change(config)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_a_checked_config_converts_on_construction():
    section = dataclasses.replace(Section(), rate=1)
    assert section.rate == 1.0 and isinstance(section.rate, float)  # an int given for a float, as the loader does
    assert dataclasses.replace(load_config(Top), section=section).section is section


@pytest.mark.parametrize("cls", [Outer, Top])
def test_from_dict_checks_validate_and_ranges_with_the_key_and_where(cls):
    with pytest.raises(ConfigError, match=r"^inner\.size: must be <= 100 in fast mode \(in a checkpoint\)$"):
        from_dict(cls, {"inner": {"size": 200}}, "in a checkpoint")
    with pytest.raises(ConfigError, match=r"^inner\.rate: 2\.0 is out of range; allowed in \[0.0, 1.0\] \(here\)$"):
        from_dict(cls, {"inner": {"rate": 2}}, "here")
    with pytest.raises(ConfigError, match=r"^section\.low: 5 is above high 1 \(here\)$"):
        from_dict(Top, {"section": {"low": 5}}, "here")
