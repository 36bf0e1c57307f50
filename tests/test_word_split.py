"""Splitting a read line into words: the CTC alignment of its characters to the frames, and the naive split by
character count."""

from __future__ import annotations

import numpy as np
import pytest

from crnn.charset import Charset
from crnn.detection.word_split import align, split_by_alignment, split_by_char_count, word_spans


@pytest.mark.parametrize("text, spans", [
    ("", []), ("   ", []), ("a", [(0, 1)]), ("ab cd", [(0, 2), (3, 5)]), (" ab  c ", [(1, 3), (5, 6)]),
])
def test_word_spans(text, spans):
    assert word_spans(text) == spans


def peaked(charset: Charset, frames: int, fires: dict[int, str]) -> np.ndarray:
    """Log-probabilities (T, C): blank everywhere except the given frames, where the given character fires."""
    p = np.full((frames, charset.num_classes), 1e-4)
    p[:, 0] = 1.0
    for t, ch in fires.items():
        p[t, 0] = 1e-4
        p[t, charset.encode(ch)[0]] = 1.0
    p /= p.sum(axis=1, keepdims=True)
    return np.log(p)


def test_align_finds_each_character_frame():
    cs = Charset()
    lp = peaked(cs, 20, {2: "a", 4: "b", 9: " ", 14: "c", 16: "d"})
    assert align(lp, cs.encode("ab cd")).tolist() == [2, 4, 9, 14, 16]


def test_align_repeated_characters_need_a_blank_between():
    cs = Charset()
    lp = peaked(cs, 8, {1: "o", 3: "o"})
    assert align(lp, cs.encode("oo")).tolist() == [1, 3]
    assert align(lp[:1], cs.encode("oo")) is None  # two o's cannot fit in one frame


def test_split_by_alignment_places_words_at_their_characters():
    cs = Charset()
    # 20 frames over a 200-px crop: frame t is centred at 10 t + 5 px.
    lp = peaked(cs, 20, {2: "a", 4: "b", 9: " ", 14: "c", 16: "d"})
    (a0, a1), (c0, c1) = split_by_alignment("ab cd", align(lp, cs.encode("ab cd")), 20, 200.0)
    # Character pitch 20 px; each word reaches 0.6 pitch beyond its outer characters' centres (25..45, 145..165).
    assert (a0, a1) == pytest.approx((13.0, 57.0))
    assert (c0, c1) == pytest.approx((133.0, 177.0))


def test_split_by_alignment_never_overlaps_neighbours():
    cs = Charset()
    lp = peaked(cs, 10, {1: "a", 2: " ", 3: "b", 8: "c"})  # tight: 'a' and 'b' one frame apart
    spans = split_by_alignment("a b c", align(lp, cs.encode("a b c")), 10, 100.0)
    assert len(spans) == 3
    assert all(x0 < x1 for x0, x1 in spans)
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(2))


def test_split_by_char_count():
    assert split_by_char_count("ab cd", 50.0) == [(0.0, 20.0), (30.0, 50.0)]
    assert split_by_char_count("", 50.0) == []
