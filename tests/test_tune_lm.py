"""training/tune_lm.py: the grid on several folders' held-out parts, the mean over folders, the flat optimum, the
comparison with the reference pair and the outputs cache, with a recognizer whose per-frame outputs are planted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from crnn.charset import Charset
from crnn.io.preprocess import PreprocessConfig, prepare
from crnn_training import tune_lm
from crnn_training.holdout import holdout_key
from tests.word_images import render_word

# folder -> {image name: (label, what the planted network reads)}
FOLDERS = {
    "a": {"0.png": ("Hello", "hello"), "1.png": ("World", "World"), "2.png": ("cat", "cut"), "3.png": ("tea", "tea"),
          "4.png": ("SALE", "SALE"), "5.png": ("dog", "dig"), "6.png": ("x1", "x1"), "7.png": ("open", "open")},
    "b": {"0.png": ("STOP", "STOP"), "1.png": ("bus", "bas"), "2.png": ("Exit", "Exit"), "3.png": ("moon", "moon"),
          "4.png": ("parking", "parking"), "5.png": ("no", "on")},
}
HOLDOUT = 0.5


class PlantedRecognizer:
    """Outputs per-frame log-probabilities that spell the text planted for each image (looked up by its pixels)."""

    def __init__(self, answers: dict[bytes, str]) -> None:
        self.charset, self.preprocess, self.answers = Charset(), PreprocessConfig(), answers
        self.runs = 0
        self.loaded: tuple[tuple[Any, ...], dict[str, Any]] = ((), {})

    def batches(self, arrays: list[np.ndarray], batch_size: int) -> Any:
        """One batch of everything."""
        yield list(range(len(arrays)))

    def batch_log_probs(self, arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Each text's characters with a blank after each, 0.99 sure, padded with blanks."""
        self.runs += 1
        texts = [self.answers[a.tobytes()] for a in arrays]
        frames, classes = 2 * max(len(t) for t in texts) + 1, self.charset.num_classes
        lp = np.full((len(texts), frames, classes), np.log(0.01 / (classes - 1)), dtype=np.float32)
        for b, text in enumerate(texts):
            path = [c for i in self.charset.encode(text) for c in (i, 0)]
            path += [0] * (frames - len(path))
            lp[b, np.arange(frames), path] = np.log(0.99)
        return lp, np.full(len(texts), frames)


@pytest.fixture
def folders(tmp_path: Path) -> list[Path]:
    out = []
    for name, words in FOLDERS.items():
        d = tmp_path / name
        d.mkdir()
        for image, (label, _) in words.items():
            cv2.imwrite(str(d / image), render_word(label))
        (d / "labels.tsv").write_text("".join(f"{n}\t{label}\n" for n, (label, _) in words.items()))
        out.append(d)
    return out


@pytest.fixture
def planted(folders: list[Path], monkeypatch: pytest.MonkeyPatch) -> PlantedRecognizer:
    answers = {prepare(d / n, PreprocessConfig()).tobytes(): read
               for d in folders for n, (_, read) in FOLDERS[d.name].items()}
    assert len(answers) == sum(map(len, FOLDERS.values()))
    rec = PlantedRecognizer(answers)
    import crnn.kinds.loading

    def load(*args: Any, **kwargs: Any) -> PlantedRecognizer:
        rec.loaded = (args, kwargs)
        return rec

    monkeypatch.setattr(crnn.kinds.loading, "load_recognizer", load)
    return rec


def _held_out(name: str, fraction: float) -> list[tuple[str, str]]:
    return [pair for image, pair in FOLDERS[name].items() if holdout_key(image) < fraction]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    assert tune_lm.main(argv) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.mark.parametrize("holdout", [0.0, HOLDOUT])
