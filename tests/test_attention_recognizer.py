"""The attention kind behind the TextRecognizer protocol: decoders, confidences, batch independence, options it
refuses, and `crnn ocr`, `crnn eval`, `crnn info`, `crnn export` and the API reading a checkpoint of it unnamed."""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from crnn.models.attention import AttentionRecognizerNet, build_attention_model
from crnn.reading.attention_recognizer import AttentionRecognizer
from crnn.charset import Charset
from crnn.kinds.loading import save_checkpoint
from crnn.errors import DecoderOptionError
from crnn.models.crnn import ModelConfig
from crnn.reading.text_recognizer import TextRecognizer
from crnn.kinds.loading import load_recognizer
from tests.word_images import render_word

WORDS = ["hello", "a", "recognition", "cat", "house"]


def tiny_attention(seed: int = 0, cell: str = "lstm") -> AttentionRecognizerNet:
    """An untrained tiny attention recognizer with the default charset; random batch-norm statistics, so that its
    outputs differ from image to image."""
    torch.manual_seed(seed)
    encoder = ModelConfig(hidden_size=16, num_layers=1, dropout=0.0)
    net = build_attention_model(encoder, Charset().num_classes, cell=cell, hidden_size=16, attention_size=16,
                                embedding_size=8, max_length=12)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.fixture(scope="module")
def recognizer() -> AttentionRecognizer:
    return AttentionRecognizer.from_model(tiny_attention(), Charset())


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("w") / "attention.safetensors"
    return save_checkpoint(path, tiny_attention(), Charset(), metadata={"name": "tiny-attention", "metrics": {}})


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("imgs")
    lines = []
    for i, w in enumerate(WORDS):
        Image.fromarray(render_word(w)).save(d / f"{i}.png")
        lines.append(f"{i}.png\t{w}\n")
    (d / "labels.tsv").write_text("".join(lines))
    return d


def test_is_a_text_recognizer_loaded_by_model_type(weights: Path) -> None:
    rec = load_recognizer(weights, backend="torch")
    assert isinstance(rec, AttentionRecognizer) and isinstance(rec, TextRecognizer)
    assert rec.kind == "crnn_attention" and rec.metadata["name"] == "tiny-attention"
    assert rec.precision == "fp32"  # auto: this kind's checked precision


@pytest.mark.parametrize("decoder", ["greedy", "beam", "lm"])
def test_confidence_is_the_product_of_step_probabilities(recognizer: AttentionRecognizer, decoder: str) -> None:
    arrays = [recognizer.prepare(render_word(w)) for w in WORDS]
    preds = recognizer.recognize_prepared(arrays, decoder=decoder, beam_width=4)
    net = recognizer.model.decoder
    for a, p in zip(arrays, preds):
        frames, lengths = recognizer.frames([a])
        inputs = torch.tensor([[net.config.num_classes, *recognizer.charset.encode(p.text)]])
        with torch.no_grad():
            logp = net(frames, lengths, inputs).log_softmax(-1)[0]  # teacher forced along the returned text
        ids = [*recognizer.charset.encode(p.text), 0]
        steps = logp[torch.arange(len(ids)), torch.tensor(ids)]
        # EOS included (for a text cut at max_length too: its forced EOS is scored)
        assert p.confidence == pytest.approx(float(steps.sum().exp()), rel=1e-4, abs=1e-9)
        assert len(p.char_confidences) == len(p.text)
        assert p.char_confidences == pytest.approx(steps[:-1].exp().tolist(), rel=1e-4, abs=1e-9)
        assert 0.0 <= p.confidence <= 1.0 and p.in_lexicon is None


def test_beam_is_at_least_as_likely_as_greedy(recognizer: AttentionRecognizer) -> None:
    arrays = [recognizer.prepare(render_word(w)) for w in WORDS]
    greedy = recognizer.recognize_prepared(arrays, decoder="greedy")
    beam = recognizer.recognize_prepared(arrays, decoder="beam", beam_width=8)
    for g, b in zip(greedy, beam):
        assert b.confidence >= g.confidence * (1 - 1e-5)


@pytest.mark.parametrize("decoder", ["greedy", "beam"])
@pytest.mark.parametrize("workers", [1, 3])
def test_an_image_reads_the_same_alone_and_in_any_batch(recognizer: AttentionRecognizer, decoder: str,
                                                        workers: int) -> None:
    arrays = [recognizer.prepare(render_word(w)) for w in WORDS * 2]
    together = recognizer.recognize_prepared(arrays, batch_size=3, decoder=decoder, workers=workers)
    for a, p in zip(arrays, together):
        alone = recognizer.recognize_prepared([a], decoder=decoder)[0]
        assert alone.text == p.text
        assert alone.confidence == pytest.approx(p.confidence, rel=1e-5, abs=1e-12)


