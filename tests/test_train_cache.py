"""`crnn train-cache`: the cache holds the run's own renderer's outputs, and an existing cache is never touched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crnn_synth_data import LmdbDataset, WordRenderer
from crnn_training.cache import CACHE_SEED_OFFSET, main, renderer_differences
from crnn_training.config import TrainConfig, default_charset, resolve_renderer

REPO = Path(__file__).resolve().parent.parent
TINY = str(REPO / "configs" / "tiny.yaml")


def sources(path: Path) -> str:
    return f"data.sources=[{{type: lmdb, path: {path}, weight: 0.9}}, {{type: synth, weight: 0.1}}]"


def test_the_cache_holds_the_runs_own_renders(tmp_path: Path) -> None:
    cache = tmp_path / "cache.lmdb"
    assert main(["--config", TINY, "--count", "6", "--workers", "1", sources(cache)]) == 0
    config = TrainConfig.from_yaml(TINY, [sources(cache)])
    resolve_renderer(config, default_charset(config))  # as crnn train resolves it
    renderer = WordRenderer(config.synth)
    ds = LmdbDataset(cache)
    assert len(ds) == 6
    for i in range(6):  # PNG is lossless: the very images an on-the-fly source renders, augmentation included
        sample = renderer.render(config.seed + CACHE_SEED_OFFSET, i)
        image, text = ds[i]
        assert text == sample.text and np.array_equal(image, sample.image)
    assert renderer_differences(cache, config) == []
    other = TrainConfig.from_yaml(TINY, [sources(cache), "synth.max_length=4"])
    resolve_renderer(other, default_charset(other))
    assert renderer_differences(cache, other) == ["max_length"]


@pytest.mark.parametrize("args, message", [
    (["--count", "3"], "already exists"),
    (["--count", "0"], "--count must be at least 1"),
    (["--count", "3", "--seed", "1000003"], "validation set"),
])
def test_an_existing_cache_is_never_touched_and_bad_arguments_are_one_line(
        tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache.lmdb"
    if message == "already exists":
        cache.mkdir()
        (cache / "data.mdb").write_bytes(b"mine")
    else:
        cache = tmp_path / "new.lmdb"
    assert main(["--config", TINY, "--workers", "1", *args, sources(cache)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    if message == "already exists":
        assert (cache / "data.mdb").read_bytes() == b"mine"
    else:
        assert not cache.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["cache.lmdb"] if message == "already exists" else [])


def test_a_config_without_an_lmdb_source_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", TINY, "--count", "3"]) == 2
    assert "no lmdb source" in capsys.readouterr().err
