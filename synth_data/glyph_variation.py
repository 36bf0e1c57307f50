"""Per-character variation of a laid-out line: size, baseline and rotation jitter, elastic distortion."""

from __future__ import annotations

import random

import cv2
import numpy as np

from crnn_synth_data.fonts import Glyph
from crnn_synth_data.layout import Line


def _warp_glyph(g: Glyph, scale: float, angle: float, shift: float) -> Glyph:
    """``g`` scaled and rotated about its ink centre and moved ``shift`` px down; the ink box grows to fit."""
    h, w = g.ink.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ m.T
    x0, y0 = np.floor(corners.min(0)).astype(int)
    x1, y1 = np.ceil(corners.max(0)).astype(int)
    m[:, 2] -= (x0, y0)
    ink = cv2.warpAffine(g.ink, m, (int(x1 - x0), int(y1 - y0)), flags=cv2.INTER_LINEAR, borderValue=0)
    return Glyph(ink, g.dx + int(x0), g.dy + int(y0) + int(round(shift)), g.advance)


def _elastic_glyph(g: Glyph, rng: np.random.Generator, amount: float) -> Glyph:
    """``g`` with a smooth random displacement field of about ``amount`` px (2 px of margin for the moved ink)."""
    h, w = g.ink.shape
    pad = 2
    ink = cv2.copyMakeBorder(g.ink, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    hh, ww = ink.shape
    coarse = rng.standard_normal((2, 4, 4), dtype=np.float32) * np.float32(amount)
    dx = cv2.resize(coarse[0], (ww, hh), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(coarse[1], (ww, hh), interpolation=cv2.INTER_CUBIC)
    gx, gy = np.meshgrid(np.arange(ww, dtype=np.float32), np.arange(hh, dtype=np.float32))
    ink = cv2.remap(ink, gx + dx, gy + dy, cv2.INTER_LINEAR, borderValue=0)
    return Glyph(ink, g.dx - pad, g.dy - pad, g.advance)


def _tight(g: Glyph) -> Glyph:
    """``g`` with its ink cropped to the non-zero pixels, so that its box stays exact."""
    ys, xs = np.nonzero(g.ink > 8)
    if len(ys) == 0:
        return g
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return Glyph(g.ink[y0:y1, x0:x1], g.dx + int(x0), g.dy + int(y0), g.advance)


def vary_glyphs(
    line: Line, r: random.Random, rng: np.random.Generator, size: int,
    jitter: tuple[float, float, float] | None, elastic: float,
) -> Line:
    """A copy of ``line`` whose glyphs are jittered (size share, baseline share, degrees) and/or elastically
    distorted by ``elastic`` px; the boxes (N, 4) are the new inks' exact extents."""
    placed = []
    boxes = []
    for left, g in line.glyphs:
        if g.ink.size == 0:  # kept: one box per non-space character
            placed.append((left, g))
            boxes.append((left, g.dy, left, g.dy))
            continue
        dx0 = g.dx
        if jitter is not None:
            s_j, b_j, a_j = jitter
            g = _warp_glyph(g, 1.0 + r.uniform(-s_j, s_j), r.uniform(-a_j, a_j), r.uniform(-b_j, b_j) * size)
        if elastic > 0:
            g = _elastic_glyph(g, rng, elastic)
        g = _tight(g)
        h, w = g.ink.shape
        x = left + g.dx - dx0  # ``left`` is the old ink's left edge; the new ink moved by its change of dx
        placed.append((x, g))
        boxes.append((x, g.dy, x + w, g.dy + h))
    arr = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Line(placed, arr, line.width)

