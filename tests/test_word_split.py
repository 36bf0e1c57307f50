"""Splitting a read line into words: the CTC alignment of its characters to the frames, and the naive split by
character count."""

from __future__ import annotations

import numpy as np
import pytest

from crnn.charset import Charset
from crnn.detection.word_split import (SPACE_PROB, align, infer_spaces, split_by_alignment, split_by_char_count,
                                      word_spans)


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


def with_space(charset: Charset, frames: int, fires: dict[int, str], space: dict[int, float]) -> np.ndarray:
    """``peaked`` log-probabilities where the space also gets the given probability on the given frames (the rest
    of each of those frames to the blank)."""
    p = np.exp(peaked(charset, frames, fires))
    sp = charset.encode(" ")[0]
    for t, prob in space.items():
        p[t] = 1e-6
        p[t, sp], p[t, 0] = prob, 1.0 - prob
    p /= p.sum(axis=1, keepdims=True)
    return np.log(p)


SP = Charset().encode(" ")[0]


@pytest.mark.parametrize("space, expected", [
    ({8: 0.3}, "AT HIGH"),            # a space that lost the argmax to the blank, still likely: put back
    ({8: 2 * SPACE_PROB}, "AT HIGH"),
    ({8: SPACE_PROB / 4}, "ATHIGH"),  # unlikely: left out
    ({}, "ATHIGH"),
    ({2: 0.9}, "ATHIGH"),             # on a character's own peak frame, not between two: not a space
])
def test_infer_spaces_from_the_space_probability(space, expected):
    cs = Charset()
    fires = {2: "A", 5: "T", 11: "H", 14: "I", 17: "G", 20: "H"}
    lp = with_space(cs, 24, fires, space)
    peaks = align(lp, cs.encode("ATHIGH"))
    text, new_peaks = infer_spaces("ATHIGH", peaks, lp, SP)
    assert text == expected
    assert len(new_peaks) == len(text)
    assert all(new_peaks[i] < new_peaks[i + 1] for i in range(len(text) - 1))  # the space sits between its neighbours


@pytest.mark.parametrize("text, peaks, gap_pitches, expected", [
    ("ATHIGH", [2, 5, 12, 15, 18, 21], 2.0, "AT HIGH"),    # 7 frames where the pitch is 3: a word gap
    ("ATHIGH", [2, 5, 8, 11, 14, 17], 2.0, "ATHIGH"),      # an even pitch: one word
    ("ATHIGH", [2, 4, 7, 9, 12, 14], 2.0, "ATHIGH"),       # letters of unequal width (2 and 3 frames): one word
    ("ATHIGH", [2, 5, 12, 15, 18, 21], None, "ATHIGH"),    # the rule off
    ("AB", [2, 12], 2.0, "AB"),                            # one distance: no pitch to compare it with
    ("ABC", [2, 4, 12], 2.0, "ABC"),                       # two: still too few (MIN_PITCHES)
    ("AT HIGH", [2, 5, 9, 12, 15, 18, 21], 2.0, "AT HIGH"),  # spaces read stay, none added beside them
    ("A TB", [2, 5, 8, 18], 2.0, "A TB"),                  # two in-word distances only: too few for a pitch
    ("AB CDEF", [2, 5, 8, 11, 14, 24, 27], 2.0, "AB CD EF"),  # after a space read, a gap it missed
])
def test_infer_spaces_from_the_geometry(text, peaks, gap_pitches, expected):
    out, new_peaks = infer_spaces(text, np.array(peaks), None, None, space_prob=None, gap_pitches=gap_pitches)
    assert out == expected
    assert len(new_peaks) == len(out)
    assert [p for p, ch in zip(new_peaks, out) if ch != " "] == [p for p, ch in zip(peaks, text) if ch != " "]


def test_infer_spaces_needs_a_peak_per_character():
    with pytest.raises(ValueError, match="peaks"):
        infer_spaces("ABC", np.array([1, 2]), None, None)


@pytest.mark.parametrize("space", [{8: 0.3}, {8: 0.3, 15: 0.2}, {}])
def test_inferred_spaces_give_consistent_words_and_boxes(space):
    cs = Charset()
    lp = with_space(cs, 24, {2: "A", 5: "T", 11: "H", 14: "I", 17: "G", 20: "H"}, space)
    text, peaks = infer_spaces("ATHIGH", align(lp, cs.encode("ATHIGH")), lp, SP)
    boxes = split_by_alignment(text, peaks, 24, 240.0)
    assert len(boxes) == len(text.split()) == 1 + len(space)
    assert "".join(text.split()) == "ATHIGH"
    assert all(x0 < x1 for x0, x1 in boxes)
    assert all(boxes[i][1] <= boxes[i + 1][0] for i in range(len(boxes) - 1))
    # Each word's box holds its characters' frame centres (frame t at 10 t + 5 px).
    spans = word_spans(text)
    for (a, b), (x0, x1) in zip(spans, boxes):
        assert x0 <= 10 * peaks[a] + 5 and 10 * peaks[b - 1] + 5 <= x1
