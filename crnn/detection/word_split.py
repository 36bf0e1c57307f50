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


def split_by_char_count(text: str, width: float) -> list[tuple[float, float]]:
    """(x0, x1) of each word of ``text`` in a crop ``width`` px wide, every character (spaces too) taken as
    equally wide: the naive split, for comparison."""
    n = max(len(text), 1)
    return [(a * width / n, b * width / n) for a, b in word_spans(text)]
