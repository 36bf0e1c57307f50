"""The ONNX Runtime backend (crnn/reading/onnx_recognizer.py, crnn/reading/backend.py): same readings as torch, batch independence,
no torch imported, and which backend `auto` picks."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from crnn.reading.backend import resolve_backend  # noqa: E402
from crnn.checkpoints.header import DEFAULT_WEIGHTS, shipped_onnx_path  # noqa: E402
from crnn.errors import BackendError, CheckpointError  # noqa: E402
from crnn.reading.onnx_recognizer import OnnxRecognizer  # noqa: E402
from crnn.reading.text_recognizer import TextRecognizer  # noqa: E402
from crnn.kinds.loading import load_recognizer
from tests.tiny_models import BROKEN_ONNX, broken_onnx  # noqa: E402
from tests.word_images import render_word  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
GOLDEN = Path(__file__).resolve().parent / "golden" / "ocr_examples_fp32.tsv"
# fp32 on both backends; the kernels differ (oneDNN vs MLAS), so confidences agree to rounding, texts exactly.
CONFIDENCE_TOLERANCE = 1e-3
RENDERED = ["a", "go", "crnn", "Hello", "recognition", "supercalifragilistic", "Mosher", "3:15", "PAYING", "tree",
            "house", "OCR-2026", "Quality", "x", "zebra", "onnx"]

pytestmark = pytest.mark.skipif(not shipped_onnx_path().exists(), reason="no shipped weights/crnn.onnx")


@pytest.fixture(scope="module")
def onnx_rec() -> OnnxRecognizer:
    return OnnxRecognizer(threads=1)


@pytest.fixture(scope="module")
def torch_rec():
    from crnn.reading.recognizer import Recognizer

    return Recognizer(precision="fp32", threads=1)


def _images() -> list:
    return [*sorted(EXAMPLES.glob("*.png")), *(render_word(w) for w in RENDERED)]


def test_it_is_a_text_recognizer(onnx_rec: OnnxRecognizer) -> None:
    assert isinstance(onnx_rec, TextRecognizer)
    assert onnx_rec.kind == "crnn" and onnx_rec.precision == "fp32" and onnx_rec.describe()["parameters"] > 0


@pytest.mark.parametrize("decoder", ["greedy", "beam"])
def test_onnx_reads_what_torch_reads(onnx_rec: OnnxRecognizer, torch_rec, decoder: str) -> None:
    images = _images()
    got = onnx_rec.recognize(images, decoder=decoder)
    expected = torch_rec.recognize(images, decoder=decoder)
    assert [p.text for p in got] == [p.text for p in expected]
    for g, e in zip(got, expected):
        assert abs(g.confidence - e.confidence) <= CONFIDENCE_TOLERANCE
        assert np.allclose(g.char_confidences, e.char_confidences, atol=CONFIDENCE_TOLERANCE)


def test_lexicon_decoding_is_the_same_on_both_backends(onnx_rec: OnnxRecognizer, torch_rec) -> None:
    words = ["Scuba", "admirably", "jointly", "guardiola", "serviced", "buddha's", "fenn", "tree"]
    images = _images()
    assert [p.text for p in onnx_rec.recognize(images, lexicon=words)] == \
        [p.text for p in torch_rec.recognize(images, lexicon=words)]


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_a_result_does_not_depend_on_the_batch(onnx_rec: OnnxRecognizer, batch_size: int) -> None:
    arrays = [onnx_rec.prepare(i) for i in _images()]
    together = onnx_rec.recognize_prepared(arrays, batch_size=batch_size, workers=2)
    for a, t in zip(arrays, together):
        alone = onnx_rec.recognize_prepared([a])[0]
        assert alone.text == t.text and alone.confidence == t.confidence
        assert alone.char_confidences == t.char_confidences


def test_a_batch_of_one_width_equals_each_image_alone(onnx_rec: OnnxRecognizer) -> None:
    # Images of one width share a batch: each row of the batch's log-probs equals that image's own run.
    arrays = [onnx_rec.prepare(render_word(w)) for w in ("cat", "dog", "car", "hat")]
    arrays = [a for a in arrays if a.shape[1] == arrays[0].shape[1]]
    assert len(arrays) >= 2
    batch, _ = onnx_rec.batch_log_probs(arrays)
    for row, a in zip(batch, arrays):
        np.testing.assert_array_equal(row, onnx_rec.batch_log_probs([a])[0][0])


def _tsv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text), delimiter="\t"))


BLOCK_TORCH = '''
import sys

class _NoTorch:
    """Makes torch unimportable, as on an install with only the onnx extra."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is blocked in this test ({name})")
        return None

