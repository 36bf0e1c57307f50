"""The segmented-character baseline: segmenter, model, checkpoint, recognizer, crnn eval / ocr, training script."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from crnn.models.baseline.model import BaselineConfig, SegCharModel, collate_crops, crops_from_boxes
from crnn.reading.baseline_recognizer import BaselineRecognizer, word_crops
from crnn.models.baseline.segment import SegmentConfig, binarize, box_iou, segment, segmentation_stats, text_is_dark
from crnn.charset import Charset
from crnn.decoding.lexicon import Lexicon
from crnn.checkpoints.checkpoint import Checkpoint, read_header
from crnn.kinds.loading import load_checkpoint, save_checkpoint
from crnn.errors import CheckpointError
from crnn.models.crnn import CRNN, ModelConfig
from crnn.io.preprocess import PreprocessConfig, normalize
from crnn.reading.precision import native_bf16
from crnn.reading.recognizer import Recognizer
from crnn.kinds.loading import load_recognizer
from tests.word_images import render_word

CHARSET = Charset()


def spaced_word(text: str, gap: int = 4, invert: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A 32-px-high image of ``text`` drawn letter by letter ``gap`` px apart, and its true boxes (N, 4)."""
    pieces, boxes, x = [], [], 0
    for c in text:
        img = render_word(c, invert=invert)
        ink = np.nonzero((img > 127 if invert else img < 128).any(axis=0))[0]
        img = img[:, ink[0] : ink[-1] + 1]
        pieces.append(img)
        rows = np.nonzero((img > 127 if invert else img < 128).any(axis=1))[0]
        boxes.append([x + 6, rows[0], x + 6 + img.shape[1], rows[-1] + 1])
        pieces.append(np.full((32, gap), 0 if invert else 255, np.uint8))
        x += img.shape[1] + gap
    margin = np.full((32, 6), 0 if invert else 255, np.uint8)
    return np.hstack([margin, *pieces[:-1], margin]), np.array(boxes, np.float32)


# ---------------------------------------------------------------------------------------------
# segmenter
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("invert", [False, True])
def test_polarity_and_binarisation(invert: bool) -> None:
    img = render_word("Hello", invert=invert)
    assert text_is_dark(img) is (not invert)
    for method in ("otsu", "sauvola", "both"):
        mask = binarize(img, SegmentConfig(binarize=method))
        ink = img > 127 if invert else img < 128
        assert (mask & ink).sum() > 0.7 * ink.sum()  # the text is found ...
        assert mask.mean() < 0.4  # ... and the background is not


@pytest.mark.parametrize("invert", [False, True])
@pytest.mark.parametrize("text", ["word", "Tijd", "HOUSE", "a1b2"])
def test_one_box_per_character_in_order_for_spaced_text(text: str, invert: bool) -> None:
    img, truth = spaced_word(text, invert=invert)
    boxes = segment(img)
    assert boxes.shape == (len(text), 4) and boxes.dtype == np.float32
    assert np.all(np.diff(boxes[:, 0]) > 0)  # left to right
    assert np.all(np.diag(box_iou(boxes, truth)) > 0.8)  # the i and j dots are in their letters' boxes


def test_dot_of_i_and_j_is_merged() -> None:
    for c in "ij":
        boxes = segment(render_word(c))
        assert len(boxes) == 1
        assert boxes[0, 1] < 8  # the box reaches up to the dot


def test_touching_characters_are_split_at_the_projection_minimum() -> None:
    img, truth = spaced_word("nh", gap=2)
    gap0, gap1 = int(truth[0, 2]), int(truth[1, 0])
    bottom = int(truth[0, 3]) - 1
    img[bottom, gap0 - 1 : gap1 + 1] = 0  # a one-pixel bridge along the baseline: "nh" touch
    n, _ = cv2.connectedComponents((img < 128).astype(np.uint8))
    assert n - 1 == 1
    boxes = segment(img)
    assert len(boxes) == 2
    # The cut falls in the bridge, where the column sums are smallest.
    assert gap0 - 1 <= boxes[0, 2] <= gap1 + 1 and gap0 - 1 <= boxes[1, 0] <= gap1 + 1
    assert np.all(np.diag(box_iou(boxes, truth)) > 0.8)


