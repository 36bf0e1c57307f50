"""benchmarks/photo_lexicon.py: the list it builds (every true word once, ### never, seeded fillers: a large list)."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import numpy as np
import pytest

from crnn.charset import DEFAULT_CHARS, Charset
from crnn.decoding.lexicon import SMALL_LEXICON_WORDS
from crnn.detection.end_to_end_metric import TextBox
from tests.benchmark_scripts import benchmark_module


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    yield from benchmark_module("photo_lexicon")


@pytest.mark.parametrize("fillers", [0, SMALL_LEXICON_WORDS + 1])
def test_the_list_holds_every_true_word_and_the_fillers(bench: ModuleType, fillers: int) -> None:
    box = np.zeros((4, 2))
    truths = [[TextBox(box, "OPEN"), TextBox(box, "###")], [TextBox(box, "Daily"), TextBox(box, "OPEN")]]
    charset = Charset(DEFAULT_CHARS)
    lex, true_words = bench.folder_lexicon(truths, charset, fillers, seed=1)
    assert true_words == 2 and "open" in lex and "daily" in lex and "###" not in lex
    assert lex.small == (fillers == 0)
    again, _ = bench.folder_lexicon(truths, charset, fillers, seed=1)
    assert again.words == lex.words
