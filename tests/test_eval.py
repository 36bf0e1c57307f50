"""Evaluation: `crnn eval` rows for a recognizer whose outputs are controlled; validation reads what the Recognizer reads."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
import torch

from crnn.charset import Charset
from crnn.prediction import Prediction
from crnn.io.preprocess import PreprocessConfig
from tests.word_images import render_word
from crnn_training import evaluate

TINY = str(Path(__file__).resolve().parent.parent / "configs" / "tiny.yaml")

# image name -> (label, what the fake model reads)
WORDS = {"0.png": ("Hello", "hello"), "1.png": ("World", "World"), "2.png": ("cat", "cut"), "3.png": ("SALE!", "sale")}


class FakeRecognizer:
    """Reads each image as the text planted for it (looked up by image width, unique per word here)."""

    def __init__(self, answers: dict[int, str]) -> None:
        self.charset, self.preprocess, self.answers = Charset(), PreprocessConfig(width_bucket=1), answers

    def recognize_prepared(self, arrays, batch_size=64, decoder="greedy", beam_width=10, lexicon=None,  # noqa: ANN001
                           lm_weight=None):  # noqa: ANN001
        self.lexicon = lexicon
        if isinstance(lexicon, list):  # per image: answer the first lexicon word, flagged
            return [Prediction(lex.words[0], 0.5, (), True) if lex is not None else
                    Prediction(self.answers[a.shape[1]], 0.5) for a, lex in zip(arrays, lexicon)]
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
    from crnn.io.preprocess import prepare

    answers = {prepare(folder / n, pre).shape[1]: read for n, (_, read) in WORDS.items()}
    assert len(answers) == len(WORDS)
    import crnn.kinds.loading

    # crnn eval loads whatever kind the weights hold through load_recognizer: plant the fake there.
    monkeypatch.setattr(crnn.kinds.loading, "load_recognizer", lambda *a, **k: FakeRecognizer(answers))
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


def _task(batch_size: int):  # noqa: ANN202
    """A CTCTask of the tiny config around an untrained model, with one validation set of rendered words."""
    from crnn.models.crnn import CRNN, ModelConfig
    from crnn.io.preprocess import normalize
    from crnn_training.config import TrainConfig
    from crnn_training.train import CTCTask

    config = TrainConfig.from_yaml(TINY, [f"val.batch_size={batch_size}", "val.precision=fp32"])
    cs, pre = Charset(), PreprocessConfig(max_width=config.data.max_width)
    torch.manual_seed(0)
    model = CRNN(ModelConfig(num_classes=cs.num_classes, **config.model.to_dict())).train()
    task = CTCTask(config, model, cs, pre, torch.device("cpu"), None, None, None, 1, 0, 0, 1)
    words = ["a", "cat", "Hello", "window", "x1", "spacing", "OK!", "tree", "zebra", "ab"]
    arrays = [normalize(render_word(w), pre) for w in words]
    task.val_sets["synth"] = (arrays, words)
    return task, arrays


@pytest.mark.parametrize("batch_size", [1, 3, 256])
def test_validation_scores_exactly_what_the_recognizer_reads(batch_size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import crnn_training.train as train_module
    from crnn.reading.recognizer import Recognizer

    task, arrays = _task(batch_size)
    scored: list[list[str]] = []
    real = train_module.compute_metrics
    monkeypatch.setattr(train_module, "compute_metrics", lambda preds, texts: scored.append(preds) or real(preds, texts))
    for round_ in range(2):
        results = task.evaluate()
        assert task.model.training  # validation hands the model back in training mode
        rec = Recognizer.from_model(task.model, task.charset, task.preprocess, precision="fp32")
        expected = [p.text for p in rec.recognize_prepared(arrays, batch_size=batch_size, decoder="greedy")]
        assert scored[-1] == expected
        assert results["synth/count"] == len(arrays)
        with torch.no_grad():  # new weights: the next evaluation must read with them, not a stale copy
            task.model.classifier.bias.add_(torch.linspace(0, 3, task.model.classifier.bias.numel()))
    assert scored[0] != scored[1]


@pytest.mark.parametrize(
    ("device", "amp", "asked", "expected"),
    [("cuda", torch.bfloat16, "auto", "bf16"), ("cuda", torch.float16, "auto", "fp32"), ("cuda", None, "auto", "fp32"),
     ("cpu", None, "fp32", "fp32"), ("cuda", torch.bfloat16, "fp32", "fp32"), ("cpu", None, "mixed", "mixed")],
)
def test_validation_precision_follows_the_training_precision(device: str, amp: torch.dtype | None, asked: str,
                                                             expected: str) -> None:
    from crnn_training.config import TrainConfig
    from crnn_training.train import val_precision

    config = TrainConfig.from_yaml(TINY, [f"val.precision={asked}"])
    assert val_precision(config, torch.device(device), amp) == expected


@pytest.fixture
def fake(folder: Path, monkeypatch: pytest.MonkeyPatch) -> FakeRecognizer:
    from crnn.io.preprocess import prepare

    pre = PreprocessConfig(width_bucket=1)
    rec = FakeRecognizer({prepare(folder / n, pre).shape[1]: read for n, (_, read) in WORDS.items()})
    import crnn.kinds.loading

    monkeypatch.setattr(crnn.kinds.loading, "load_recognizer", lambda *a, **k: rec)
    return rec


def test_crnn_eval_per_image_lexicons(folder: Path, tmp_path: Path, fake: FakeRecognizer,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    lex = tmp_path / "lex.tsv"
    # 3.png has no line: read without a lexicon (and said so); ./2.png is the same path as 2.png.
    lex.write_text("0.png\tHELLO,help\n1.png\tWorld\n./2.png\tcat,cut\n")
    assert evaluate.main(["--data", str(folder), "--lexicons", str(lex), "--json"]) == 0
    out = capsys.readouterr()
    row = json.loads(out.out)["results"][0]
    assert [None if x is None else x.words for x in fake.lexicon] == [["HELLO", "help"], ["World"], ["cat", "cut"], None]
    assert row["word_accuracy_protocol"] == pytest.approx(1.0) and row["not_in_lexicon"] == 0
    assert "1 images" in out.err and "without a lexicon" in out.err


@pytest.mark.parametrize("bad", ["2.png cat", "2.png\t", "\tcat", "0.png\tagain"])
def test_crnn_eval_bad_lexicons_line_is_one_error_naming_the_line(folder: Path, tmp_path: Path, fake: FakeRecognizer,
                                                                  capsys: pytest.CaptureFixture[str], bad: str) -> None:
    lex = tmp_path / "lex.tsv"
    lex.write_text(f"0.png\tHELLO\n\n{bad}\n1.png\tWorld\n")
    assert evaluate.main(["--data", str(folder), "--lexicons", str(lex)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("crnn eval: error: ") and f"{lex}, line 3: " in err


def test_crnn_eval_lexicons_one_per_folder(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate.main(["--data", str(folder), "--data", str(folder), "--lexicons", "x.tsv"]) == 2
    assert "one --lexicons file per --data" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["missing/e.tsv", "a_folder"])
def test_crnn_eval_errors_path_that_cannot_be_written_fails_before_evaluating(
        folder: Path, tmp_path: Path, fake: FakeRecognizer, capsys: pytest.CaptureFixture[str], where: str) -> None:
    (tmp_path / "a_folder").mkdir()
    assert evaluate.main(["--data", str(folder), "--errors", str(tmp_path / where)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith(f"crnn eval: error: --errors {tmp_path / where}: ")
    assert not hasattr(fake, "lexicon")  # nothing was read


def test_crnn_eval_errors_file_that_fails_at_the_end_keeps_the_results_and_the_old_file(
        folder: Path, tmp_path: Path, fake: FakeRecognizer, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    errors = tmp_path / "errors.tsv"
    errors.write_text("the last run's\n")
    real = fake.recognize_prepared

    def then_a_folder_takes_its_place(*a, **k):  # noqa: ANN002, ANN003, ANN202
        errors.unlink()
        errors.mkdir()  # something the command must not replace appears meanwhile
        return real(*a, **k)

    monkeypatch.setattr(fake, "recognize_prepared", then_a_folder_takes_its_place)
    assert evaluate.main(["--data", str(folder), "--errors", str(errors)]) == 2
    out, err = capsys.readouterr()
    assert "bench" in out and "75.00%" in out  # the results table is printed all the same
    assert err.strip().endswith(f"crnn eval: error: --errors {errors}: is a folder, not a file")
    assert errors.is_dir() and not list(tmp_path.glob(".errors.tsv.*"))  # no temporary left beside it


def test_crnn_eval_reports_the_lexicon_words_it_drops(folder: Path, tmp_path: Path, fake: FakeRecognizer,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    words = tmp_path / "words.txt"
    words.write_text("Hello\nWorld\tx\ncafé\ncat\n", encoding="utf-8")
    assert evaluate.main(["--data", str(folder), "--lexicon", str(words)]) == 0
    err = capsys.readouterr().err
    assert f"crnn eval: warning: --lexicon {words}: 2 words dropped, 2 kept: " in err and "'World\\tx'" in err
    per_image = tmp_path / "lex.tsv"
    per_image.write_text("0.png\tHELLO,été\n1.png\tWorld,\n2.png\tHELLO,été\n", encoding="utf-8")
    assert evaluate.main(["--data", str(folder), "--lexicons", str(per_image)]) == 0
    err = capsys.readouterr().err
    assert err.count("warning") == 1  # once per file; 0.png and 2.png share one word list
    assert (f"crnn eval: warning: --lexicons {per_image}: 2 words dropped, 2 kept: 1 with characters the model "
            f"cannot read, e.g. 'été'; 1 empty or blank") in err
    tsv = tmp_path / "freq.txt"
    tsv.write_text("Hello\t10\nWorld\t9\n", encoding="utf-8")
    assert evaluate.main(["--data", str(folder), "--lexicon", str(tsv)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"lexicon {tsv} has no usable words: 2 with a tab" in err
