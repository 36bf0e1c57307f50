"""crnn.config: the pydantic base of every config (unknown keys, wrong types, YAML, overrides), and the library's configs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest
from pydantic import field_validator, model_validator

from crnn.models.baseline.model import BaselineConfig
from crnn.models.baseline.segment import SegmentConfig
from crnn.checkpoints.header import read_header
from crnn.config import MAX_CONFIG_BYTES, Config, FieldProblem, apply_overrides, load_yaml, save_yaml
from crnn.errors import ConfigError
from crnn.models.crnn import ModelConfig
from crnn.io.preprocess import PreprocessConfig


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


def test_a_validator_message_reads_without_pydantic_prefix_and_a_joint_check_names_no_key() -> None:
    class Checked(Config):
        kind = "demo"
        low: int = 0
        high: int = 1

        @field_validator("low")
        @classmethod
        def _small(cls, v: int) -> int:
            if v > 5:
                raise ValueError("low must be small")
            return v

        @model_validator(mode="after")
        def _ordered(self) -> Checked:
            if self.low > self.high:
                raise ValueError("low must not exceed high")
            return self

    with pytest.raises(ConfigError, match=r"^demo config key 'low': low must be small \(got 9\)$"):
        Checked(low=9)
    with pytest.raises(ConfigError, match="^demo config: low must not exceed high$"):
        Checked(low=3, high=2)


def test_a_joint_check_can_name_the_key_at_fault_even_in_a_section() -> None:
    class Range(Config):
        low: int = 0
        high: int = 1

        @model_validator(mode="after")
        def _ordered(self) -> Range:
            if self.low > self.high:
                raise FieldProblem("low", f"must not exceed high ({self.high})", self.low)
            return self

    class Holder(Config):
        kind = "demo"
        span: Range = Range()

    with pytest.raises(ConfigError, match=r"^demo config key 'span.low': must not exceed high \(2\) \(got 3\)$"):
        Holder.from_dict({"span": {"low": 3, "high": 2}})


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"\xff\xfe\x00\x01", r"not a UTF-8 text file \(byte 0xff at offset 0\)"),
     (b"ok: 1\nbad: \x07\n", "control character U\\+0007"),
     (b"a:\n  b: 1\n c: 2\n", "not valid YAML at line 3, column 2: expected <block end>"),
     (b"x" * (MAX_CONFIG_BYTES + 1), "over 16 MiB")],
)
def test_a_file_that_is_not_yaml_text_is_one_line_naming_it(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as e:
        load_yaml(path)
    assert "\n" not in str(e.value) and str(e.value).startswith(str(path))
    with pytest.raises(ConfigError, match="is a folder"):
        load_yaml(tmp_path)


def test_replace_validates_the_changes() -> None:
    c = Outer()
    assert c.replace(steps=3) == Outer(steps=3) and c.steps == 10
    with pytest.raises(ConfigError, match="'name'"):
        c.replace(name="zz")


# --- the library's configs stored in checkpoints ---------------------------------------------------------

LIBRARY_CONFIGS = [
    (PreprocessConfig(max_width=256), "preprocess"),
    (ModelConfig(hidden_size=64, cell="gru"), "model"),
    (BaselineConfig(channels=(8, 16), crop_size=32), "baseline"),
    (SegmentConfig(min_piece=0.4), "segmenter"),
]
IDS = [k for _, k in LIBRARY_CONFIGS]


@pytest.mark.parametrize(("config", "kind"), LIBRARY_CONFIGS, ids=IDS)
def test_library_config_json_round_trip_gives_an_equal_config(config: Config, kind: str) -> None:
    data = json.loads(json.dumps(config.to_dict()))
    assert type(config).from_dict(data) == config
    assert not any(isinstance(v, tuple) for v in config.to_dict().values())  # as JSON would give them back
    assert type(config).kind == kind


@pytest.mark.parametrize(("config", "kind"), LIBRARY_CONFIGS, ids=IDS)
def test_library_config_refuses_unknown_keys_by_name(config: Config, kind: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown {kind} config key 'zz'"):
        type(config).from_dict({**config.to_dict(), "zz": 1})


@pytest.mark.parametrize(("config", "kind"), LIBRARY_CONFIGS, ids=IDS)
def test_library_configs_are_frozen_and_hashable(config: Config, kind: str) -> None:
    assert hash(config) == hash(type(config).from_dict(config.to_dict()))
    first = next(iter(config.to_dict()))
    with pytest.raises(ConfigError, match="frozen"):
        setattr(config, first, getattr(config, first))


@pytest.mark.parametrize(
    ("cls", "data", "message"),
    [
        (ModelConfig, {"backbone": "huge"}, "model config key 'backbone': .*'full', 'small', 'resnet' or 'resnet_dw'"),
        (ModelConfig, {"cell": "transformer"}, "model config key 'cell': .*'lstm', 'gru', 'rnn' or 'none'"),
        (ModelConfig, {"height": 48}, "model config key 'height': the small backbone needs 32-pixel-high input"),
        (ModelConfig, {"height": 40}, "model config key 'height': .*32 or 48"),
        (ModelConfig, {"mixer_layers": 1, "mixer_heads": 3}, "mixer_heads must divide the 256 features"),
        (ModelConfig, {"num_classes": 1}, "model config key 'num_classes': .*greater than or equal to 2"),
        (ModelConfig, {"num_layers": 0}, "model config key 'num_layers'"),
        (BaselineConfig, {"cell": "rnn"}, "baseline config key 'cell': .*'lstm' or 'gru'"),
        (BaselineConfig, {"crop_size": 30}, "crop_size 30 must be divisible by 2\\*\\*3"),
        (BaselineConfig, {"channels": []}, "baseline config key 'channels': .*at least 1 item"),
        (BaselineConfig, {"channels": [8, 0]}, r"baseline config key 'channels\[1\]'"),
        (SegmentConfig, {"binarize": "magic"}, "segmenter config key 'binarize': .*'otsu', 'sauvola' or 'both'"),
        (PreprocessConfig, {"width_bucket": 0}, "preprocess config key 'width_bucket'"),
    ],
)
def test_library_config_bad_values_raise_one_config_error(cls: type[Config], data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cls.from_dict(data)
    with pytest.raises(ConfigError, match=message):
        cls(**data)


@pytest.mark.parametrize("name", ["crnn", "baseline"])
def test_shipped_checkpoint_headers_load_and_dump_byte_identical(name: str) -> None:
    # Checkpoint headers and the API's /v1/model response are these dicts: not a byte may change.
    header = read_header(Path(__file__).parent.parent / "weights" / f"{name}.safetensors")
    pairs = [(ModelConfig if name == "crnn" else BaselineConfig, header["model_config"]),
             (PreprocessConfig, header["preprocess"])]
    if name == "baseline":
        pairs.append((SegmentConfig, header["metadata"]["segmenter"]))
    for cls, data in pairs:
        assert json.dumps(cls.from_dict(data).to_dict()) == json.dumps(data)
