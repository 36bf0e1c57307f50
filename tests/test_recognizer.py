from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crnn import Charset, Recognizer, build_model, load_checkpoint, save_checkpoint
from crnn.errors import CheckpointError, InvalidImageError
from crnn.models.crnn import CRNN
from crnn.io.preprocess import PreprocessConfig, collate, normalize
from tests.tiny_models import tiny_recognizer
from tests.word_images import render_word


def _recognizer(seed: int = 0, precision: str = "fp32", **config: object) -> Recognizer:
    return tiny_recognizer(seed, hidden_size=32, precision=precision, **config)


# The classic CRNN and issue 19's layers: residual backbones, global mixing blocks (masked self-attention), 48 px.
ARCHITECTURES = [{}, {"backbone": "resnet", "mixer_layers": 2}, {"backbone": "resnet_dw", "mixer_layers": 1, "height": 48}]


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=["small", "resnet-mix2", "resnet_dw-mix1-h48"])
@pytest.mark.parametrize("precision", ["fp32", "mixed", "bf16"])
def test_same_result_alone_and_in_any_batch(word_images: dict[str, np.ndarray], precision: str, arch: dict) -> None:
    rec = _recognizer(precision=precision, **arch)
    images = list(word_images.values())
    alone = [rec.recognize([img])[0] for img in images]
    for batch_size in (1, 2, 64):
        for order in (images, images[::-1]):
            together = rec.recognize(order, batch_size=batch_size)
            expected = alone if order is images else alone[::-1]
            for a, b in zip(expected, together):
                assert a.text == b.text
                assert abs(a.confidence - b.confidence) < 1e-4


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=["small", "resnet-mix2", "resnet_dw-mix1-h48"])
@pytest.mark.parametrize("precision", ["fp32", "mixed", "bf16"])
def test_log_probs_alone_equal_log_probs_in_a_batch(word_images: dict[str, np.ndarray], precision: str,
                                                    arch: dict) -> None:
    # Stricter than the texts: bf16 rounds a batch of one differently unless it is run as a pair
    # (the difference, ~1e-3, stays below the texts' and confidences' resolution on a tiny model).
    rec = _recognizer(precision=precision, **arch)
    arrays = [rec.prepare(img) for img in word_images.values()]
    for a in arrays:
        alone, n = rec.log_probs([a])
        others = [b for b in arrays if b.shape == a.shape and b is not a]
        batched, _ = rec.log_probs([*others, a, a])
        torch.testing.assert_close(alone[0, : n[0]], batched[len(others), : n[0]], rtol=0, atol=1e-5)


@pytest.mark.parametrize("workers", [2, 3])
def test_parallel_batches_give_the_same_results_in_order(word_images: dict[str, np.ndarray], workers: int) -> None:
    rec = _recognizer()
    arrays = [rec.prepare(img) for img in word_images.values()] * 3
    serial = rec.recognize_prepared(arrays, batch_size=2)
    parallel = rec.recognize_prepared(arrays, batch_size=2, workers=workers)
    assert [p.text for p in parallel] == [p.text for p in serial]
    assert [p.confidence for p in parallel] == pytest.approx([p.confidence for p in serial], abs=1e-6)
    with pytest.raises(ValueError, match="workers"):
        rec.recognize_prepared(arrays, workers=0)


def test_bf16_network_gives_exactly_what_autocast_gives(word_images: dict[str, np.ndarray]) -> None:
    # precision="bf16" runs a bf16 copy of the network instead of casting the weights at every call.
    bf16, fp32 = _recognizer(precision="bf16"), _recognizer(precision="fp32")
    arrays = [bf16.prepare(img) for img in word_images.values()] * 2  # >= 2 per bucket: no lone image
    for idx in bf16.batches(arrays, batch_size=8):
        batch = [arrays[i] for i in idx]
        images, widths = collate(batch, bf16.preprocess)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            expected = fp32._net(images.contiguous(memory_format=torch.channels_last), CRNN.frames_for_width(widths))
        assert torch.equal(bf16.log_probs(batch)[0], expected)


