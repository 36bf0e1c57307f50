"""Placing cached glyphs on a line with chosen tracking, and drawing lines into a mask canvas."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crnn_synth_data.fonts import Glyph, GlyphSet


@dataclass
class Line:
    """A laid-out text: glyphs at pen positions, with ink boxes relative to (pen start, baseline)."""

    glyphs: list[tuple[int, Glyph]]  # (x of the ink's left edge, glyph) for every non-space char
    boxes: np.ndarray  # (N, 4) float32 x0, y0, x1, y1 of each non-space char's ink
    width: float  # pen advance of the whole text

    @property
    def ink(self) -> tuple[float, float, float, float]:
        """x0, y0, x1, y1 of all the ink (y relative to the baseline, negative above it)."""
        b = self.boxes
        return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())


def layout_line(glyphs: GlyphSet, text: str, tracking: float, space_scale: float = 1.0, word_gap: float | None = None) -> Line:
    """Pen positions of ``text`` with ``tracking`` extra pixels between characters (negative: touching).

    ``word_gap``: the ink of a word after a space starts exactly this many pixels right of the previous word's ink
    (a multi-word line's spacing, whatever the glyphs' side bearings); None: a space advances the pen by the space
    glyph's advance times ``space_scale``, plus ``tracking``.
    """
    placed = []
    boxes = []
    x = 0.0
    after_space = False
    for ch in text:
        g = glyphs.glyph(ch)
        if ch == " ":
            if word_gap is None:
                x += g.advance * space_scale + tracking
            else:
                after_space = bool(boxes)
            continue
        if after_space:
            x = max(b[2] for b in boxes) + word_gap - g.dx  # the pen where this glyph's ink starts word_gap away
            after_space = False
        left = int(round(x)) + g.dx
        h, w = g.ink.shape
        placed.append((left, g))
        boxes.append((left, g.dy, left + w, g.dy + h))
        # Never let a glyph start left of its predecessor's start: keeps reading order of the boxes.
        x += max(g.advance + tracking, 0.35 * g.advance)
    arr = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Line(placed, arr, x - tracking)


def draw_line(canvas: np.ndarray, line: Line, x: int, baseline: int) -> None:
    """Draw ``line``'s glyphs into ``canvas`` (H, W) uint8 in place, max-blended and clipped to the canvas."""
    H, W = canvas.shape
    for left, g in line.glyphs:
        h, w = g.ink.shape
        x0, y0 = x + left, baseline + g.dy
        cx0, cy0 = max(x0, 0), max(y0, 0)
        cx1, cy1 = min(x0 + w, W), min(y0 + h, H)
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        dst = canvas[cy0:cy1, cx0:cx1]
        np.maximum(dst, g.ink[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0], out=dst)
