"""Colours with a chosen luminance, so that text/background contrast is controlled in gray too."""

from __future__ import annotations

import colorsys
import random

import numpy as np

def color_with_luminance(r: random.Random, lum: float, p_gray: float) -> np.ndarray:
    """A random RGB colour (3,) float32 in 0..255 whose gray level is ``lum`` (0..1)."""
    lum = min(max(lum, 0.0), 1.0)
    if r.random() < p_gray:
        v = lum * 255.0
        return np.array((v, v, v), np.float32)
    # Saturation skewed low: vivid colours are the minority on real signs and surfaces.
    rgb = colorsys.hsv_to_rgb(r.random(), r.random() ** 1.5, 1.0)
    # ITU-R BT.601 weights: what cv2.cvtColor uses for RGB -> gray, i.e. what the model sees.
    cur = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    if lum <= cur:
        k = lum / cur * 255.0
        return np.array([v * k for v in rgb], np.float32)
    k = (1.0 - lum) / (1.0 - cur)
    return np.array([(1.0 - (1.0 - v) * k) * 255.0 for v in rgb], np.float32)


def contrasting_luminance(r: random.Random, base: float, min_contrast: float, prefer_lighter: bool) -> float:
    """A gray level at least ``min_contrast`` away from ``base``, on the preferred side when there is room."""
    room_up, room_down = 1.0 - base - min_contrast, base - min_contrast
    lighter = prefer_lighter if (room_up > 0 and room_down > 0) else room_up > room_down
    if lighter:
        lo = min(base + min_contrast, 1.0)
        return lo + (1.0 - lo) * r.random() ** 0.7
    hi = max(base - min_contrast, 0.0)
    return hi * (1.0 - r.random() ** 0.7)
