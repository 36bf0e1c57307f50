"""`crnn export --format onnx` (crnn/kinds/export.py, crnn/checkpoints/onnx_export.py): every exportable kind round-trips; the others are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import torch  # noqa: E402

from crnn import Charset, save_checkpoint  # noqa: E402
from crnn.models.baseline.model import BaselineConfig, SegCharModel  # noqa: E402
from crnn.kinds.loading import load_checkpoint  # noqa: E402
from crnn.checkpoints.header import read_header  # noqa: E402
from crnn.checkpoints.shipped import shipped_model  # noqa: E402
from crnn.cli import main as cli_main  # noqa: E402
from crnn.errors import CheckpointError, ExportError  # noqa: E402
from crnn.models.crnn import CRNN  # noqa: E402
from crnn.kinds.export import export_onnx  # noqa: E402
from crnn.checkpoints.onnx_header import read_onnx_metadata  # noqa: E402
from crnn.kinds.registry import kinds  # noqa: E402
from tests.tiny_models import _tiny_model, tiny_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
CHARSET = Charset()


def _run(path: Path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images})[0]


def _model_of(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "baseline":  # a test builds each built-in kind's network; the code under test never branches on kinds
        return SegCharModel(BaselineConfig(num_classes=CHARSET.num_classes, channels=(4, 8), embed_dim=8, hidden_size=8))
    if kind == "crnn_attention":
        from crnn.models.attention import build_attention_model
        from crnn.models.crnn import ModelConfig

        return build_attention_model(ModelConfig(hidden_size=8, num_layers=1), CHARSET.num_classes, hidden_size=8,
                                     attention_size=8, embedding_size=4)
    return _tiny_model(0, 16)


@pytest.mark.parametrize("kind", sorted(kinds()))
def test_every_registered_kind_exports_or_is_refused_with_a_typed_error(kind: str, tmp_path: Path) -> None:
    ckpt = save_checkpoint(tmp_path / "m.safetensors", _model_of(kind), CHARSET, metadata={"name": kind})
    out = tmp_path / "m.onnx"
    if kinds()[kind].export_onnx is None:
        with pytest.raises(ExportError, match="cannot be exported to ONNX"):
            export_onnx(ckpt, out)
        assert not out.exists()
        return
    export_onnx(ckpt, out)
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    assert read_header(out) == read_header(ckpt)  # the same self-describing header as the safetensors


@pytest.mark.parametrize("config", [{}, {"cell": "gru"}, {"cell": "rnn", "bidirectional": False}, {"cell": "none"},
                                    {"num_layers": 1}, {"backbone": "resnet", "mixer_layers": 2},
                                    {"backbone": "resnet_dw", "height": 48, "mixer_layers": 1, "cell": "none"}],
                         ids=["lstm", "gru", "uni-rnn", "no-rnn", "one-layer", "resnet-mix2", "resnet_dw-h48-mixing-only"])
def test_crnn_round_trip_matches_torch_for_any_batch_and_width(config: dict, tmp_path: Path) -> None:
    model = _tiny_model(3, 16, **config)
    path = export_onnx(load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", model, CHARSET)), tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    for batch, width in [(1, 16), (3, 64), (5, 200)]:  # the axes are dynamic: none of these is the traced shape
        images = rng.uniform(-1, 1, (batch, 1, model.config.height, width)).astype(np.float32)
        with torch.inference_mode():
            expected = model(torch.from_numpy(images)).numpy()
        got = _run(path, images)
        assert got.shape == expected.shape == (batch, CRNN.frames_for_width(width), CHARSET.num_classes)
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_metadata_carries_the_checkpoint_header_and_what_the_model_is(tmp_path: Path) -> None:
    src = tiny_checkpoint(tmp_path / "tiny.safetensors")
    props = read_onnx_metadata(export_onnx(src, tmp_path / "tiny.onnx"))
    assert props["format"] == "crnn-ocr" and props["model_type"] == "crnn" and props["precision"] == "fp32"
    assert json.loads(props["metadata"])["name"] == "tiny-untrained"
    assert json.loads(props["describe"])["parameters"] > 0 and props["exported_from"] == "tiny.safetensors"


@pytest.mark.parametrize("name", ["default", "real", "lines"])
def test_a_shipped_onnx_is_the_export_of_its_safetensors(name: str, tmp_path: Path) -> None:
    """weights/crnn.onnx (crnn-real.onnx) cannot drift from weights/crnn.safetensors (crnn-real.safetensors): a fresh
    export reads the same."""
    model = shipped_model(name)
    checkpoint, shipped = model.path("torch"), model.path("onnx")
    if checkpoint is None or shipped is None or not (checkpoint.exists() and shipped.exists()):
        pytest.skip(f"model {name!r} is not shipped in this checkout")
    fresh = export_onnx(checkpoint, tmp_path / "fresh.onnx")
    assert read_header(shipped) == read_header(checkpoint)
    from crnn.io.preprocess import pad_batch, prepare

    arrays = [prepare(p) for p in sorted(EXAMPLES.glob("*.png"))]
    for a in arrays:
        images, _ = pad_batch([a])
        np.testing.assert_allclose(_run(shipped, images), _run(fresh, images), atol=1e-5)


def test_crnn_export_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tiny_checkpoint(tmp_path / "tiny.safetensors")
    assert cli_main(["export", "--format", "onnx", "--weights", str(src), "--output", str(tmp_path / "t.onnx")]) == 0
    assert read_header(tmp_path / "t.onnx")["model_type"] == "crnn"
    assert capsys.readouterr().err.startswith("wrote ")
    baseline = save_checkpoint(tmp_path / "b.safetensors", _model_of("baseline"), CHARSET)
    assert cli_main(["export", "--weights", str(baseline), "-o", str(tmp_path / "b.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the segmented-character baseline cannot be exported to ONNX" in err


@pytest.mark.parametrize("damage", ["truncated", "not-onnx", "foreign-onnx"])
def test_a_damaged_or_foreign_onnx_file_is_a_checkpoint_error(damage: str, tmp_path: Path) -> None:
    good = export_onnx(tiny_checkpoint(tmp_path / "tiny.safetensors"), tmp_path / "good.onnx")
    bad = tmp_path / "bad.onnx"
    if damage == "truncated":
        bad.write_bytes(good.read_bytes()[:5000])
    elif damage == "not-onnx":
        bad.write_bytes(b"\xff" * 100)
    else:
        proto = onnx.load(str(good))
        del proto.metadata_props[:]
        onnx.save(proto, str(bad))
    with pytest.raises(CheckpointError):
        read_header(bad)


def test_int8_export_loads_and_reads_like_its_fp32_model(tmp_path: Path) -> None:
    """`crnn export --int8` (static convs calibrated on the given images, dynamic LSTM/linear): a loadable model."""
    from PIL import Image

    from crnn.reading.onnx_recognizer import OnnxRecognizer
    from tests.word_images import render_word

    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for i, word in enumerate(["alpha", "Beta", "gamma42", "DELTA", "epsilon", "z"]):
        Image.fromarray(render_word(word)).save(calibration / f"{i}.png")
    src = tiny_checkpoint(tmp_path / "tiny.safetensors")
    out = tmp_path / "tiny-int8.onnx"
    assert cli_main(["export", "--weights", str(src), "-o", str(out), "--int8", "--calibration", str(calibration)]) == 0
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DynamicQuantizeLSTM"} <= ops
    int8, fp32 = OnnxRecognizer(out, threads=1), OnnxRecognizer(export_onnx(src, tmp_path / "tiny.onnx"), threads=1)
    assert int8.precision == "int8" and read_header(out) == read_header(src)
    images = [render_word(w) for w in ("hello", "world")]
    lp8, n8 = int8.batch_log_probs([int8.prepare(i) for i in images[:1]])
    lp32, n32 = fp32.batch_log_probs([fp32.prepare(i) for i in images[:1]])
    assert lp8.shape == lp32.shape and (n8 == n32).all()
    assert len(int8.recognize(images)) == 2


def test_int8_needs_calibration_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["export", "-o", str(tmp_path / "m.onnx"), "--int8"]) == 2
    assert "--calibration" in capsys.readouterr().err
