"""Shipped models by name (`--model NAME`): the table, the file each backend runs, the errors, and the switch in the
library and every command, with a tiny stand-in checkpoint for the adapted model (`real`) in a weights folder of
the test's own."""

from __future__ import annotations

import json
import shutil
from importlib.util import find_spec
from collections.abc import Iterator
from pathlib import Path

import pytest

from crnn.checkpoints import shipped
from crnn.checkpoints.header import DEFAULT_WEIGHTS, shipped_onnx_path
from crnn.checkpoints.shipped import DEFAULT_MODEL, SHIPPED_MODELS, model_names
from crnn.cli import main as cli_main
from crnn.errors import BackendError, ConfigError, CRNNError, ModelChoiceError, ModelNotShippedError, UnknownModelError
from crnn.kinds.loading import load_checkpoint, load_recognizer
from crnn.reading.backend import resolve_backend, shipped_file
from tests.tiny_models import tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SHIPPED_DIR = shipped.WEIGHTS_DIR


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights folder holding the shipped default model's files and a tiny stand-in for each file of `real`."""
    pytest.importorskip("onnx")
    from crnn.kinds.export import export_onnx

    folder = tmp_path_factory.mktemp("weights")
    for entry in (SHIPPED_MODELS["default"], SHIPPED_MODELS["default-int8"]):
        for f in entry.files():
            if not (folder / f.name).exists():
                shutil.copy(f, folder / f.name)
    real = SHIPPED_MODELS["real"]
    tiny_checkpoint(folder / real.torch, seed=3)
    export_onnx(folder / real.torch, folder / real.onnx)
    shutil.copy(folder / real.onnx, folder / SHIPPED_MODELS["real-int8"].onnx)  # an .onnx file stands in for int8
    (folder / real.card).write_text("# stand-in model card\n")
    return folder


