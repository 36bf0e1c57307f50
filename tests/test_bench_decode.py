"""benchmarks/bench_decode.py: it decodes saved network outputs as crnn ocr does and checks them against the reference."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.benchmark_scripts import benchmark_module
from tests.word_images import render_word

WORDS = ["HOUSE", "river", "Open", "7421", "book", "hello"]


@pytest.fixture(scope="module")
def bench():
    yield from benchmark_module("bench_decode")


def test_bench_decode_times_each_decoder_and_finds_the_references_predictions(
    bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "words"
    folder.mkdir()
    for i, word in enumerate(WORDS):
        Image.fromarray(render_word(word, height=40, size=28)).save(folder / f"{i}.png")
    cache = tmp_path / "outputs.npz"
    argv = ["bench_decode.py", "--folder", str(folder), "--cache", str(cache), "--repeat", "1", "--reference",
            "--batch-size", "2", "--group", "3"]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    out = capsys.readouterr().out
    assert f"{len(WORDS)} images in" in out and "decoded in 2 groups" in out
    for name in ["greedy", "beam", "lm", "beam (reference)", "lm (reference)"]:
        assert any(line.startswith(name + " ") for line in out.splitlines()), out
    assert f"lm: {len(WORDS)} of {len(WORDS)} predictions identical" in out
    assert cache.exists()  # a second run reads the outputs back instead of running the network
    monkeypatch.setattr(sys, "argv", [a for a in argv if a not in ("--folder", str(folder))])
    bench.main()
    assert f"beam: {len(WORDS)} of {len(WORDS)} predictions identical" in capsys.readouterr().out
