"""benchmarks/bench_exposure_bias.py: its free-running errors are what the recognizer reads, its teacher-forced
errors are counted per step, and it refuses a checkpoint that has no decoder."""

from __future__ import annotations

from pathlib import Path

import pytest
from rapidfuzz.distance import Levenshtein

from crnn.charset import Charset
from crnn.kinds.loading import save_checkpoint
from crnn.models.crnn import CRNN, ModelConfig
from crnn.kinds.loading import load_recognizer
from tests.benchmark_scripts import benchmark_module
from tests.test_attention_recognizer import WORDS, folder, tiny_attention  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def bench():
    yield from benchmark_module("bench_exposure_bias")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_free_running_errors_are_the_greedy_readings(bench, folder: Path, tmp_path: Path, cell: str) -> None:
    path = save_checkpoint(tmp_path / "a.safetensors", tiny_attention(seed=1, cell=cell), Charset(), metadata={"metrics": {}})
    result = bench.measure(str(path), str(folder), batch_size=2)
    steps = sum(len(w) + 1 for w in WORDS)  # each word's characters + the end of text
    read = load_recognizer(path, precision="fp32").recognize([folder / f"{i}.png" for i in range(len(WORDS))],
                                                            decoder="greedy")
    edits = sum(Levenshtein.distance(w, p.text) for w, p in zip(WORDS, read))
    assert result["words"] == len(WORDS)
    # The end of text is one more symbol on both sides, so it adds no edit: the edits are the texts'.
    assert result["fr_char_error"] == pytest.approx(edits / steps)
    assert 0.0 <= result["tf_step_error"] <= 1.0
    assert result["tf_step_error"] * steps == pytest.approx(round(result["tf_step_error"] * steps))
    assert 0.0 <= result["tf_multi"] <= 1.0 and 0.0 <= result["fr_multi"] <= 1.0


def test_a_ctc_checkpoint_is_refused(bench, folder: Path, tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.safetensors", CRNN(ModelConfig(hidden_size=16, num_layers=1)), Charset(),
                           metadata={"metrics": {}})
    with pytest.raises(SystemExit, match="not an attention-decoder checkpoint"):
        bench.measure(str(path), str(folder))
