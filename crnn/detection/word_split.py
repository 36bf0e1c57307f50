"""Splitting a read text line into words: from the CTC alignment of its characters to the frames (where each
character sits in the crop), or naively by character count, for comparison.

A CTC network's frame t of T sees the columns around ``(t + 0.5) * width / T`` of its input (the CRNN's frames are
4 px of the 32-px-high resized image each), and its best alignment of the read text to the frames puts each
character on the frames where it fired. The words' boxes follow: each word runs from half a character pitch before
its first character's frame to half a pitch after its last's, and never past the midpoint between its outer
characters and the neighbouring words' (the space between two words is shared out between them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from crnn.decoding.ctc_decode import viterbi_states

SPLITS: tuple[str, ...] = ("ctc", "chars")
# How far (in character pitches) a word's box reaches beyond the centres of its outer characters: half a pitch is
# the edge of a character of average width; a little more keeps wide letters (M, W) and loose ground-truth boxes
# inside. Chosen by that reasoning, not on any benchmark.
EDGE_PITCHES = 0.6
# Dropped spaces (issue 35: the shipped model keeps ~60% of the spaces of rendered multi-word lines): a space is
# inferred between two consecutive read characters when the network still gives the space at least this probability
# on a frame between their peaks (a space that lost the argmax to the blank). Chosen on 500 rendered multi-word lines
# of seed 3535 with the default decoder (benchmarks/multiword_spaces.py --read default --space-prob ...; label words
# found 52.3% -> 62.7%, 0.005 to 0.01 alike, 0.01 over-splitting fewer lines), never on the scenes or benchmarks.
SPACE_PROB = 0.01
# Or the geometry alone: a space where two peaks are more than this many of the line's character pitches apart (the
# median distance between consecutive peaks inside its words, from at least MIN_PITCHES of them). Off by default: on
# those lines it found few dropped spaces (peaks are whole frames, a pitch is 2-4 of them, and a word gap adds about
# one: in-word and across-gap distances overlap), 52.3% -> 53.9% words found at its best (2.5), and with the space
# probability it added nothing (G 4) or lost (G 2 to 3).
GAP_PITCHES: float | None = None
MIN_PITCHES = 3


def word_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character indices of each word of ``text`` (runs of non-space characters)."""
    spans, start = [], None
    for i, ch in enumerate(text):
        if ch != " " and start is None:
            start = i
        elif ch == " " and start is not None:
            spans.append((start, i))
            start = None
    if start is not None:
        spans.append((start, len(text)))
    return spans


def align(log_probs: np.ndarray, ids: Sequence[int]) -> np.ndarray | None:
    """The frame (T,) where each of the characters ``ids`` fires most strongly in the best (Viterbi) CTC alignment
    of ``ids`` to ``log_probs`` (T, C); an int array (len(ids),), or None when the text cannot fit in T frames."""
    n = len(ids)
    frames = log_probs.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    if frames == 0:
        return None
    lp = np.asarray(log_probs, np.float64)
    path = viterbi_states(lp, ids)
    if path is None:
        return None
    peak = np.full(n, -1, np.int64)
    best = np.full(n, -np.inf)
    for t in range(frames):
        s = path[t]
        if s % 2 == 1 and lp[t, ids[s // 2]] > best[s // 2]:
            best[s // 2], peak[s // 2] = lp[t, ids[s // 2]], t
    return peak


def split_by_alignment(text: str, peaks: np.ndarray, frames: int, width: float) -> list[tuple[float, float]]:
    """(x0, x1) in a crop ``width`` px wide of each word of ``text``, from the frames ``peaks`` (one per character
    of ``text``, spaces included) of its CTC alignment over ``frames`` frames."""
    spans = word_spans(text)
    if not spans:
        return []
    x = (np.asarray(peaks, np.float64) + 0.5) * width / max(frames, 1)
    gaps = [x[i + 1] - x[i] for a, b in spans for i in range(a, b - 1)]
    pitch = float(np.median(gaps)) if gaps else width / max(len(text), 1)
    out = []
    for k, (a, b) in enumerate(spans):
        left = 0.0 if k == 0 else (x[spans[k - 1][1] - 1] + x[a]) / 2
        right = width if k == len(spans) - 1 else (x[b - 1] + x[spans[k + 1][0]]) / 2
        x0 = max(left, x[a] - EDGE_PITCHES * pitch)
        x1 = min(right, x[b - 1] + EDGE_PITCHES * pitch)
        out.append((float(x0), float(max(x1, x0 + 1e-3))))
    return out


def infer_spaces(text: str, peaks: np.ndarray, log_probs: np.ndarray | None = None, space_id: int | None = None,
                 space_prob: float | None = SPACE_PROB, gap_pitches: float | None = GAP_PITCHES,
                 min_pitches: int = MIN_PITCHES) -> tuple[str, np.ndarray]:
    """``text`` with a space inserted between each two consecutive characters (no space between them) that the CTC
    alignment says are separate words, and ``peaks`` with the frame midway between them for each inserted space.

    A space goes in where the network gives the space (class ``space_id``) a probability of at least ``space_prob``
    on a frame strictly between the two characters' peak frames in ``log_probs`` (T, C), or where the two peaks are
    more than ``gap_pitches`` times the line's character pitch apart (the median distance between consecutive peaks
    inside words, from at least ``min_pitches`` of them: a line of two or three characters has no pitch to trust).
    Either rule is off when its threshold is None; an existing space is never moved or removed."""
    x = np.asarray(peaks, np.int64)
    if len(x) != len(text):
        raise ValueError(f"{len(x)} peaks for a text of {len(text)} characters")
    pairs = [i for i in range(len(text) - 1) if text[i] != " " and text[i + 1] != " "]
    if not pairs:
        return text, x
    dist = x[np.array(pairs) + 1] - x[np.array(pairs)]
    pitch = float(np.median(dist)) if gap_pitches is not None and len(pairs) >= min_pitches else None
    space = None
    if space_prob is not None and log_probs is not None and space_id is not None:
        space = np.exp(np.asarray(log_probs, np.float64)[:, space_id])
    cut = set()
    for i, d in zip(pairs, dist):
        if pitch is not None and d > gap_pitches * pitch:  # type: ignore[operator]
            cut.add(i)
        elif space is not None and d > 1 and space[x[i] + 1 : x[i + 1]].max() >= space_prob:  # type: ignore[operator]
            cut.add(i)
    if not cut:
        return text, x
    out_text, out_peaks = [], []
    for i, ch in enumerate(text):
        out_text.append(ch)
        out_peaks.append(int(x[i]))
        if i in cut:
            out_text.append(" ")
            out_peaks.append(int((x[i] + x[i + 1]) // 2))
    return "".join(out_text), np.asarray(out_peaks, np.int64)


def split_by_char_count(text: str, width: float) -> list[tuple[float, float]]:
    """(x0, x1) of each word of ``text`` in a crop ``width`` px wide, every character (spaces too) taken as
    equally wide: the naive split, for comparison."""
    n = max(len(text), 1)
    return [(a * width / n, b * width / n) for a, b in word_spans(text)]
