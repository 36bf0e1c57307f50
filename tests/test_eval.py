"""Evaluation: `crnn eval` rows on a labeled folder for a recognizer whose outputs are controlled, and greedy texts."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from crnn.charset import Charset
from crnn.prediction import Prediction
from crnn.preprocess import PreprocessConfig
from tests.word_images import render_word
from crnn_training import evaluate
from crnn_training.evaluate import evaluate_arrays, greedy_texts

# image name -> (label, what the fake model reads)
WORDS = {"0.png": ("Hello", "hello"), "1.png": ("World", "World"), "2.png": ("cat", "cut"), "3.png": ("SALE!", "sale")}


class FakeRecognizer:
    """Reads each image as the text planted for it (looked up by image width, unique per word here)."""

    def __init__(self, answers: dict[int, str]) -> None:
        self.charset, self.preprocess, self.answers = Charset(), PreprocessConfig(width_bucket=1), answers

    def recognize_prepared(self, arrays, batch_size=64, decoder="greedy", beam_width=10):  # noqa: ANN001
        return [Prediction(self.answers[a.shape[1]], 0.5) for a in arrays]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "bench"
    d.mkdir()
    for name, (label, _) in WORDS.items():
        cv2.imwrite(str(d / name), render_word(label))
    (d / "bad.png").write_bytes(b"\x89PNG broken")
    lines = [f"{n}\t{label}" for n, (label, _) in WORDS.items()] + ["bad.png\tbad", "gone.png\tgone", "0.png\tcafé"]
    (d / "labels.tsv").write_text("\n".join(lines) + "\n")
    return d


def test_crnn_eval_rows_json_and_errors(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    pre = PreprocessConfig(width_bucket=1)  # exact widths, so each word has its own
    from crnn.preprocess import prepare

    answers = {prepare(folder / n, pre).shape[1]: read for n, (_, read) in WORDS.items()}
    assert len(answers) == len(WORDS)
    import crnn.recognizer

    monkeypatch.setattr(crnn.recognizer.Recognizer, "from_checkpoint",
                        classmethod(lambda cls, *a, **k: FakeRecognizer(answers)))
    errors = tmp_path / "errors.tsv"
    assert evaluate.main(["--data", str(folder), "--json", "--errors", str(errors)]) == 0
    row = json.loads(capsys.readouterr().out)["results"][0]
    assert row["count"] == 4 and row["skipped"] == 3
    assert row["word_accuracy_protocol"] == pytest.approx(3 / 4)  # hello, World, sale! all match; cut does not
    assert row["word_accuracy_case"] == pytest.approx(1 / 4)
    # CER: Hello->hello 1, cat->cut 1, SALE!->sale 5 edits over 5+5+3+5 target characters
    assert row["cer"] == pytest.approx(7 / 18)
    lines = errors.read_text().splitlines()
    assert lines[0] == "path\ttarget\tprediction\tconfidence" and len(lines) == 4
    assert any(line.endswith("2.png\tcat\tcut\t0.5000") for line in lines)

    assert row["ece"] == pytest.approx(0.25)  # every answer 50% sure, a quarter exactly right

    assert evaluate.main(["--data", str(folder), "--json", "--calibration"]) == 0
    row = json.loads(capsys.readouterr().out)["results"][0]
    assert row["calibration"] == [{"low": 0.5, "high": 0.6, "count": 4, "mean_confidence": 0.5, "accuracy": 0.25}]

    assert evaluate.main(["--data", str(folder), "--calibration"]) == 0
    table = capsys.readouterr().out
    assert "bench" in table and "75.00%" in table and "25.00%" in table and " 0.250 " in table
    assert "[0.5, 0.6)       4   0.500   0.250" in table


def test_crnn_eval_bad_weights_exit_2(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate.main(["--weights", str(tmp_path / "none.safetensors"), "--data", str(folder)]) == 2
    assert "not found" in capsys.readouterr().err


def test_greedy_texts_collapse_and_lengths() -> None:
    cs = Charset("ab")
    path = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 2], [2, 0, 2, 1, 1, 1, 1, 1]])
    lp = torch.nn.functional.one_hot(path, 3).float().log_softmax(-1)
    assert greedy_texts(lp, torch.tensor([8, 4]), cs) == ["aabb", "bba"]


class PlantedModel(torch.nn.Module):
    """Emits one-hot frames spelling 'ab' for narrow images and 'ba' for wide ones."""

    def forward(self, images: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        b, t = images.shape[0], images.shape[-1] // 4
        ids = torch.zeros(b, t, dtype=torch.long)
        for i, n in enumerate(lengths.tolist()):
            ids[i, :2] = torch.tensor([1, 2]) if n < 20 else torch.tensor([2, 1])
        return torch.nn.functional.one_hot(ids, 3).float().log_softmax(-1)


def test_evaluate_arrays_with_planted_outputs() -> None:
    arrays = [np.zeros((32, w), np.float32) for w in (40, 200, 60, 300)]
    m = evaluate_arrays(PlantedModel(), arrays, ["ab", "ba", "ab", "ab"], Charset("ab"), PreprocessConfig(), batch_size=2)
    assert m.count == 4 and m.word_accuracy_case == pytest.approx(3 / 4) and m.cer == pytest.approx(2 / 8)
