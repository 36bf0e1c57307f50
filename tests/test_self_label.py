"""`crnn self-label`: the threshold is honoured, the output is a labeled folder `crnn train` and `crnn eval` read,
--calibrate picks the lowest threshold that reaches the target precision on labeled crops."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from crnn.charset import Charset
from crnn.io.labeled_folder import LabeledFolder
from crnn.prediction import Prediction
from tests.tiny_models import tiny_checkpoint
from tests.word_images import render_word
from crnn_training import self_label
from crnn_training.holdout import in_part

TINY = str(Path(__file__).resolve().parent.parent / "configs" / "tiny.yaml")

# image name -> (true text, what the fake model reads, its confidence)
CROPS = {
    "a.png": ("house", "house", 0.97),
    "sub/b.png": ("Tree", "tree", 0.81),
    "c.jpg": ("moon", "mood", 0.62),
    "d.png": ("SALE", "SALE", 0.40),
    "e.png": ("cat", "", 0.95),  # an empty reading is never a label
}


class FakeRecognizer:
    """Reads each crop as the text planted for its file name, with the planted confidence."""

    charset = Charset()

    def recognize(self, images, batch_size=64, decoder="lm", errors="raise", **kw):  # noqa: ANN001, ANN003
        out = []
        for path in images:
            rel = Path(path).as_posix().split("/crops/", 1)[-1]
            _, text, conf = CROPS[rel]
            out.append(Prediction(text, conf))
        return out


@pytest.fixture
def crops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import crnn.kinds.loading

    root = tmp_path / "crops"
    for rel, (truth, _, _) in CROPS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), render_word(truth))
    (root / "notes.txt").write_text("not an image")
    monkeypatch.setattr(crnn.kinds.loading, "load_recognizer", lambda *a, **k: FakeRecognizer())
    return root


@pytest.mark.parametrize("threshold, kept", [(0.0, {"a.png", "sub/b.png", "c.jpg", "d.png"}),
                                             (0.6, {"a.png", "sub/b.png", "c.jpg"}), (0.9, {"a.png"}),
                                             (0.99, set())])
def test_readings_at_or_above_the_threshold_become_labels(crops: Path, tmp_path: Path, threshold: float,
                                                          kept: set[str]) -> None:
    out = tmp_path / "labeled"
    assert self_label.main([str(crops), "--out", str(out), "--threshold", str(threshold)]) == 0
    folder = LabeledFolder.read(out, Charset(), check_files=True)
    assert not folder.problems and {rel for rel, _ in folder.items} == kept
    assert all(text == CROPS[rel][1] for rel, text in folder.items)  # the reading, not the hidden truth
    assert all((out / rel).read_bytes() == (crops / rel).read_bytes() for rel in kept)  # copies of the crops
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.*")
                  if p.name not in ("labels.tsv", "readings.tsv", "self_label.json")) == sorted(kept)
    readings = (out / "readings.tsv").read_text().splitlines()
    assert len(readings) == 1 + len(CROPS)  # every reading, kept or not, for review
    summary = json.loads((out / "self_label.json").read_text())
    assert summary["threshold"] == threshold and summary["kept"] == len(kept) and summary["read"] == len(CROPS)


def test_the_holdout_leaves_out_the_held_out_crops(crops: Path, tmp_path: Path) -> None:
    out = tmp_path / "labeled"
    assert self_label.main([str(crops), "--out", str(out), "--threshold", "0", "--holdout", "0.5"]) == 0
    read = [line.split("\t")[0] for line in (out / "readings.tsv").read_text().splitlines()[1:]]
    assert read and sorted(read) == sorted(r for r in CROPS if in_part(r, 0.5, "train"))


def test_output_trains_and_evaluates(crops: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "labeled"
    assert self_label.main([str(crops), "--out", str(out), "--threshold", "0.5"]) == 0
    monkeypatch.undo()  # the real recognizer again for crnn eval
    from crnn_training.evaluate import main as eval_main
    from crnn_training.train import main as train_main

    run = tmp_path / "run"
    assert train_main(["--config", TINY, f"out_dir={run}", "train.max_steps=3", "train.eval_every=3",
                       "val.synth_size=8",
                       f"data.sources=[{{type: folder, path: {out}, augment: real}}]"]) == 0
    assert (run / "best.safetensors").is_file()
    weights = tiny_checkpoint(tmp_path / "tiny.safetensors")
    assert eval_main(["--weights", str(weights), "--backend", "torch", "--decoder", "greedy", "--data", str(out),
                      "--json"]) == 0


def test_calibrate_picks_the_lowest_threshold_reaching_the_target(crops: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    labeled = tmp_path / "labeled_truth"
    labeled.mkdir()
    for rel, (truth, _, _) in CROPS.items():
        (labeled / rel).parent.mkdir(parents=True, exist_ok=True)
        (labeled / rel).write_bytes((crops / rel).read_bytes())
    (labeled / "labels.tsv").write_text("".join(f"{rel}\t{t}\n" for rel, (t, _, _) in CROPS.items()))
    # Fake readings are looked up under '/crops/': mirror the folder name.
    calib = tmp_path / "c" / "crops"
    calib.parent.mkdir()
    labeled.rename(calib)
    # Ranked by confidence: house ok (0.97), '' wrong (0.95), tree ok nocase (0.81), mood wrong, SALE ok.
    assert self_label.main(["--calibrate", str(calib), "--target-precision", "0.66"]) == 0
    assert float(capsys.readouterr().out) == pytest.approx(0.81)  # 2 of 3 kept right
    assert self_label.main(["--calibrate", str(calib), "--target-precision", "0.66", "--match", "exact"]) == 0
    assert float(capsys.readouterr().out) == pytest.approx(0.97)  # 'tree' is not 'Tree' now
    assert self_label.main(["--calibrate", str(calib), "--target-precision", "0.99", "--match", "exact"]) == 0
    out = tmp_path / "auto"
    assert self_label.main([str(crops), "--out", str(out), "--calibrate", str(calib), "--target-precision", "0.66"]) == 0
    assert {rel for rel, _ in LabeledFolder.read(out).items} == {"a.png", "sub/b.png"}


@pytest.mark.parametrize("confidences, correct, target, threshold, kept", [
    ([0.9, 0.8, 0.7, 0.6], [True, True, False, True], 0.75, 0.6, 4),  # a dip at 0.7, yet 3 of 4 overall
    ([0.9, 0.8, 0.7, 0.6], [True, True, False, False], 0.75, 0.8, 2),
    ([0.9, 0.9, 0.5], [True, False, True], 0.6, 0.5, 3),
    ([0.9, 0.9, 0.5], [True, False, False], 0.6, None, 0),  # ties share one threshold: 1 of 2 at 0.9 is too few
])
def test_choose_threshold(confidences: list[float], correct: list[bool], target: float, threshold: float | None,
                          kept: int) -> None:
    c = self_label.choose_threshold(confidences, correct, target)
    assert c.kept == kept and (threshold is None and c.threshold > 1 or c.threshold == threshold)


@pytest.mark.parametrize("args, message", [
    (["IMG", "--out", "OUT"], "give --threshold"),
    (["IMG", "--out", "OUT", "--threshold", "0.5", "--calibrate", "IMG"], "give one"),
    (["IMG", "--threshold", "0.5"], "go together"),
    (["IMG", "--out", "OUT", "--threshold", "1.5"], "must be in [0, 1]"),
    (["IMG", "--out", "IMG", "--threshold", "0.5"], "another folder"),
    (["IMG", "--out", "OUT", "--calibrate", "OUT"], "not a labeled folder"),
    (["NOPE", "--out", "OUT", "--threshold", "0.5"], "no such folder"),
])
def test_bad_options_are_one_line_exit_2(crops: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         args: list[str], message: str) -> None:
    subst = {"IMG": str(crops), "OUT": str(tmp_path / "out"), "NOPE": str(tmp_path / "nope")}
    assert self_label.main([subst.get(a, a) for a in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_an_existing_labeled_folder_needs_force(crops: Path, tmp_path: Path) -> None:
    out = tmp_path / "labeled"
    assert self_label.main([str(crops), "--out", str(out), "--threshold", "0.9"]) == 0
    assert self_label.main([str(crops), "--out", str(out), "--threshold", "0.5"]) == 2
    assert self_label.main([str(crops), "--out", str(out), "--threshold", "0.5", "--force"]) == 0
    assert len(LabeledFolder.read(out).items) == 3