def test_batches_hold_one_bucket_and_preserve_order(word_images: dict[str, np.ndarray]) -> None:
    rec = _recognizer()
    arrays = [rec.prepare(img) for img in word_images.values()] * 3
    seen = []
    for idx in rec.batches(arrays, batch_size=4):
        assert len(idx) <= 4
        assert len({-(-arrays[i].shape[1] // rec.preprocess.width_bucket) for i in idx}) == 1
        seen += idx
    assert sorted(seen) == list(range(len(arrays)))


def test_recognize_accepts_every_input_kind(tmp_path: Path) -> None:
    from PIL import Image

    rec = _recognizer()
    img = render_word("mixed")
    path = tmp_path / "w.png"
    Image.fromarray(img).save(path)
    preds = rec.recognize([str(path), path, path.read_bytes(), Image.open(path), img])
    assert len({(p.text, round(p.confidence, 5)) for p in preds}) == 1
    with pytest.raises(InvalidImageError):
        rec.recognize([img, b"not an image"])


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path: Path, word_images: dict) -> None:
    rec = _recognizer()
    path = save_checkpoint(tmp_path / "m.safetensors", rec.model, rec.charset, metadata={"steps": 3})
    ckpt = load_checkpoint(path)
    assert ckpt.charset == rec.charset and ckpt.metadata == {"steps": 3}
    assert ckpt.model.config == rec.model.config
    batch, widths = collate([rec.prepare(i) for i in word_images.values()])
    lengths = CRNN.frames_for_width(widths)
    with torch.no_grad():
        assert torch.equal(rec.model(batch, lengths), ckpt.model(batch, lengths))
    # fp16 storage stays close
    half = load_checkpoint(save_checkpoint(tmp_path / "h.safetensors", rec.model, rec.charset, half=True))
    with torch.no_grad():
        assert torch.allclose(rec.model(batch, lengths), half.model(batch, lengths), atol=5e-2)


def test_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="not a crnn-ocr checkpoint"):
        load_checkpoint(bad)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(CheckpointError, match="not a crnn-ocr checkpoint"):
        Recognizer(other)


def test_overfitting_a_tiny_batch_learns_the_labels() -> None:
    torch.manual_seed(0)
    words = ["cat", "Dog", "42", "tree"]
    charset = Charset()
    cfg = PreprocessConfig()
    arrays = [normalize(render_word(w), cfg) for w in words]
    images, widths = collate(arrays, cfg)
    lengths = CRNN.frames_for_width(widths)
    targets = torch.tensor([i for w in words for i in charset.encode(w)])
    target_lengths = torch.tensor([len(w) for w in words])
    model = build_model("small", hidden_size=64, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses, texts = [], []
    for step in range(400):
        model.train()
        log_probs = model(images, lengths)
        loss = F.ctc_loss(log_probs.transpose(0, 1), targets, lengths, target_lengths, zero_infinity=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 25 == 24:
            texts = [p.text for p in Recognizer.from_model(model, charset).recognize_prepared(arrays)]
            if texts == words:
                break
    assert losses[-1] < 0.1 * losses[0]
    assert texts == words


@pytest.mark.parametrize("bad", [b"not an image", np.zeros((8, 8), dtype=object), np.zeros((2, 2), np.uint8)],
                         ids=["text-bytes", "object-array", "2x2"])
def test_recognize_names_the_index_of_a_bad_item_or_returns_it(bad: object, word_images: dict[str, np.ndarray]) -> None:
    from crnn import FailedImage

    rec = _recognizer()
    good = list(word_images.values())[:2]
    with pytest.raises(InvalidImageError, match=r"^image 1: "):
        rec.recognize([good[0], bad, good[1]])
    with pytest.raises(InvalidImageError) as single:
        rec.recognize(bad)  # one input, not a list: no index
    assert not str(single.value).startswith("image 0")
    results = rec.recognize([good[0], bad, good[1]], errors="return")
    assert [type(r).__name__ for r in results] == ["Prediction", "FailedImage", "Prediction"]
    failed = results[1]
    assert isinstance(failed, FailedImage) and failed.index == 1 and failed.error == str(single.value)
    assert failed.text == "" and failed.confidence == 0.0
    assert [r.text for r in (results[0], results[2])] == [p.text for p in rec.recognize(good)]
    assert isinstance(rec.recognize([bad], errors="return")[0], FailedImage)  # nothing to run: no model call
    with pytest.raises(ValueError, match="errors must be"):
        rec.recognize(good, errors="ignore")  # type: ignore[arg-type]


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("group", [1, 4, 1000])
def test_read_and_decode_decodes_every_output_once_in_its_worker_threads(workers: int, group: int) -> None:
    """Every batch's outputs are decoded exactly once and put back in input order; with several workers, once every
    batch has started each thread decodes what waits as soon as its batch is read, so nothing is left for the end."""
    import threading

    from crnn.prediction import Prediction
    from crnn.reading.text_recognizer import read_and_decode

    batches = [[i for i in range(start, min(start + 3, 20))] for start in range(0, 20, 3)][::-1]
    decoded: list[int] = []
    threads: list[str] = []

    def read(idx: list[int]) -> tuple[np.ndarray, np.ndarray]:
        return np.array(idx, dtype=np.float32)[:, None, None], np.ones(len(idx), dtype=np.int64)

    def decode_group(idx: list[int], lp: np.ndarray, lengths: np.ndarray) -> list[Prediction]:
        assert [int(v) for v in lp[:, 0, 0]] == idx
        decoded.extend(idx)
        threads.append(threading.current_thread().name)
        return [Prediction(str(i), 1.0, ()) for i in idx]

    preds = read_and_decode(read, decode_group, batches, 20, workers=workers, group=group)
    assert [p.text for p in preds] == [str(i) for i in range(20)]
    assert sorted(decoded) == list(range(20))
    if workers > 1:
        assert threading.main_thread().name not in threads
