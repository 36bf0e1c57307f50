"""`crnn eval --photos` (crnn_training.evaluate_photos): detection and end-to-end P/R/F on a photo folder with word
polygons, --limit, the table and the JSON, and its usage errors (a fake detector that boxes the ink of a line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from crnn.detection.word_split import SPACE_PROB
from crnn_training.evaluate import main
from tests.photo_fakes import FAKE, line_photo_with_boxes

LINES = [["OPEN", "DAILY"], ["HELLO", "WORLD"]]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two photos of one line of two words each, plus a don't-care word (###) that nothing needs to find."""
    d = tmp_path_factory.mktemp("photos")
    (d / "img").mkdir()
    with open(d / "annotations.jsonl", "w") as f:
        for i, words in enumerate(LINES):
            photo, boxes = line_photo_with_boxes(words)
            Image.fromarray(photo).save(d / "img" / f"{i}.png")
            truth = [{"polygon": b, "text": w} for b, w in zip(boxes, words)]
            truth.append({"box": [0, 0, 10, 10], "text": "###"})
            f.write(json.dumps({"image": f"img/{i}.png", "words": truth}) + "\n")
    return d


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--detector", FAKE, "--decoder", "greedy"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("limit, photos", [(0, 2), (1, 1)])
def test_words_of_the_ctc_split_are_found_and_read(folder: Path, capsys, limit: int, photos: int) -> None:
    code, out, _ = run(capsys, "--photos", str(folder), "--json", "--limit", str(limit))
    assert code == 0
    (r,) = json.loads(out)["results"]
    assert r["photos"] == photos and r["failed"] == 0 and r["words_read"] == 2 * photos
    words, lines = r["scores"]["words"], r["scores"]["lines"]
    assert words["detection"] == {"precision": 100.0, "recall": 100.0, "f": 100.0}
    assert words["end_to_end"]["f"] == 100.0
    assert words["truths"] == 2 * photos  # the ### words are not counted
    assert lines["detection"]["recall"] == 0.0  # a two-word line box matches neither word (IoU < 0.5)
    # The CTC split puts back dropped spaces by default; the same split without them is scored beside it.
    assert r["space_prob"] == SPACE_PROB and r["scores"]["words_read_spaces"]["end_to_end"]["f"] == 100.0


def test_table(folder: Path, capsys) -> None:
    code, out, _ = run(capsys, "--photos", str(folder))
    assert code == 0
    assert "2 photos (0 unreadable), 2 lines, 4 words read" in out
    row = next(line for line in out.splitlines() if "CTC split" in line)
    assert row.split()[-6:] == ["100.0"] * 6
    row = next(line for line in out.splitlines() if "CTC, read spaces" in line)
    assert row.split()[-6:] == ["100.0"] * 6


@pytest.mark.parametrize("argv, message", [
    ([], "give --data DIR (labeled crops) or --photos DIR"),
    (["--photos", "P", "--data", "D"], "not both"),
    (["--photos", "P", "--lexicon", "words.txt"], "--lexicon: not options of --photos"),
    (["--photos", "P", "--holdout", "0.1"], "--holdout: not options of --photos"),
    (["--photos", "P", "--min-confidence", "2"], "must be in [0, 1]"),
    (["--photos", "/no/such/folder"], "has no annotations.jsonl"),
])
def test_usage_errors_exit_2_with_one_line(capsys, argv: list[str], message: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["default", "real"])
def test_model_evaluates_the_named_shipped_model(folder: Path, capsys, monkeypatch, name: str) -> None:
    import crnn.kinds.loading as loading

    chosen: list[str | None] = []
    load = loading.load_recognizer

    def spy(*args, **kwargs):
        chosen.append(kwargs.get("model"))
        return load(*args, **kwargs)

    monkeypatch.setattr(loading, "load_recognizer", spy)
    code, out, _ = run(capsys, "--photos", str(folder), "--json", "--model", name)
    assert code == 0 and chosen == [name] and json.loads(out)["model"] == name
