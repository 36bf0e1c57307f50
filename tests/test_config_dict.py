import json

import pytest

from crnn.baseline.model import BaselineConfig
from crnn.baseline.segment import SegmentConfig
from crnn.config_dict import DictConfig
from crnn.errors import ConfigError
from crnn.model import ModelConfig
from crnn.preprocess import PreprocessConfig

CONFIGS = [
    (PreprocessConfig(max_width=256), "preprocess"),
    (ModelConfig(hidden_size=64, cell="gru"), "model"),
    (BaselineConfig(channels=(8, 16), crop_size=32), "baseline"),
    (SegmentConfig(min_piece=0.4), "segmenter"),
]


@pytest.mark.parametrize(("config", "kind"), CONFIGS, ids=[k for _, k in CONFIGS])
def test_json_round_trip_gives_an_equal_config(config: DictConfig, kind: str) -> None:
    data = json.loads(json.dumps(config.to_dict()))
    assert type(config).from_dict(data) == config
    assert not any(isinstance(v, tuple) for v in config.to_dict().values())  # as JSON would give them back


@pytest.mark.parametrize(("config", "kind"), CONFIGS, ids=[k for _, k in CONFIGS])
def test_unknown_keys_are_refused_by_name(config: DictConfig, kind: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown {kind} config key\\(s\\): typo, zz"):
        type(config).from_dict({**config.to_dict(), "zz": 1, "typo": 2})
