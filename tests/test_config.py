"""crnn.config: the pydantic base of every config (unknown keys, wrong types, YAML, overrides)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from crnn.config import Config, apply_overrides, load_yaml, save_yaml
from crnn.errors import ConfigError


class Inner(Config):
    kind = "inner"
    weight: float = 1.0


class Outer(Config):
    kind = "demo"
    name: Literal["a", "b"] = "a"
    steps: int = 10
    sizes: tuple[int, ...] = (1, 2)
    inner: Inner = Inner()
    items: list[Inner] = []


def test_round_trip_through_a_json_dict_gives_an_equal_config() -> None:
    c = Outer(name="b", sizes=(3,), items=[Inner(weight=2)])
    d = c.to_dict()
    assert d == {"name": "b", "steps": 10, "sizes": [3], "inner": {"weight": 1.0}, "items": [{"weight": 2.0}]}
    assert Outer.from_dict(d) == c


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"typo": 1}, "unknown demo config key 'typo'"),
        ({"inner": {"wieght": 1}}, "unknown demo config key 'inner.wieght'"),
        ({"items": [{}, {"weight": "x"}]}, r"demo config key 'items\[1\].weight': .*got 'x'"),
        ({"steps": "many"}, "demo config key 'steps': .*integer"),
        ({"name": "c"}, "demo config key 'name': .*'a' or 'b'"),
        ({"steps": "x", "name": "c"}, "and 1 more problem"),
    ],
)
def test_bad_keys_and_values_raise_one_config_error_naming_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Outer.from_dict(data)


def test_constructor_and_assignment_are_validated_too() -> None:
    with pytest.raises(ConfigError, match="unknown demo config key 'zz'"):
        Outer(zz=1)
    c = Outer()
    with pytest.raises(ConfigError, match="'steps'"):
        c.steps = "x"  # type: ignore[assignment]


def test_yaml_file_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    save_yaml(Outer(steps=5), path)
    assert load_yaml(path)["steps"] == 5
    c = Outer.from_yaml(path, ["inner.weight=0.5", "sizes=[4, 5]"])
    assert c.steps == 5 and c.inner.weight == 0.5 and c.sizes == (4, 5)
    assert c.with_overrides(["name=b"]).name == "b"


@pytest.mark.parametrize(
    ("text", "message"),
    [("- a\n- b\n", "must be a mapping"), ("a: [1, \n", "not valid YAML")],
)
def test_bad_yaml_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_yaml(path)
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")


@pytest.mark.parametrize("item", ["novalue", "=3"])
def test_malformed_overrides(item: str) -> None:
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, [item])
    with pytest.raises(ConfigError, match="is not a section"):
        apply_overrides({"a": 1}, ["a.b=2"])
