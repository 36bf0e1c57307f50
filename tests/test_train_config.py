"""Training config validation: unknown keys and wrong types are refused, naming the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from crnn.errors import ConfigError
from crnn_training.config import load_config

REPO = Path(__file__).resolve().parent.parent
PRESETS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_presets_load(preset: Path) -> None:
    config = load_config(preset)
    assert config.data.sources and config.train.max_steps >= 1


def test_overrides_reach_nested_sections() -> None:
    c = load_config(REPO / "configs/tiny.yaml", ["model.backbone=full", "optim.lr=0.5", "val.folders=[a, b]",
                                                   "synth.max_length=9", "data.sources=[{type: folder, path: x}]"])
    assert c.model.backbone == "full" and c.optim.lr == 0.5 and c.val.folders == ["a", "b"]
    assert c.synth["max_length"] == 9 and c.data.sources[0].type == "folder"


@pytest.mark.parametrize(
    "override, key",
    [
        ("bogus=1", "bogus"),
        ("model.depth=3", "model.depth"),
        ("train.max_steps=abc", "train.max_steps"),
        ("train.max_steps=1.5", "train.max_steps"),
        ("model.bidirectional=1", "model.bidirectional"),
        ("optim.lr=fast", "optim.lr"),
        ("val.folders=abc", "val.folders"),
        ("model.backbone=huge", "model.backbone"),
        ("data.sources=[{type: web}]", "data.sources[0].type"),
        ("data.sources=[{type: synth, wieght: 2}]", "data.sources[0].wieght"),
        ("model=3", "model"),
    ],
)
def test_bad_values_are_refused_naming_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match="'" + re.escape(key)):
        load_config(REPO / "configs/tiny.yaml", [override])


def test_unknown_key_in_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  max_step: 10\n")
    with pytest.raises(ConfigError, match="train.max_step"):
        load_config(bad)


def test_cli_reports_config_errors_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from crnn_training.train import main

    assert main(["--config", str(REPO / "configs/tiny.yaml"), "train.log_every=often"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.log_every" in err[0]


def test_bad_synth_key_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crnn_training.train import main

    assert main(["--config", str(REPO / "configs/tiny.yaml"), f"out_dir={tmp_path}", "synth.bogus_knob=1"]) == 2
    assert "bogus_knob" in capsys.readouterr().err


def test_schedules_and_optimizers() -> None:
    from crnn.model import CRNN, ModelConfig
    from crnn_training.train import lr_factor, make_optimizer

    c = load_config(REPO / "configs/tiny.yaml", ["optim.warmup_steps=10", "optim.min_lr_ratio=0.1"])
    f = [lr_factor(s, 100, c)[0] for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in zip(f[9:], f[10:]))  # cosine decay after the warm-up
    c1 = load_config(REPO / "configs/tiny.yaml", ["optim.schedule=onecycle", "optim.warmup_steps=10"])
    (lo, b_lo), (hi, b_hi) = lr_factor(0, 100, c1), lr_factor(9, 100, c1)
    assert lo < 0.1 < hi == pytest.approx(1.0) and b_lo > b_hi  # momentum falls as the lr rises
    model = CRNN(ModelConfig(num_classes=5, hidden_size=8, num_layers=1))
    assert type(make_optimizer(model, c)).__name__ == "AdamW"
    ada = make_optimizer(model, load_config(REPO / "configs/tiny.yaml", ["optim.name=adadelta", "optim.lr=1.0"]))
    assert type(ada).__name__ == "Adadelta"
