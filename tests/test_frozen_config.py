"""crnn.frozen_config: a config with Config's interface and pydantic's values and messages, without pydantic's
import for plainly valid values (PreprocessConfig, read by `crnn ocr` at every start)."""

from __future__ import annotations

import copy
import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from crnn.config import Config
from crnn.errors import ConfigError
from crnn.frozen_config import FrozenConfig, Setting
from crnn.io.preprocess import PreprocessConfig

REPO = Path(__file__).resolve().parent.parent


class Demo(FrozenConfig):
    """Every field type and bound a FrozenConfig takes."""

    kind = "demo"
    count: int = Setting(3, ge=1, le=10)
    ratio: float = Setting(0.5, gt=0.0, lt=1.0)
    flag: bool = Setting(False)
    name: str = Setting("x")
    hidden: bool = Setting(False, exclude=True)


# Inputs plainly valid (taken as they are) and not (pydantic decides: coerces or refuses), for each class.
CASES: list[dict[Any, Any]] = [
    {}, {"count": 10}, {"count": 0}, {"count": 11}, {"count": 3.0}, {"count": 3.5}, {"count": "4"}, {"count": True},
    {"count": None}, {"count": 10**30}, {"ratio": 1}, {"ratio": 0}, {"ratio": "0.25"}, {"ratio": float("nan")},
    {"ratio": float("inf")}, {"flag": 1}, {"flag": "yes"}, {"flag": "maybe"}, {"flag": True}, {"name": 5},
    {"name": "y"}, {"hidden": True}, {"zz": 1}, {1: 2}, {"count": 0, "zz": 1, "ratio": 2.0},
]
PREPROCESS_CASES: list[dict[Any, Any]] = [
    {}, {"height": 48}, {"height": 0}, {"height": 32.0}, {"height": "32"}, {"height": True}, {"max_aspect": 1},
    {"max_aspect": -1.0}, {"max_aspect": "inf"}, {"width_bucket": 0}, {"jpeg_draft": 1}, {"min_side": None},
    {"max_pixels": 2**40}, {"zz": 1},
]


def _outcome(make: Any, data: dict[Any, Any]) -> tuple[str, Any]:
    try:
        made = make(data)
    except ConfigError as e:
        return "error", str(e)
    return "ok", [(k, type(v), v) for k, v in made] if not isinstance(made, dict) else made


@pytest.mark.parametrize(("cls", "data"), [(Demo, d) for d in CASES] + [(PreprocessConfig, d) for d in PREPROCESS_CASES])
def test_values_and_errors_are_the_pydantic_models(cls: type[FrozenConfig], data: dict[Any, Any]) -> None:
    model = cls.pydantic_model()
    assert issubclass(model, Config) and model.kind == cls.kind
    assert _outcome(cls.from_dict, data) == _outcome(model.from_dict, data)
    if all(isinstance(k, str) for k in data):
        assert _outcome(lambda d: cls(**d), data) == _outcome(lambda d: model(**d), data)


def test_a_frozen_config_is_frozen_hashable_comparable_and_picklable() -> None:
    c = Demo(count=4, hidden=True)
    assert c == Demo.from_dict({"count": 4, "hidden": True}) and c != Demo() and hash(c) == hash(Demo(count=4, hidden=True))
    assert len({c, Demo(count=4, hidden=True), Demo()}) == 2
    assert pickle.loads(pickle.dumps(c)) == c and copy.deepcopy(c) == c and copy.copy(c) == c
    assert repr(c) == "Demo(count=4, ratio=0.5, flag=False, name='x', hidden=True)"
    assert dict(c) == {"count": 4, "ratio": 0.5, "flag": False, "name": "x", "hidden": True}
    with pytest.raises(ConfigError, match="demo config key 'count': Instance is frozen"):
        c.count = 5  # type: ignore[misc]
    with pytest.raises(ConfigError, match="frozen"):
        del c.count
    with pytest.raises(AttributeError):
        Demo.count  # noqa: B018 - the class holds no values, as a pydantic model's class holds none


def test_to_dict_replace_and_overrides_behave_as_configs() -> None:
    c = Demo(hidden=True)
    assert c.to_dict() == {"count": 3, "ratio": 0.5, "flag": False, "name": "x"}  # excluded fields are not stored
    assert Demo.from_dict(json.loads(json.dumps(c.to_dict()))) == Demo()
    assert c.replace(count=5) == Demo(count=5, hidden=True)
    with pytest.raises(ConfigError, match="demo config key 'count'"):
        c.replace(count=0)
    assert c.with_overrides(["count=7", "flag=true"]) == Demo(count=7, flag=True)
    with pytest.raises(ConfigError, match="unknown demo config key 'zz'"):
        c.with_overrides(["zz=1"])
    with pytest.raises(ConfigError, match="must be a mapping"):
        Demo.from_dict([1, 2])  # type: ignore[arg-type]
    assert Demo.from_dict(None) == Demo()


def test_from_yaml_reads_a_file_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text("count: 2\nname: y\n", encoding="utf-8")
    assert Demo.from_yaml(path, ["ratio=0.25"]) == Demo(count=2, name="y", ratio=0.25)
    assert Demo.from_yaml(None) == Demo()


@pytest.mark.parametrize("annotation", ["list", "dict[str, int]", "int | None"])
def test_a_field_type_outside_int_float_bool_str_is_refused_at_class_definition(annotation: str) -> None:
    with pytest.raises(TypeError, match="int, float, bool or str"):
        type("Bad", (FrozenConfig,), {"__annotations__": {"x": annotation}, "x": Setting(None)})


def test_plain_values_import_no_pydantic() -> None:
    code = ("import sys; from crnn.io.preprocess import PreprocessConfig as P; "
            "c = P.from_dict({'height': 32, 'max_aspect': 64.0}).replace(max_pixels=10); hash(c); c.to_dict(); "
            "print('pydantic' in sys.modules, end=' '); P.from_dict({'height': '32'}); print('pydantic' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert res.stdout.strip() == "False True", res.stderr
