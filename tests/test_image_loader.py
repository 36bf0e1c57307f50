import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crnn.io import image_loader
from crnn.errors import LoaderError
from crnn.io.image_loader import ChunkLoader, load_paths, make_pool
from crnn.io.preprocess import PreprocessConfig, prepare
from tests.word_images import render_word

CONFIG = PreprocessConfig()


@pytest.fixture
def inputs(tmp_path: Path) -> list[tuple[str, str | None]]:
    """Good images with a corrupt file, a missing file and a pass-through error among them."""
    items: list[tuple[str, str | None]] = []
    for i, word in enumerate(["one", "two", "three", "four", "five"]):
        path = tmp_path / f"{i}.png"
        Image.fromarray(render_word(word)).save(path)
        items.append((str(path), None))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    items.insert(2, (str(tmp_path / "bad.png"), None))
    items.insert(4, (str(tmp_path / "missing.png"), None))
    items.insert(5, (str(tmp_path / "*.jpg"), "no file matches the pattern"))
    return items


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
@pytest.mark.parametrize("chunk_size,task_size", [(1, 1), (3, 2), (4, 32), (50, 3)])
def test_chunks_keep_input_order_and_report_each_bad_file(
    inputs: list[tuple[str, str | None]], processes: bool, chunk_size: int, task_size: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(image_loader, "TASK_SIZE", task_size)
    with make_pool(2, processes=processes) as pool:
        chunks = list(ChunkLoader(inputs, CONFIG, pool, chunk_size=chunk_size))
    assert all(0 < len(c) <= chunk_size for c in chunks)
    rows = [row for c in chunks for row in c]
    assert [path for path, _, _ in rows] == [path for path, _ in inputs]
    for (path, given_error), (_, array, error) in zip(inputs, rows):
        name = Path(path).name
        if given_error is not None:
            assert error == given_error and array is None
        elif name in ("bad.png", "missing.png"):
            assert array is None and name in error
        else:
            assert error is None
            np.testing.assert_array_equal(array, prepare(path, CONFIG))


def test_loading_starts_at_once_and_stays_one_chunk_ahead(inputs: list[tuple[str, str | None]]) -> None:
    pulled = 0

    def items():
        nonlocal pulled
        for item in inputs:
            pulled += 1
            yield item

    with make_pool(1, processes=False) as pool:
        loader = ChunkLoader(items(), CONFIG, pool, chunk_size=2)
        assert pulled == 2  # the first chunk is being read before anyone asks for it
        seen = []
        for chunk in loader:
            seen.append(len(chunk))
            assert pulled == min(len(inputs), 2 * (len(seen) + 1))  # this chunk and the next, no more
    assert sum(seen) == len(inputs)


def crashing_decoder(paths: list[str], config: PreprocessConfig) -> list:
    os._exit(3)  # a decoder that crashes its process


def test_a_dead_decoding_process_is_an_error_not_a_hang(
    inputs: list[tuple[str, str | None]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(image_loader, "load_paths", crashing_decoder)
    with make_pool(1, processes=True) as pool, pytest.raises(LoaderError, match="decoding process died"):
        list(ChunkLoader(inputs, CONFIG, pool, chunk_size=4))


def test_load_paths_never_raises_for_bad_images(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    out = load_paths([str(tmp_path / "empty.png"), str(tmp_path)], CONFIG)
    assert [a for a, _ in out] == [None, None]
    assert "empty" in out[0][1] and "not a file" in out[1][1]


@pytest.mark.parametrize("bad", [{"workers": 0}, {"chunk_size": 0}])
def test_refuses_sizes_below_one(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=">= 1"):
        if "workers" in bad:
            make_pool(bad["workers"])
        else:
            ChunkLoader([], CONFIG, make_pool(1, processes=False), **bad)
