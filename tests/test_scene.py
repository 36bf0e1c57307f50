"""Rendered scenes (synth_data/scene.py): whole photos with every word's polygon and text, written like SVT_train_full
and read back by crnn.detection.photo_folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from crnn.detection.photo_folder import read_photo_folder
from crnn_synth_data.config import SynthConfig
from crnn_synth_data.scene import SceneRenderer, write_scenes


@pytest.fixture(scope="module")
def renderer() -> SceneRenderer:
    return SceneRenderer(SynthConfig(), size=(480, 360))


@pytest.mark.parametrize("index", range(4))
def test_scene_words_lie_in_the_photo(renderer, index):
    scene = renderer.render(7, index)
    assert scene.image.shape == (360, 480, 3) and scene.image.dtype == np.uint8
    for word in scene.words:
        assert word.polygon.shape == (4, 2)
        assert word.text and " " not in word.text
        assert (word.polygon[:, 0] >= -1).all() and (word.polygon[:, 0] <= 481).all()
        assert (word.polygon[:, 1] >= -1).all() and (word.polygon[:, 1] <= 361).all()


def test_scenes_are_reproducible(renderer):
    a, b = renderer.render(3, 5), renderer.render(3, 5)
    assert np.array_equal(a.image, b.image) and [w.text for w in a.words] == [w.text for w in b.words]
    assert not np.array_equal(a.image, renderer.render(3, 6).image)


def test_written_folder_reads_back(tmp_path):
    assert write_scenes(SynthConfig(), tmp_path, 2, seed=1) == 2
    rows = [json.loads(line) for line in (tmp_path / "annotations.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all((tmp_path / r["image"]).is_file() for r in rows)
    photos = read_photo_folder(tmp_path)
    assert [p.name for p, _ in photos] == [r["image"].split("/")[1] for r in rows]
    assert sum(len(words) for _, words in photos) == sum(len(r["words"]) for r in rows)
    for word in rows[0]["words"]:
        x, y, w, h = word["box"]
        poly = np.array(word["polygon"])
        assert abs(poly[:, 0].min() - x) <= 1 and abs(poly[:, 1].max() - (y + h)) <= 1


def test_photo_folder_takes_svt_boxes(tmp_path):
    (tmp_path / "annotations.jsonl").write_text(json.dumps(
        {"image": "img/a.jpg", "words": [{"box": [10, 20, 30, 40], "text": "SHOP"}]}) + "\n")
    [(path, [word])] = read_photo_folder(tmp_path)
    assert path == tmp_path / "img" / "a.jpg" and word.text == "SHOP"
    assert word.polygon.tolist() == [[10, 20], [40, 20], [40, 60], [10, 60]]
    (tmp_path / "annotations.jsonl").write_text('{"image": "x.jpg", "words": [{"text": "no box"}]}\n')
    with pytest.raises(ValueError, match="annotations.jsonl:1"):
        read_photo_folder(tmp_path)
