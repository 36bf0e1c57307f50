"""The held-out part of a labeled folder: fixed by each path, disjoint from the training part, the same for every tool;
folder sources never train on it, validation folders read only it; real-crop augmentation is reproducible."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from crnn.charset import Charset
from crnn.io.preprocess import PreprocessConfig
from tests.word_images import render_word
from crnn_training.config import TrainConfig
from crnn_training.holdout import holdout_key, in_part, select_part

TINY = str(Path(__file__).resolve().parent.parent / "configs" / "tiny.yaml")
PATHS = [f"img/word_{i}.png" for i in range(2000)]


@pytest.mark.parametrize("fraction", [0.1, 0.15, 0.5])
def test_parts_are_disjoint_cover_the_folder_and_hold_about_the_fraction(fraction: float) -> None:
    items = [(p, "w") for p in PATHS]
    train, val = select_part(items, fraction, "train"), select_part(items, fraction, "val")
    assert not {p for p, _ in train} & {p for p, _ in val}
    assert sorted(train + val) == sorted(items)
    assert abs(len(val) / len(items) - fraction) < 0.03
    # A larger held-out share only adds images to it: a validation image never moves into training.
    assert {p for p, _ in val} <= {p for p, _ in select_part(items, min(0.9, fraction + 0.2), "val")}


def test_the_split_is_fixed_by_the_path_alone() -> None:
    assert [holdout_key(p) for p in PATHS[:50]] == [holdout_key(p) for p in PATHS[:50]]
    assert holdout_key("./img/a.png") == holdout_key("img/a.png") == holdout_key("img\\a.png")
    # The split must never change between versions: runs and self-labeled folders made before rely on it.
    assert holdout_key("a.png") == pytest.approx(0.496202, abs=1e-6)
    assert in_part("x.png", 0.0, "train") and not in_part("x.png", 0.0, "val") and in_part("x.png", 0.3, "all")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "words"
    d.mkdir()
    words = [f"w{i}" for i in range(40)]
    for i, w in enumerate(words):
        cv2.imwrite(str(d / f"{i}.png"), render_word(w))
    (d / "labels.tsv").write_text("".join(f"{i}.png\t{w}\n" for i, w in enumerate(words)))
    return d


def test_a_folder_source_never_trains_on_what_validation_reads(folder: Path) -> None:
    from crnn_training.data import BatchStream, build_sources, load_labeled_arrays

    config = TrainConfig.from_yaml(TINY, [f"data.sources=[{{type: folder, path: {folder}, holdout: 0.3}}]",
                                          f"val.folders=[{folder}]", "val.holdout=0.3"])
    _, val_texts, _, _ = load_labeled_arrays(folder, Charset(), PreprocessConfig(), holdout=0.3)
    cs = Charset()
    stream = BatchStream(build_sources(config, cs, 0), [1.0], cs, PreprocessConfig(), 16, 4, seed=0)
    seen = {t for pool in range(3) for b in stream.make_pool(pool) for t in b["texts"]}
    assert val_texts and seen and not seen & set(val_texts)
    assert stream.sources[0].size + len(val_texts) == 40


def test_augmented_pools_are_reproducible_and_differ_from_plain_ones(folder: Path) -> None:
    from crnn_training.data import BatchStream, build_sources

    cs = Charset()

    def pool(augment: str) -> list[dict]:
        config = TrainConfig.from_yaml(TINY, [f"data.sources=[{{type: folder, path: {folder}, augment: {augment}}}]"])
        return BatchStream(build_sources(config, cs, 0), [1.0], cs, PreprocessConfig(), 8, 2, seed=3).make_pool(0)

    a, b, plain = pool("real"), pool("real"), pool("off")
    assert all(np.array_equal(x["images"], y["images"]) and x["texts"] == y["texts"] for x, y in zip(a, b))
    texts = sorted(t for x in a for t in x["texts"])
    assert texts == sorted(t for x in plain for t in x["texts"])  # the same samples drawn (sorted by width anew)
    assert [x["images"].shape for x in a] != [x["images"].shape for x in plain]


def test_real_crop_augmenter_keeps_a_gray_uint8_crop() -> None:
    from crnn_training.augment import RealCropAugmenter

    aug, word = RealCropAugmenter(), render_word("Sample")
    outs = [aug(word, seed) for seed in range(20)]
    assert all(o.dtype == np.uint8 and o.ndim == 2 and min(o.shape) > 8 for o in outs)
    assert np.array_equal(aug(word, 7), outs[7])


def test_crnn_eval_holdout_reads_the_held_out_part_only(folder: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from tests.tiny_models import tiny_checkpoint
    from crnn_training.evaluate import main as eval_main

    weights = tiny_checkpoint(tmp_path / "tiny.safetensors")
    args = ["--weights", str(weights), "--backend", "torch", "--decoder", "greedy", "--data", str(folder), "--json"]
    assert eval_main([*args, "--holdout", "0.3"]) == 0
    count = json.loads(capsys.readouterr().out)["results"][0]["count"]
    assert count == len(select_part([(f"{i}.png", "") for i in range(40)], 0.3, "val")) and 0 < count < 40
    assert eval_main([*args, "--holdout", "1"]) == 2