def test_segmentation_stats() -> None:
    truth = [np.array([[0, 0, 10, 10], [12, 0, 20, 10]], np.float32)]
    assert segmentation_stats([truth[0]], truth) == {"words": 1.0, "count_match": 1.0, "exact": 1.0, "mean_iou": 1.0}
    merged = [np.array([[0, 0, 20, 10]], np.float32)]
    s = segmentation_stats(merged, truth)
    assert s["count_match"] == 0.0 and s["exact"] == 0.0 and 0.3 < s["mean_iou"] < 0.6
    assert segment(np.full((32, 40), 200, np.uint8)).shape == (0, 4)


# ---------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------


def test_crops_keep_aspect_and_full_height() -> None:
    img = np.full((32, 60), 255, np.uint8)
    img[4:28, 10:14] = 0  # a thin bar
    crops = crops_from_boxes(img, np.array([[10, 4, 14, 28], [0, 0, 60, 32]], np.float32), 32)
    assert crops.shape == (2, 32, 32) and crops.dtype == np.float32
    assert (crops[0] < 128).any(axis=0).sum() <= 6  # still thin, centred on background
    assert crops[0][0, 0] == 255


def test_model_shapes_padding_and_batch_independence() -> None:
    torch.manual_seed(0)
    model = SegCharModel(BaselineConfig(num_classes=CHARSET.num_classes)).eval()
    crops, lengths = collate_crops([np.random.rand(5, 32, 32).astype(np.float32),
                                    np.random.rand(3, 32, 32).astype(np.float32)], 32)
    assert crops.shape == (2, 5, 1, 32, 32) and lengths.tolist() == [5, 3]
    logits = model(crops, lengths)
    assert logits.shape == (2, 5, CHARSET.num_classes)
    assert torch.all(logits[1, 3:] == 0)
    alone = model(crops[1:, :3], lengths[1:])
    torch.testing.assert_close(alone[0], logits[1, :3], atol=1e-5, rtol=1e-4)
    assert BaselineConfig.from_dict(model.config.to_dict()) == model.config


def _words() -> tuple[list[np.ndarray], list[str], list[np.ndarray]]:
    # Prepared arrays of well-spaced words with their true boxes scaled to the prepared width.
    arrays, texts, boxes = [], [], []
    for text in ["cab", "Bad", "dice", "jog"]:
        img, truth = spaced_word(text, gap=5)
        arr = normalize(img, PreprocessConfig())
        sx = arr.shape[1] / img.shape[1]
        arrays.append(arr)
        texts.append(text)
        boxes.append(truth * np.array([sx, 1, sx, 1], np.float32))
    return arrays, texts, boxes