@pytest.fixture
def weights_dir(stand_in: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The stand-in folder as the weights folder, on a CPU where torch's auto precision is fp32 (so that `auto`
    picks the .onnx file, as on the 2-core hosts the shipped figures come from)."""
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", stand_in)
    monkeypatch.setattr("crnn.reading.backend.cpu_has_native_bf16", lambda: False)
    monkeypatch.delenv("CRNN_WEIGHTS", raising=False)
    yield stand_in


def test_the_table_names_the_shipped_default_files() -> None:
    assert model_names()[0] == DEFAULT_MODEL == "default"
    default = SHIPPED_MODELS[DEFAULT_MODEL]
    assert default.path("torch") == DEFAULT_WEIGHTS and default.path("onnx") == shipped_onnx_path()
    for entry in SHIPPED_MODELS.values():
        assert entry.torch is None or entry.torch.endswith(".safetensors")
        assert entry.onnx is not None and entry.onnx.endswith(".onnx")
        assert (SHIPPED_DIR / entry.card).is_file(), f"{entry.name}: no model card {entry.card} in weights/"
    # Every shipped file is packaged into the wheel as crnn/weights/ (pyproject.toml's package data).
    text = (REPO / "pyproject.toml").read_text()
    assert '"crnn.weights" = ["*.safetensors", "*.onnx", "*.md"]' in text


@pytest.mark.parametrize(("model", "backend", "precision", "device", "expected"), [
    ("real", "auto", "auto", "cpu", ("onnx", "crnn-real.onnx")),
    ("real", "auto", "bf16", "cpu", ("torch", "crnn-real.safetensors")),  # a torch-only precision keeps torch
    ("real", "auto", "fp32", "cuda", ("torch", "crnn-real.safetensors")),  # so does a GPU
    ("real", "torch", "auto", "cpu", ("torch", "crnn-real.safetensors")),
    ("real", "onnx", "auto", "cpu", ("onnx", "crnn-real.onnx")),
    ("real-int8", "auto", "auto", "cpu", ("onnx", "crnn-real-int8.onnx")),
    ("real-int8", "onnx", "fp32", "cpu", ("onnx", "crnn-real-int8.onnx")),
    ("default", "auto", "auto", "cpu", ("onnx", "crnn.onnx")),
    ("default", "torch", "auto", "cpu", ("torch", "crnn.safetensors")),
    ("default-int8", "auto", "auto", "cpu", ("onnx", "crnn-int8.onnx")),
])
def test_resolve_backend_picks_the_named_model_file(weights_dir: Path, model: str, backend: str, precision: str,
                                                    device: str, expected: tuple[str, str]) -> None:
    got_backend, got = resolve_backend(backend, None, precision, device, model)
    assert (got_backend, Path(got)) == (expected[0], weights_dir / expected[1])


def test_auto_runs_torch_without_onnxruntime(weights_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("crnn.reading.backend.onnxruntime_available", lambda: False)
    assert shipped_file("real", "auto") == weights_dir / "crnn-real.safetensors"


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: resolve_backend("auto", None, model="nope"), UnknownModelError, "default, default-int8, real, real-int8"),
    (lambda: resolve_backend("auto", "my.safetensors", model="real"), ModelChoiceError, "give one"),
    (lambda: resolve_backend("torch", None, model="real-int8"), BackendError, "--backend onnx"),
    (lambda: load_recognizer(model="nope"), UnknownModelError, "the shipped models are"),
    (lambda: load_recognizer("my.safetensors", model="default"), ModelChoiceError, "--weights"),
    (lambda: load_checkpoint(model="nope"), UnknownModelError, "nope"),
], ids=["unknown", "both", "int8-on-torch", "library-unknown", "library-both", "checkpoint-unknown"])
def test_bad_names_and_choices_are_typed_errors(weights_dir: Path, call, error: type, match: str) -> None:  # noqa: ANN001
    with pytest.raises(error, match=match) as info:
        call()
    # Each boundary catches CRNNError once; a name or a choice that cannot be is a config mistake.
    assert isinstance(info.value, ConfigError if error is not BackendError else CRNNError)
    if error is UnknownModelError:
        assert info.value.names == model_names()


@pytest.mark.parametrize(("remove", "backend", "match"), [
    (["crnn-real.safetensors", "crnn-real.onnx"], "auto", "no crnn-real.safetensors"),
    (["crnn-real.onnx"], "onnx", "it has crnn-real.safetensors"),
    (["crnn-real.safetensors"], "torch", "it has crnn-real.onnx"),
])
def test_a_name_whose_file_is_not_shipped_says_so(weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  remove: list[str], backend: str, match: str) -> None:
    folder = tmp_path / "weights"
    shutil.copytree(weights_dir, folder)
    for name in remove:
        (folder / name).unlink()
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", folder)
    with pytest.raises(ModelNotShippedError, match=f"model 'real' is not shipped in this install: .*{match}"):
        resolve_backend(backend, None, model="real")
    assert shipped.is_shipped("real") == (len(remove) < 2)


@pytest.mark.parametrize(("model", "weights", "env", "lines_shipped", "expected"), [
    (None, None, None, True, "lines"),      # photos: the lines model when nothing is chosen
    (None, None, None, False, None),        # an install without it: the default model
    ("real", None, None, True, "real"),     # a chosen model is kept
    (None, "my.safetensors", None, True, None),  # so are chosen weights
    (None, None, "my.safetensors", True, None),  # and $CRNN_WEIGHTS
])
def test_photo_model(weights_dir: Path, monkeypatch: pytest.MonkeyPatch, model: str | None, weights: str | None,
                     env: str | None, lines_shipped: bool, expected: str | None) -> None:
    if env:
        monkeypatch.setenv("CRNN_WEIGHTS", env)
    monkeypatch.setattr(shipped, "is_shipped", lambda name, backend=None: name == shipped.PHOTO_MODEL and lines_shipped)
    assert shipped.photo_model(model, weights) == expected


@pytest.mark.parametrize("name", shipped.model_names())
def test_every_named_model_is_shipped_with_its_card(name: str) -> None:
    # The repository's own weights folder holds every file of every name (check_wheel.sh checks the wheel's copy).
    missing = [p.name for p in shipped.shipped_model(name).files() if not p.is_file()]
    assert not missing, f"model {name!r} lacks {missing}"


@pytest.mark.parametrize("backend", ["torch", "onnx", "auto"])
def test_the_library_loads_a_model_by_name(weights_dir: Path, backend: str) -> None:
    images = sorted(str(p) for p in EXAMPLES.glob("*.png"))[:4]
    by_name = load_recognizer(model="real", backend=backend, threads=1).recognize(images, decoder="greedy")
    by_file = load_recognizer(weights_dir / "crnn-real.safetensors", threads=1).recognize(images, decoder="greedy")
    assert [p.text for p in by_name] == [p.text for p in by_file]
    assert load_checkpoint(model="real").metadata["name"] == "tiny-untrained"


def test_the_default_name_reads_what_no_name_reads(weights_dir: Path) -> None:
    images = sorted(str(p) for p in EXAMPLES.glob("*.png"))[:4]
    named = load_recognizer(model="default", backend="torch", threads=1).recognize(images, decoder="greedy")
    unnamed = load_recognizer(backend="torch", threads=1).recognize(images, decoder="greedy")
    assert [p.to_dict() for p in named] == [p.to_dict() for p in unnamed]


def _ocr(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli_main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("backend", ["torch", "onnx", "auto"])
def test_crnn_ocr_model_switch(weights_dir: Path, backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--decoder", "greedy", "--threads", "1", "--backend", backend, str(EXAMPLES / "word_00.png"),
            str(EXAMPLES / "word_01.png")]
    code, named, _ = _ocr(["ocr", "--model", "real", *args], capsys)
    assert code == 0
    weights = weights_dir / ("crnn-real.onnx" if backend != "torch" else "crnn-real.safetensors")
    assert _ocr(["ocr", "--weights", str(weights), *args], capsys)[1] == named
    default = _ocr(["ocr", *args], capsys)[1]
    assert default != named  # the stand-in reads otherwise than the shipped model
    assert _ocr(["ocr", "--model", "default", *args], capsys)[1] == default


COMMANDS = {
    "ocr": ["ocr", str(EXAMPLES / "word_00.png")],
    "ocr-ray": ["ocr", "--ray", str(EXAMPLES / "word_00.png"), "--output", "{tmp}/out"],  # refused before Ray starts
    "eval": ["eval", "--data", str(EXAMPLES)],
    "self-label": ["self-label", str(EXAMPLES), "--out", "{tmp}/out", "--threshold", "0.5"],
    "info": ["info"],
    "export": ["export", "--output", "{tmp}/out.onnx"],
}


@pytest.mark.parametrize("command", [
    pytest.param(c, marks=pytest.mark.skipif(c == "ocr-ray" and find_spec("ray") is None, reason="no ray extra"))
    for c in COMMANDS])
@pytest.mark.parametrize(("options", "message"), [
    (["--model", "nope"], "unknown model 'nope'; the shipped models are: default, default-int8, real, real-int8"),
    (["--model", "real", "--weights", "x.safetensors"], "--model real and --weights x.safetensors both choose"),
    (["--model", "real"], "model 'real' is not shipped in this install: no crnn-real.safetensors"),
])
def test_every_command_refuses_a_bad_model_choice_in_one_line(command: str, options: list[str], message: str,
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "weights"
    empty.mkdir()
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", empty)  # no file of any model: `real` not shipped
    argv = [a.replace("{tmp}", str(tmp_path)) for a in COMMANDS[command]] + options
    code, out, err = _ocr(argv, capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.onnx").exists()


def test_crnn_eval_and_self_label_by_name(weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--decoder", "greedy", "--backend", "torch", "--threads", "1"]
    code, out, _ = _ocr(["eval", "--model", "real", "--data", str(EXAMPLES), "--json", *common], capsys)
    named = json.loads(out)
    code2, out2, _ = _ocr(["eval", "--weights", str(weights_dir / "crnn-real.safetensors"), "--data", str(EXAMPLES),
                           "--json", *common], capsys)
    assert code == code2 == 0 and named["model"] == "real"
    def rows(results: list[dict]) -> list[dict]:  # noqa: ANN001
        return [{k: v for k, v in r.items() if k != "images_per_s"} for r in results]

    assert rows(named["results"]) == rows(json.loads(out2)["results"])
    for name, option in (("named", ["--model", "real"]),
                         ("file", ["--weights", str(weights_dir / "crnn-real.safetensors")])):
        assert _ocr(["self-label", str(EXAMPLES), "--out", str(tmp_path / name), "--threshold", "0", *option,
                     *common], capsys)[0] == 0
    assert (tmp_path / "named" / "labels.tsv").read_text() == (tmp_path / "file" / "labels.tsv").read_text()
    assert json.loads((tmp_path / "named" / "self_label.json").read_text())["model"] == "real"


def test_crnn_info_and_export_by_name(weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _ocr(["info", "--model", "real", "--json"], capsys)
    assert code == 0 and json.loads(out)["weights"] == str(weights_dir / "crnn-real.safetensors")
    code, out, _ = _ocr(["info", "--model", "real-int8", "--json"], capsys)
    assert code == 0 and json.loads(out)["weights"] == str(weights_dir / "crnn-real-int8.onnx")
    code, _, err = _ocr(["export", "--model", "real", "--output", str(tmp_path / "real.onnx")], capsys)
    assert code == 0 and (tmp_path / "real.onnx").is_file(), err
    code, _, err = _ocr(["export", "--model", "real-int8", "--output", str(tmp_path / "int8.onnx")], capsys)
    assert code == 2 and "--backend onnx" in err  # an ONNX-only variant has no checkpoint to export