def test_the_objective_is_the_mean_over_folders_of_their_held_out_parts(
        folders: list[Path], planted: PlantedRecognizer, holdout: float, capsys: pytest.CaptureFixture[str]) -> None:
    parts = [_held_out(d.name, holdout) if holdout else list(FOLDERS[d.name].values()) for d in folders]
    assert all(parts) and sum(map(len, parts)) < sum(map(len, FOLDERS.values())) or not holdout
    lines = _run([a for d in folders for a in ("--data", str(d))] + ["--holdout", str(holdout), "--alphas", "0", "0.3",
                  "--betas", "0", "1"], capsys)
    head, rows, last = lines[0], lines[1:-1], lines[-1]
    assert head["folders"] == [[str(d), len(p)] for d, p in zip(folders, parts)]
    # protocol with --holdout (real labels need not keep case), exact without
    assert head["objective"] == ("protocol" if holdout else "case")
    key = tune_lm.normalize_protocol if holdout else str
    per = [float(np.mean([key(label) == key(read) for label, read in p])) for p in parts]
    pooled = float(np.mean([key(label) == key(read) for p in parts for label, read in p]))
    assert len(rows) == 4
    for row in rows:  # planted outputs 99% sure: every pair reads the planted text
        assert row["folders"] == [round(x, 4) for x in per]
        assert row["objective"] == round(float(np.mean(per)), 4) and row["pooled"] == round(pooled, 4)
        assert row["vs_reference"] == [0, 0]
    assert last["reference"] == [0.35, 1.0] and last["best"]["alpha"] == 0.0 and last["best"]["beta"] == 0.0


def test_the_cache_keeps_the_outputs_and_refuses_other_images(
        folders: list[Path], planted: PlantedRecognizer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = str(tmp_path / "out.npz")
    args = ["--data", str(folders[0]), "--holdout", str(HOLDOUT), "--alphas", "0.3", "--betas", "1", "--cache", cache]
    first, again = _run(args, capsys), _run(args, capsys)
    for row in first + again:
        row.pop("ms_per_image", None)
        row.get("best", {}).pop("ms_per_image", None)
    assert again == first and planted.runs == 1  # the network ran once
    assert tune_lm.main(["--data", str(folders[1]), "--holdout", str(HOLDOUT), "--cache", cache]) == 2
    assert "holds the outputs of other images" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--holdout", "1"], "--holdout 1.0: must be in [0, 1)"),
    (["--holdout", "-0.1"], "--holdout -0.1: must be in [0, 1)"),
    (["--holdout", "0.001"], "no image to tune on in its held-out part"),
])
def test_refusals(folders: list[Path], planted: PlantedRecognizer, argv: list[str], message: str,
                  capsys: pytest.CaptureFixture[str]) -> None:
    assert tune_lm.main(["--data", str(folders[0]), *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("table, best", [
    # a lone peak at (1, 0) loses to the flat shoulder around (0, 2)
    ({(0, 0): 0.5, (0, 1): 0.8, (0, 2): 0.8, (1, 0): 0.95, (1, 1): 0.5, (1, 2): 0.8}, (0, 2)),
    ({(0, 0): 0.9, (0, 1): 0.9, (0, 2): 0.1, (1, 0): 0.9, (1, 1): 0.9, (1, 2): 0.1}, (0, 0)),
])
def test_flat_scores_average_each_pairs_grid_neighbours(table: dict[tuple[float, float], float],
                                                        best: tuple[float, float]) -> None:
    flat = tune_lm.flat_scores(table, [0, 1], [0, 1, 2])
    assert flat[0, 0] == pytest.approx(np.mean([table[0, 0], table[0, 1], table[1, 0], table[1, 1]]))
    assert flat[0, 1] == pytest.approx(np.mean(list(table.values())))
    assert max(flat, key=lambda k: (flat[k], -k[0], -k[1])) == best


def test_decode_all_matches_one_image_at_a_time() -> None:
    from crnn.decoding.char_lm import load_lm
    from crnn.decoding.lm_decode import lm_beam_ids

    rng = np.random.default_rng(0)
    charset = Charset()
    outputs = [np.log(rng.dirichlet(np.full(charset.num_classes, 0.05), size=n) + 1e-12) for n in (3, 9, 1, 20, 9)]
    lm = load_lm()
    one = [charset.decode(lm_beam_ids(o[None], [len(o)], charset, lm, 5, 0.4, 1.5)[0]) for o in outputs]
    assert tune_lm.decode_all(outputs, charset, lm, 5, 0.4, 1.5) == one


@pytest.mark.parametrize("argv, weights, model", [
    (["--model", "real"], None, "real"),
    (["--weights", "runs/x/best.safetensors"], "runs/x/best.safetensors", None),
    ([], None, None),
])
def test_the_model_is_chosen_by_name_or_file_and_run_in_fp32_on_torch(
        folders: list[Path], planted: PlantedRecognizer, argv: list[str], weights: str | None, model: str | None,
        capsys: pytest.CaptureFixture[str]) -> None:
    _run(["--data", str(folders[0]), "--alphas", "0.3", "--betas", "1", *argv], capsys)
    args, kwargs = planted.loaded
    assert args == (weights,) and kwargs == {"precision": "fp32", "threads": 1, "backend": "torch", "model": model}
