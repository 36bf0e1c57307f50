"""Training configs (pydantic): unknown keys and wrong types are refused naming the key; presets and run folders load."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest

from crnn.errors import ConfigError
from crnn_training.config import BaselineTrainConfig, ModelSection, TrainConfig

REPO = Path(__file__).resolve().parent.parent
PRESETS = sorted(p for p in (REPO / "configs").glob("*.yaml") if not p.stem.startswith("baseline"))


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_presets_load_and_round_trip(preset: Path) -> None:
    config = TrainConfig.from_yaml(preset)
    assert config.data.sources and config.train.max_steps >= 1
    assert TrainConfig.from_dict(config.to_dict()) == config  # what config.yaml and checkpoints store loads back


def test_baseline_preset_holds_the_defaults() -> None:
    assert BaselineTrainConfig.from_yaml(REPO / "configs/baseline.yaml") == BaselineTrainConfig()


def _fields(cls: type) -> dict[str, object]:
    # Field defaults of a dataclass or a pydantic model (crnn.models.crnn.ModelConfig may be either).
    if hasattr(cls, "model_fields"):
        return {k: f.default for k, f in cls.model_fields.items()}
    return {f.name: f.default for f in dataclasses.fields(cls)}


def test_model_section_mirrors_model_config() -> None:
    from crnn.models.crnn import BACKBONES, CELLS, ModelConfig

    mine, theirs = _fields(ModelSection), _fields(ModelConfig)
    assert mine == {k: v for k, v in theirs.items() if k != "num_classes"}
    assert set(typing.get_args(ModelSection.model_fields["backbone"].annotation)) == set(BACKBONES)
    assert set(typing.get_args(ModelSection.model_fields["cell"].annotation)) == set(CELLS)


@pytest.mark.parametrize("text, expected", [("off", "off"), ("on", "on"), ('"off"', "off"), ("auto", "auto")])
def test_yaml_off_and_on_read_as_words(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"train:\n  progress: {text}\n  amp: {text if expected != 'on' else 'off'}\n")
    c = TrainConfig.from_yaml(path)
    assert c.train.progress == expected and c.train.amp == (expected if expected != "on" else "off")


def test_config_yaml_of_an_older_run_still_loads() -> None:
    # A run folder written before the pydantic configs: synth as a partial mapping, no val.precision.
    old = {"out_dir": "runs/x", "seed": 0, "charset": "abc", "model": {"backbone": "small", "hidden_size": 32},
           "train": {"amp": "auto", "progress": False}, "val": {"synth_size": 10}, "synth": {"lexicon_size": 50}}
    c = TrainConfig.from_dict(old)
    assert c.train.progress == "off" and c.synth.lexicon_size == 50 and c.val.precision == "auto"


def test_overrides_reach_nested_sections() -> None:
    c = TrainConfig.from_yaml(REPO / "configs/tiny.yaml", ["model.backbone=full", "optim.lr=0.5", "val.folders=[a, b]",
                                                   "synth.max_length=9", "data.sources=[{type: folder, path: x}]"])
    assert c.model.backbone == "full" and c.optim.lr == 0.5 and c.val.folders == ["a", "b"]
    assert c.synth.max_length == 9 and c.data.sources[0].type == "folder"


@pytest.mark.parametrize(
    "override, key",
    [
        ("bogus=1", "bogus"),
        ("model.depth=3", "model.depth"),
        ("train.max_steps=abc", "train.max_steps"),
        ("train.max_steps=1.5", "train.max_steps"),
        ("model.bidirectional=1", "model.bidirectional"),
        ("data.equal_widths=2", "data.equal_widths"),
        ("optim.lr=fast", "optim.lr"),
        ("val.folders=abc", "val.folders"),
        ("model.backbone=huge", "model.backbone"),
        ("data.sources=[{type: web}]", "data.sources[0].type"),
        ("data.sources=[{type: synth, wieght: 2}]", "data.sources[0].wieght"),
        ("model=3", "model"),
        ("synth.bogus_knob=1", "synth.bogus_knob"),
        ("synth.max_length=many", "synth.max_length"),
        ("train.progress=maybe", "train.progress"),
        ("data.sources=[{type: folder}]", "data.sources[0]"),
        ("data.batch_size=0", "data.batch_size"),
        ("val.best_metric=accuracy", "val.best_metric"),
        ("charset=", "charset"),
        # Ranges and joint checks, refused when the config loads (issue 36), not at the first evaluation.
        ("data.min_width=200", "data.min_width"),  # tiny.yaml's max_width is 160
        ("data.min_width=0", "data.min_width"),
        ("data.max_width=0", "data.max_width"),
        ("data.max_width=4", "data.max_width"),  # under one 8-px width bucket
        ("data.num_workers=-2", "data.num_workers"),
        ("optim.warmup_steps=-10", "optim.warmup_steps"),
        ("optim.beta1=1", "optim.beta1"),
        ("optim.eps=0", "optim.eps"),
        ("optim.min_lr_ratio=2", "optim.min_lr_ratio"),
        ("optim.grad_clip=-1", "optim.grad_clip"),
        ("optim.weight_decay=-0.1", "optim.weight_decay"),
        ("train.max_minutes=-5", "train.max_minutes"),
        ("train.threads=-1", "train.threads"),
        ("train.device=gpu", "train.device"),
        ("train.early_stop=-1", "train.early_stop"),
        ("model.dropout=2", "model.dropout"),
        ("model.height=48", "model.height"),  # the small backbone reads 32 px only
        ("val.synth_size=-1", "val.synth_size"),
        ("val.synth_size=0", "val.synth_size"),  # and no val.folders: no validation set at all
        ("val.max_per_folder=-1", "val.max_per_folder"),
        ("val.best_metric=bogus/acc", "val.best_metric"),
        ("val.best_metric=synth/acc", "val.best_metric"),
        ("val.best_metric=synth/count", "val.best_metric"),
        ("val.folders=[a/x, b/x]", "val.folders"),  # two sets named x
        ("val.folders=[d/synth]", "val.folders"),  # beside the synthetic set
        # Held-out parts and augmentation of real folders (issue 32).
        ("data.sources=[{type: synth, holdout: 0.1}]", "data.sources[0].holdout"),  # only a folder has one
        ("data.sources=[{type: lmdb, path: x, holdout: 0.1}]", "data.sources[0].holdout"),
        ("data.sources=[{type: folder, path: x, holdout: 1}]", "data.sources[0].holdout"),
        ("data.sources=[{type: folder, path: x, holdout: -0.1}]", "data.sources[0].holdout"),
        ("data.sources=[{type: folder, path: x, holdot: 0.1}]", "data.sources[0].holdot"),
        ("data.sources=[{type: synth, augment: real}]", "data.sources[0].augment"),  # renders degrade themselves
        ("data.sources=[{type: folder, path: x, augment: heavy}]", "data.sources[0].augment"),
        ("val.holdout=1.5", "val.holdout"),
        ("val.best_metric=mean/word_accuracy_protocol", "val.best_metric"),  # a mean needs two folders
    ],
)
def test_bad_values_are_refused_naming_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match="'" + re.escape(key)):
        TrainConfig.from_yaml(REPO / "configs/tiny.yaml", [override])


def test_unknown_key_in_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  max_step: 10\n")
    with pytest.raises(ConfigError, match="train.max_step"):
        TrainConfig.from_yaml(bad)


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
    from crnn.models.crnn import CRNN, ModelConfig
    from crnn_training.train import lr_factor, make_optimizer

    c = TrainConfig.from_yaml(REPO / "configs/tiny.yaml", ["optim.warmup_steps=10", "optim.min_lr_ratio=0.1"])
    f = [lr_factor(s, 100, c)[0] for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in zip(f[9:], f[10:]))  # cosine decay after the warm-up
    c1 = TrainConfig.from_yaml(REPO / "configs/tiny.yaml", ["optim.schedule=onecycle", "optim.warmup_steps=10"])
    (lo, b_lo), (hi, b_hi) = lr_factor(0, 100, c1), lr_factor(9, 100, c1)
    assert lo < 0.1 < hi == pytest.approx(1.0) and b_lo > b_hi  # momentum falls as the lr rises
    model = CRNN(ModelConfig(num_classes=5, hidden_size=8, num_layers=1))
    assert type(make_optimizer(model, c)).__name__ == "AdamW"
    ada = make_optimizer(model, TrainConfig.from_yaml(REPO / "configs/tiny.yaml", ["optim.name=adadelta", "optim.lr=1.0"]))
    assert type(ada).__name__ == "Adadelta"


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["data.min_width=200", "data.max_width=100"], "data.min_width"),
        (["model.mixer_layers=1", "model.mixer_heads=3"], "model.mixer_heads"),
        (["decoder.type=attention", "decoder.aux_attention_weight=1"], "decoder.aux_attention_weight"),
        (["val.synth_size=0", "val.folders=[d/IIIT5K]"], "val.best_metric"),  # synth/... names no set now
        (["val.folders=[d/IIIT5K]", "val.best_metric=SVT/cer"], "val.best_metric"),
        # A validation folder that is also a training source must be split the same way on both sides.
        (["data.sources=[{type: folder, path: d/IIIT5K}]", "val.folders=[d/IIIT5K]", "val.holdout=0.15"],
         "data.sources[0].holdout"),
        (["data.sources=[{type: folder, path: d/IIIT5K, holdout: 0.15}]", "val.folders=[d/IIIT5K/]"],
         "data.sources[0].holdout"),
        (["data.sources=[{type: synth}, {type: folder, path: d/IIIT5K, holdout: 0.15}]", "val.folders=[./d/IIIT5K]",
          "val.holdout=0.2"], "data.sources[1].holdout"),
    ],
)
def test_keys_that_contradict_each_other_are_refused_naming_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError, match=f"^train config key '{re.escape(key)}': .*got"):
        TrainConfig.from_yaml(REPO / "configs/tiny.yaml", overrides)


@pytest.mark.parametrize("augment", ["real", "off", False])
def test_a_folder_split_between_training_and_validation_loads(augment: object) -> None:
    c = TrainConfig.from_yaml(REPO / "configs/tiny.yaml", [
        f"data.sources=[{{type: synth}}, {{type: folder, path: d/IIIT5K, holdout: 0.15, augment: {augment}}}]",
        "val.folders=[d/IIIT5K, d/SVT]", "val.holdout=0.15", "val.best_metric=mean/word_accuracy_protocol"])
    assert c.val.set_names() == ["synth", "IIIT5K", "SVT", "mean"]
    assert c.data.sources[1].augment == ("real" if augment == "real" else "off")  # YAML's bare off is False


def test_a_folder_trained_and_validated_on_whole_is_named() -> None:
    c = TrainConfig.from_yaml(REPO / "configs/tiny.yaml", ["data.sources=[{type: folder, path: d/IIIT5K}]",
                                                           "val.folders=[d/IIIT5K/]"])
    assert c.sources_validated_on() == ["d/IIIT5K"]  # crnn train warns: it validates on what it trains on
    split = TrainConfig.from_yaml(REPO / "configs/tiny.yaml", ["data.sources=[{type: folder, path: d/IIIT5K, holdout: 0.2}]",
                                                               "val.folders=[d/IIIT5K/]", "val.holdout=0.2"])
    assert split.sources_validated_on() == []


def test_best_metric_of_a_folder_set_loads() -> None:
    c = TrainConfig.from_yaml(REPO / "configs/tiny.yaml", ["val.synth_size=0", "val.folders=[bench/IIIT5K/]",
                                                           "val.best_metric=IIIT5K/cer"])
    assert c.val.set_names() == ["IIIT5K"]


@pytest.mark.parametrize(
    "override, key",
    [("data.max_width=0", "data.max_width"), ("data.min_width=200", "data.min_width"),
     ("optim.warmup_steps=-10", "optim.warmup_steps"), ("val.best_metric=bogus/acc", "val.best_metric"),
     ("val.synth_size=-1", "val.synth_size"), ("train.device=gpu", "train.device"),
     ("val.folders=[/no/such/folder]", "val.folders[0]"),
     ("data.sources=[{type: lmdb, path: /no/such.lmdb}]", "data.sources[0].path")],
)
def test_config_is_validated_before_any_work(override: str, key: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import crnn_training.train as train_module

    monkeypatch.setattr(train_module, "pick_device", lambda *a, **k: pytest.fail("the run started"))
    out = tmp_path / "run"
    assert train_module.main(["--config", str(REPO / "configs/tiny.yaml"), f"out_dir={out}", override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0], err  # the user's own dotted key, not e.g. 'preprocess config key'
    assert "preprocess config" not in err[0] and not out.exists()


@pytest.mark.parametrize(
    "content, expected",
    [(b"\x00\xff\xfe\x00binary", "not a UTF-8 text file"), (b"\x89PNG\r\n\x1a\n\x00\x00", "not a UTF-8 text file"),
     (b"model: {a: 1\n", "not valid YAML at line 2"), (b"a: b\x00c", "control character U+0000"),
     (b"- a\n- b\n", "must be a mapping"), (None, "is a folder")],
)
def test_a_config_file_that_is_not_yaml_is_one_line_naming_it(content: bytes | None, expected: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from crnn_training.train import main

    path = tmp_path / "config.yaml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    assert main(["--config", str(path), f"out_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and expected in err[0], err