sys.meta_path.insert(0, _NoTorch())
'''


@pytest.mark.parametrize("backend", ["onnx", "auto"])
def test_crnn_ocr_on_the_onnx_backend_runs_without_torch(backend: str, tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCK_TORCH)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    env.pop("CRNN_WEIGHTS", None)
    check = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True, timeout=60)
    assert check.returncode != 0 and "blocked" in check.stderr  # the blocker works
    # --precision fp32: with `auto`, a CPU with native bf16 keeps torch (bf16) by design (test_resolve_backend).
    res = subprocess.run([sys.executable, "-m", "crnn.cli", "ocr", "--backend", backend, "--precision", "fp32", "examples/"], env=env,
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    got, expected = _tsv(res.stdout), _tsv(GOLDEN.read_text(encoding="utf-8"))
    assert [(r["path"], r["text"]) for r in got] == [(r["path"], r["text"]) for r in expected]
    assert all(abs(float(g["confidence"]) - float(e["confidence"])) <= 5e-3 for g, e in zip(got, expected))


def test_load_recognizer_picks_the_backend() -> None:
    assert isinstance(load_recognizer(backend="onnx", threads=1), OnnxRecognizer)
    assert isinstance(load_recognizer(str(shipped_onnx_path()), backend="auto", threads=1), OnnxRecognizer)
    assert type(load_recognizer(backend="torch", threads=1)).__name__ == "Recognizer"


def test_resolve_backend(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CRNN_WEIGHTS", raising=False)
    monkeypatch.setattr("crnn.reading.backend.cpu_has_native_bf16", lambda: False)  # a CPU where torch's auto runs fp32
    onnx_file = str(shipped_onnx_path())
    assert resolve_backend("auto", None) == ("onnx", shipped_onnx_path())
    assert resolve_backend("auto", None, "bf16") == ("torch", None)  # a torch-only precision keeps torch
    assert resolve_backend("auto", None, "fp32", "cuda") == ("torch", None)  # so does a GPU
    assert resolve_backend("auto", str(DEFAULT_WEIGHTS)) == ("torch", str(DEFAULT_WEIGHTS))
    assert resolve_backend("onnx", onnx_file) == ("onnx", onnx_file)
    with pytest.raises(BackendError, match="--backend onnx"):
        resolve_backend("torch", onnx_file)
    with pytest.raises(BackendError, match="crnn export"):
        resolve_backend("onnx", str(DEFAULT_WEIGHTS))
    monkeypatch.setattr("crnn.reading.backend.cpu_has_native_bf16", lambda: True)  # where torch's auto would run bf16
    assert resolve_backend("auto", None) == ("torch", None)
    assert resolve_backend("auto", None, "fp32") == ("onnx", shipped_onnx_path())
    monkeypatch.setattr("crnn.reading.backend.onnxruntime_available", lambda: False)
    assert resolve_backend("auto", None) == ("torch", None)
    with pytest.raises(BackendError, match=r"crnn-ocr\[onnx\]"):
        resolve_backend("onnx", None)


@pytest.mark.parametrize(("argv", "message"), [
    (["--backend", "onnx", "--weights", "weights/crnn.safetensors"], "crnn export"),
    (["--backend", "torch", "--weights", "weights/crnn.onnx"], "--backend onnx"),
    (["--backend", "onnx", "--precision", "bf16"], "torch only"),
])
def test_crnn_ocr_refuses_a_backend_that_cannot_run_the_weights(argv: list[str], message: str, capsys,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from crnn.cli import main as cli_main

    monkeypatch.chdir(REPO)
    assert cli_main(["ocr", "examples/", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


# What each damaged graph is refused for (tests/tiny_models.py's broken_onnx), on one line naming the file.
BROKEN_ONNX_REASONS = {"corrupt-graph": "ONNX Runtime cannot load it", "wrong-height": "ONNX Runtime cannot run it",
                       "wrong-classes": "not (1, frames, 96) for the 96 classes of the charset in its header"}


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("broken-onnx")
    return {damage: broken_onnx(folder, damage) for damage in BROKEN_ONNX}


@pytest.mark.parametrize("damage", BROKEN_ONNX)
def test_an_onnx_model_that_cannot_run_is_refused_when_it_loads(damage: str, broken: dict[str, Path], capsys) -> None:
    """Its header reads fine, so only loading the graph, and running it once, finds what is wrong: at load, not
    as a traceback on the first image (crnn ocr) or a 500 on every request (crnn serve)."""
    from crnn.cli import main as cli_main

    path = broken[damage]
    for backend in ("onnx", "auto"):
        with pytest.raises(CheckpointError) as e:
            load_recognizer(path, backend=backend)
        assert str(e.value).startswith(f"{path}: ") and BROKEN_ONNX_REASONS[damage] in str(e.value)
        assert "\n" not in str(e.value)
    assert cli_main(["ocr", str(EXAMPLES), "--weights", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"crnn ocr: {path}: ") and BROKEN_ONNX_REASONS[damage] in err


def test_the_onnx_backend_modules_import_no_torch() -> None:
    code = ("import sys, crnn.reading.onnx_recognizer, crnn.reading.text_recognizer, crnn.decoding.ctc_decode, crnn.reading.backend, crnn.checkpoints.onnx_header; "
            "print('torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert res.stdout.strip() == "False", res.stderr


# (extra options, modules a run with them may import): what a plain `crnn ocr --backend onnx` needs to read
# words is numpy, onnxruntime, OpenCV and Pillow; the rest waits for the option that uses it (start-up, issue 33).
LAZY_MODULES = ("torch", "pydantic", "rapidfuzz", "crnn.reading.orientation", "crnn.config")
STARTUP_CASES = [
    ([], ()),
    (["--decoder", "greedy", "--format", "jsonl"], ()),
    (["--lexicon", "LEXICON"], ("rapidfuzz",)),  # the nearest-word search
    (["--orientation", "auto"], ("torch", "pydantic", "crnn.reading.orientation", "crnn.config")),  # a torch network
]


@pytest.mark.parametrize(("options", "imported"), STARTUP_CASES, ids=["plain", "greedy-jsonl", "lexicon", "orientation"])
def test_crnn_ocr_on_the_onnx_backend_imports_only_what_its_options_use(
    options: list[str], imported: tuple[str, ...], tmp_path: Path
) -> None:
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("Scuba\nHouse\n", encoding="utf-8")
    options = [str(lexicon) if o == "LEXICON" else o for o in options]
    code = ("import sys; from crnn.cli import main; status = main(sys.argv[1:]); "
            f"print(status, [m for m in {LAZY_MODULES!r} if m in sys.modules])")
    args = ["ocr", str(EXAMPLES / "word_00.png"), "--backend", "onnx", "--weights", str(REPO / "weights" / "crnn-int8.onnx"),
            "-o", str(tmp_path / "out.txt"), *options]
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"0 {sorted(imported, key=LAZY_MODULES.index)!r}", res.stderr  # 0: the word was read


def test_the_server_on_the_onnx_backend_reads_what_crnn_ocr_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fastapi")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from fastapi.testclient import TestClient
    from crnn_server import Settings, create_app

    monkeypatch.delenv("CRNN_WEIGHTS", raising=False)
    expected = _tsv(GOLDEN.read_text(encoding="utf-8"))
    files = [("files", (Path(r["path"]).name, (REPO / r["path"]).read_bytes(), "image/png")) for r in expected]
    settings = Settings(backend="onnx", threads=1)
    assert settings.model_source() == ("onnx", shipped_onnx_path())
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/recognize", files=files)
        model = client.get("/v1/model").json()
    assert response.status_code == 200, response.text
    assert [r["text"] for r in response.json()["results"]] == [r["text"] for r in expected]
    assert model["weights"] == "crnn.onnx" and model["parameters"] > 0


INT8 = REPO / "weights" / "crnn-int8.onnx"


@pytest.mark.skipif(not INT8.exists(), reason="no shipped weights/crnn-int8.onnx")
def test_the_shipped_int8_model_loads_and_reads_the_examples() -> None:
    rec = OnnxRecognizer(INT8, threads=1)
    assert rec.precision == "int8" and rec.charset.chars == OnnxRecognizer(threads=1).charset.chars
    expected = _tsv(GOLDEN.read_text(encoding="utf-8"))
    got = rec.recognize([REPO / r["path"] for r in expected])
    # int8 rounds the activations: confidences move a little (0.08 at most on the examples), texts do not, but
    # for the case of one letter in the one word read at low confidence (`seRviced`, 0.19 in fp32).
    assert [p.text for p in got] == [r["text"] if float(r["confidence"]) >= 0.5 else p.text
                                             for p, r in zip(got, expected)]
    assert [p.text.lower() for p in got] == [r["text"].lower() for r in expected]
    assert all(abs(p.confidence - float(r["confidence"])) <= 0.1 for p, r in zip(got, expected))


@pytest.mark.parametrize("name", ["crnn.onnx", "crnn-int8.onnx", "crnn-real.onnx", "crnn-real-int8.onnx"])
def test_the_left_out_graph_rewrites_change_no_output_bit(name: str) -> None:
    # DISABLED_OPTIMIZERS only speeds the network up (the int8 files' first pool in fp32 NCHWc): the log-probabilities
    # must be the bytes ONNX Runtime gives with every rewrite on, per width bucket, on the examples and rendered words.
    from crnn.io.preprocess import pad_batch
    from crnn.reading.onnx_recognizer import DISABLED_OPTIMIZERS

    path = REPO / "weights" / name
    if not path.exists():
        pytest.skip(f"no shipped weights/{name}")
    rec = OnnxRecognizer(path, threads=1)
    assert DISABLED_OPTIMIZERS == ["QDQPropagationTransformer"]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 1
    every_rewrite = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    arrays = [rec.prepare(image) for image in _images()]
    for idx in rec.batches(arrays, 64):
        images, _ = pad_batch([arrays[i] for i in idx], rec.preprocess)
        (ours,) = rec.session.run(None, {"images": images})
        (reference,) = every_rewrite.run(None, {"images": images})
        assert ours.tobytes() == reference.tobytes()