def test_recognize_takes_any_image_source(recognizer: AttentionRecognizer) -> None:
    img = render_word("cat")
    a, b = recognizer.recognize([img, Image.fromarray(img)])
    assert a == b
    assert recognizer.recognize(img)[0] == a


@pytest.mark.parametrize("options", [
    {"lexicon": ["cat", "dog"]},
    {"decoder": "greedy", "lm_weight": 0.5},
])
def test_options_of_the_ctc_kind_are_refused_with_a_typed_error(recognizer: AttentionRecognizer, options: dict) -> None:
    with pytest.raises(DecoderOptionError, match="lexicon|lm_weight"):
        recognizer.recognize(render_word("cat"), **options)


def test_per_image_lexicons_of_none_are_no_lexicon(recognizer: AttentionRecognizer) -> None:
    a = recognizer.prepare(render_word("cat"))
    assert recognizer.recognize_prepared([a], decoder="greedy", lexicon=[None]) == \
        recognizer.recognize_prepared([a], decoder="greedy")


def test_lm_weight_zero_is_plain_beam(recognizer: AttentionRecognizer) -> None:
    arrays = [recognizer.prepare(render_word(w)) for w in WORDS]
    assert recognizer.recognize_prepared(arrays, decoder="lm", lm_weight=0.0) == \
        recognizer.recognize_prepared(arrays, decoder="beam")


# ---- commands -----------------------------------------------------------------------------------------


def test_crnn_ocr_reads_the_checkpoint_and_refuses_a_lexicon(weights: Path, folder: Path, recognizer: AttentionRecognizer,
                                                             tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crnn.commands.ocr import main

    paths = [str(folder / f"{i}.png") for i in range(len(WORDS))]
    for decoder in ("greedy", "lm"):
        assert main([*paths, "--weights", str(weights), "--backend", "torch", "--decoder", decoder]) == 0
        rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out), delimiter="\t"))
        want = recognizer.recognize(paths, decoder=decoder)
        assert [r["text"] for r in rows] == [p.text for p in want]
        assert [float(r["confidence"]) for r in rows] == pytest.approx([p.confidence for p in want], abs=1e-4)
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("cat\nhouse\n")
    assert main([paths[0], "--weights", str(weights), "--backend", "torch", "--lexicon", str(lexicon)]) == 2
    assert "no lexicon decoding" in capsys.readouterr().err


def test_crnn_eval_reads_the_checkpoint(weights: Path, folder: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from crnn_training.evaluate import main

    assert main(["--weights", str(weights), "--data", str(folder), "--decoder", "greedy", "--json"]) == 0
    out = capsys.readouterr().out
    row = json.loads(out[out.index("{"):])["results"][0]
    assert row["count"] == len(WORDS) and 0.0 <= row["cer"]
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("cat\n")
    assert main(["--weights", str(weights), "--data", str(folder), "--lexicon", str(lexicon)]) != 0
    assert "no lexicon decoding" in capsys.readouterr().err


def test_crnn_info_and_export(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crnn.commands.export import main as export_main
    from crnn.commands.info import main as info_main

    assert info_main(["--weights", str(weights)]) == 0
    out = capsys.readouterr().out
    assert "crnn_attention" in out and "per decoded character" in out
    assert export_main(["--weights", str(weights), "--format", "onnx", "-o", str(tmp_path / "m.onnx")]) != 0
    assert "cannot be exported" in capsys.readouterr().err


def test_the_api_reads_it_and_refuses_a_lexicon(recognizer: AttentionRecognizer) -> None:
    pytest.importorskip("fastapi")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from crnn_server import Settings, create_app

    img = io.BytesIO()
    Image.fromarray(render_word("hello")).save(img, "PNG")
    data = img.getvalue()
    want = recognizer.recognize(data)[0]
    with TestClient(create_app(Settings(max_wait_ms=1.0), recognizer, model_name="att")) as client:
        r = client.post("/v1/recognize", files=[("files", ("a.png", data, "image/png"))])
        assert r.status_code == 200, r.text
        res = r.json()["results"][0]
        assert res["text"] == want.text and res["confidence"] == pytest.approx(want.confidence, rel=1e-4)
        r = client.post("/v1/recognize", files=[("files", ("a.png", data, "image/png"))],
                        data={"lexicon": "hello\nworld"})
        assert r.status_code == 422 and "no lexicon decoding" in r.json()["error"]["message"], r.text
        info = client.get("/v1/model").json()
        assert info["architecture"]["encoder"]["backbone"] == "small"


def test_prepare_matches_the_ctc_kind(recognizer: AttentionRecognizer) -> None:
    """Same preprocessing as the CRNN: the comparison feeds both kinds the same arrays."""
    from crnn.io.preprocess import PreprocessConfig, prepare

    img = render_word("house")
    assert np.array_equal(recognizer.prepare(img), prepare(img, PreprocessConfig()))