@pytest.fixture(scope="module")
def overfit_model() -> SegCharModel:
    """A baseline trained on four words with their true boxes until it knows them."""
    torch.manual_seed(0)
    model = SegCharModel(BaselineConfig(num_classes=CHARSET.num_classes, channels=(16, 32, 64), embed_dim=64,
                                        hidden_size=64, dropout=0.0))
    arrays, texts, boxes = _words()
    crops, lengths = collate_crops([word_crops(a, b, 32) for a, b in zip(arrays, boxes)], 32)
    targets = torch.zeros(len(texts), crops.shape[1], dtype=torch.long)
    for i, t in enumerate(texts):
        targets[i, : len(t)] = torch.tensor(CHARSET.encode(t))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(80):
        loss = SegCharModel.loss(model(crops, lengths), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.losses = losses  # type: ignore[attr-defined]
    return model.eval()


def test_tiny_overfit_loss_falls_and_decodes_labels(overfit_model: SegCharModel) -> None:
    losses = overfit_model.losses  # type: ignore[attr-defined]
    assert losses[-1] < 0.1 * losses[0]
    arrays, texts, _ = _words()
    rec = BaselineRecognizer.from_model(overfit_model, CHARSET)
    preds = rec.recognize_prepared(arrays, batch_size=3)  # end to end: the automatic segmenter's boxes
    assert [p.text for p in preds] == texts
    for p in preds:
        assert len(p.char_confidences) == len(p.text)
        assert p.confidence == pytest.approx(float(np.prod(p.char_confidences)), rel=1e-4)
    lex = rec.recognize_prepared(arrays[:1], lexicon=["cab", "cub", "dice"])
    assert lex[0].text == "cab" and lex[0].in_lexicon is True
    # Case-insensitive: an upper-case list still matches, and the image's case comes back.
    assert rec.recognize_prepared(arrays[:1], lexicon=["CAB", "CUB", "DICE"])[0].text == "cab"
    assert rec.recognize_prepared(arrays[:1], lexicon=Lexicon(["CAB", "dice"], CHARSET, case="keep"))[0].text == "CAB"
    # No word of the segment count: the reading stands, flagged; per-image lexicons apply image by image.
    assert rec.recognize_prepared(arrays[:1], lexicon=["dice"])[0].in_lexicon is False
    per_image = rec.recognize_prepared(arrays[:2], lexicon=[Lexicon(["CUB"], CHARSET), None])
    assert per_image[0].text == "cub" and per_image[1].text == texts[1] and per_image[1].in_lexicon is None
    assert rec.recognize_prepared([normalize(np.full((32, 40), 255, np.uint8), PreprocessConfig())])[0].text == ""


# ---------------------------------------------------------------------------------------------
# checkpoint, recognizer factory, crnn eval / ocr
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def baseline_ckpt(tmp_path: Path, overfit_model: SegCharModel) -> Path:
    seg = SegmentConfig(split_ratio=1.3)
    return save_checkpoint(tmp_path / "baseline.safetensors", overfit_model, CHARSET,
                           metadata={"note": "test", "segmenter": seg.to_dict()})


def test_checkpoint_round_trip(baseline_ckpt: Path, overfit_model: SegCharModel, tmp_path: Path) -> None:
    assert read_header(baseline_ckpt)["model_type"] == "baseline"
    ckpt = load_checkpoint(baseline_ckpt)
    assert ckpt.model_type == "baseline" and isinstance(ckpt.model, SegCharModel)
    assert ckpt.model.config == overfit_model.config and ckpt.charset == CHARSET
    assert ckpt.metadata["note"] == "test" and ckpt.metadata["segmenter"]["split_ratio"] == 1.3
    for k, v in overfit_model.state_dict().items():
        torch.testing.assert_close(ckpt.model.state_dict()[k], v)
    with pytest.raises(CheckpointError, match="not a CRNN"):
        load_checkpoint(baseline_ckpt, kind="crnn")
    with pytest.raises(CheckpointError, match="not a CRNN"):
        Recognizer(baseline_ckpt)
    # One loader reads every kind; a kind can be demanded.
    crnn_path = save_checkpoint(tmp_path / "crnn.safetensors", CRNN(ModelConfig(hidden_size=16, num_layers=1)), CHARSET)
    assert isinstance(load_checkpoint(crnn_path).model, CRNN) and load_checkpoint(crnn_path).model_type == "crnn"
    with pytest.raises(CheckpointError, match="not the segmented-character baseline"):
        load_checkpoint(crnn_path, kind="baseline")
    with pytest.raises(CheckpointError, match="not the segmented-character baseline"):
        BaselineRecognizer(crnn_path)
    assert isinstance(load_recognizer(crnn_path), Recognizer)


def test_recognizer_factory_eval_and_ocr(baseline_ckpt: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    rec = load_recognizer(baseline_ckpt, threads=1)
    assert isinstance(rec, BaselineRecognizer) and rec.segmenter.split_ratio == 1.3
    folder = tmp_path / "bench"
    folder.mkdir()
    labels = []
    for i, text in enumerate(["cab", "Bad", "dice", "jog"]):
        cv2.imwrite(str(folder / f"{i}.png"), spaced_word(text, gap=5)[0])
        labels.append(f"{i}.png\t{text}")
    (folder / "labels.tsv").write_text("\n".join(labels) + "\n")
    assert rec.recognize([str(folder / "0.png")])[0].text == "cab"

    from crnn_training import evaluate

    assert evaluate.main(["--weights", str(baseline_ckpt), "--data", str(folder), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["results"][0]
    assert row["count"] == 4 and row["word_accuracy_case"] == 1.0

    from crnn.commands import ocr

    assert ocr.main([str(folder / "1.png"), "--weights", str(baseline_ckpt), "--format", "jsonl"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["text"] == "Bad"


NATIVE_BF16 = native_bf16(torch.device("cpu"))


@pytest.mark.parametrize("words", ["three", "one"])
@pytest.mark.parametrize("precision", [
    "fp32",
    pytest.param("bf16", marks=pytest.mark.skipif(not NATIVE_BF16, reason="this CPU has no native bf16")),
])
def test_recognizer_reads_a_word_alone_as_in_a_batch(overfit_model: SegCharModel, precision: str, words: str) -> None:
    rec = BaselineRecognizer(Checkpoint(overfit_model, CHARSET, PreprocessConfig(), {}, "baseline"), precision=precision)
    # Words with as many segments, so that a batch adds no padding that could move a result; one-letter
    # words too, whose lone crop is a one-row product (the case that needs a pair in the CRNN's bf16).
    texts = ("cab", "jog", "Bad") if words == "three" else ("c", "j", "B")
    arrays = [rec.prepare(spaced_word(text, gap=5)[0]) for text in texts]
    together = rec.recognize_prepared(arrays, batch_size=8)
    for array, batched in zip(arrays, together):
        alone = rec.recognize_prepared([array])[0]
        assert alone.text == batched.text
        if precision == "bf16":
            assert alone.confidence == batched.confidence
        else:  # fp32 kernels differ by batch size in the last bits
            assert abs(alone.confidence - batched.confidence) < 1e-5


@pytest.mark.skipif(NATIVE_BF16, reason="this CPU has native bf16")
def test_bf16_without_native_bf16_is_a_clear_error(overfit_model: SegCharModel) -> None:
    with pytest.raises(ValueError, match="needs a CPU with native bf16"):
        BaselineRecognizer(Checkpoint(overfit_model, CHARSET, PreprocessConfig(), {}, "baseline"), precision="bf16")


def test_train_baseline_smoke(tmp_path: Path) -> None:
    from crnn_training import train_baseline

    rec = train_baseline.main(["--out", str(tmp_path), "--max-steps", "3", "--batch-size", "4", "--val-size", "6",
                               "--workers", "0", "--hidden", "16"])
    assert rec["step"] == 3 and 0.0 <= rec["e2e_word_accuracy"] <= 1.0 and 0.0 <= rec["seg_count_match"] <= 1.0
    ckpt = load_checkpoint(tmp_path / "best.safetensors")
    assert ckpt.model_type == "baseline" and "segmenter_stats" in ckpt.metadata
    assert (tmp_path / "log.jsonl").read_text().count("\n") == 3  # segmenter, start, one evaluation


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--config", "configs/baseline.yaml", "--max-steps", "3", "hidden=16"], {"max_steps": 3, "hidden": 16, "minutes": 10.0}),
        (["--out", "x", "--minutes", "0", "--max-steps", "5", "--synth", '{"lexicon_size": 50}'],
         {"out": "x", "minutes": 0.0, "synth.lexicon_size": 50}),
        (["--batch-size", "8", "batch_size=4", "synth.max_length=6"], {"batch_size": 4, "synth.max_length": 6}),
    ],
)
def test_train_baseline_config_file_flags_and_overrides(argv: list[str], expected: dict) -> None:
    from crnn_training.train_baseline import load_config

    config = load_config(argv)
    for key, value in expected.items():
        obj = config
        for part in key.split("."):
            obj = getattr(obj, part)
        assert obj == value, key


@pytest.mark.parametrize("argv", [["--minutes", "0"], ["bogus=1"], ["--synth", "[1]"], ["synth.bogus=1"], ["cell=rnn"]])
def test_train_baseline_bad_settings_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from crnn_training.train_baseline import load_config

    with pytest.raises(SystemExit) as e:
        load_config(argv)
    assert e.value.code == 2 and "error" in capsys.readouterr().err


def test_train_baseline_refuses_a_run_folder_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crnn_training import train_baseline

    argv = ["--out", str(tmp_path), "--max-steps", "2", "--batch-size", "4", "--val-size", "4", "--workers", "0",
            "--hidden", "16", "--device", "cpu"]
    (tmp_path / "log.jsonl").write_text('{"event": "old"}\n')
    with pytest.raises(SystemExit) as e:
        train_baseline.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "holds a run (log.jsonl)" in err and "--force" in err
    assert (tmp_path / "log.jsonl").read_text() == '{"event": "old"}\n'
    rec = train_baseline.main([*argv, "--force"])
    assert rec["step"] == 2 and "old" not in (tmp_path / "log.jsonl").read_text()  # the new run's log alone


@pytest.mark.parametrize("override", ["warmup_steps=-1", "val_size=0", "eval_every=0", "threads=0", "device=gpu"])
def test_train_baseline_refuses_values_out_of_range(override: str, capsys: pytest.CaptureFixture[str]) -> None:
    from crnn_training.train_baseline import load_config

    with pytest.raises(SystemExit):
        load_config([override])
    assert f"'{override.split('=')[0]}'" in capsys.readouterr().err
