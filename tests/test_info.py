"""crnn info: describes CRNN and baseline checkpoints and untrained architectures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import crnn
from crnn.models.baseline.model import BaselineConfig, SegCharModel
from crnn.charset import Charset
from crnn.kinds.loading import save_checkpoint
from crnn.cli import main as cli_main
from crnn.models.crnn import count_macs, count_parameters
from tests.tiny_models import BROKEN_ONNX, broken_onnx


def test_info_on_a_crnn_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = crnn.build_model("small", cell="gru", hidden_size=16, num_layers=1)
    crnn.save_checkpoint(tmp_path / "m.safetensors", model, Charset())
    assert cli_main(["info", "--weights", str(tmp_path / "m.safetensors"), "--json", "--width", "64"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["model_type"] == "crnn" and d["architecture"]["cell"] == "gru"
    assert d["parameters"] == count_parameters(model) and d["multiply_adds"] == count_macs(model, 64)
    assert d["frames"] == 16 and len(d["charset"]) == 95


def test_info_on_a_baseline_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    model = SegCharModel(BaselineConfig(num_classes=Charset().num_classes, channels=(8, 16, 16), embed_dim=16, hidden_size=16))
    save_checkpoint(tmp_path / "b.safetensors", model, Charset())
    assert cli_main(["info", "--weights", str(tmp_path / "b.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "model type:    baseline" in out and f"{count_parameters(model):,}" in out


@pytest.mark.parametrize("backbone", ["small", "full", "resnet", "resnet_dw"])
def test_info_on_an_untrained_architecture(backbone: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["info", "--backbone", backbone, "--cell", "none", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["architecture"]["backbone"] == backbone and d["multiply_adds"] > 0


def test_info_reports_mixing_blocks_and_height(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["info", "--backbone", "resnet", "--mixer-layers", "2", "--height", "48", "--hidden-size", "32"]) == 0
    out = capsys.readouterr().out
    model = crnn.build_model("resnet", mixer_layers=2, height=48, hidden_size=32)
    assert "resnet, 48 px input" in out and "2 self-attention blocks, 4 heads" in out
    assert f"{count_parameters(model):,}" in out and f"{count_macs(model):,}" in out and "1x48x128" in out
    assert cli_main(["info", "--backbone", "small", "--height", "48"]) == 2  # the plain stacks take 32 px only
    assert "needs 32-pixel-high input" in capsys.readouterr().err


def test_info_on_an_exported_onnx_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model = crnn.build_model("resnet", mixer_layers=1, hidden_size=16, num_layers=1)
    ckpt = crnn.save_checkpoint(tmp_path / "m.safetensors", model, Charset(), metadata={"name": "x"})
    assert cli_main(["export", "--weights", str(ckpt), "--format", "onnx", "--output", str(tmp_path / "m.onnx")]) == 0
    capsys.readouterr()
    assert cli_main(["info", "--weights", str(tmp_path / "m.onnx"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["model_type"] == "crnn" and d["architecture"]["mixer_layers"] == 1 and d["metadata"]["name"] == "x"
    assert d["parameters"] == count_parameters(model) and d["multiply_adds"] == count_macs(model)


def test_info_on_a_missing_file_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["info", "--weights", str(tmp_path / "nope.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("crnn info:") and err.count("\n") == 1


@pytest.mark.parametrize("damage", BROKEN_ONNX)
def test_info_refuses_an_onnx_model_that_cannot_run(damage: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Its header reads fine: info describes a model only once ONNX Runtime loads and runs it (as crnn ocr does)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    path = broken_onnx(tmp_path, damage)
    assert cli_main(["info", "--weights", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(f"crnn info: {path}: ") and captured.err.count("\n") == 1
