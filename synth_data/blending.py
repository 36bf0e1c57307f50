"""Blend modes between a text colour (or texture) and the background, on planar float32 images in 0..255."""

from __future__ import annotations

import numpy as np

_INV = np.float32(1 / 255.0)


def blend(mode: str, base: np.ndarray, top: np.ndarray) -> np.ndarray:
    """``top`` blended onto ``base`` with ``mode`` (crnn_synth_data.config.BLEND_MODES): (3, H, W) float32 0..255.

    ``top`` may be a colour (3, 1, 1) or a texture (3, H, W). Formulas of the W3C compositing spec.
    """
    a = base * _INV
    b = np.broadcast_to(top * _INV, a.shape)
    if mode == "multiply":
        out = a * b
    elif mode == "screen":
        out = a + b - a * b
    elif mode == "overlay":
        out = np.where(a < 0.5, 2 * a * b, 1 - 2 * (1 - a) * (1 - b))
    elif mode == "hard_light":
        out = np.where(b < 0.5, 2 * a * b, 1 - 2 * (1 - a) * (1 - b))
    elif mode == "soft_light":  # the pegtop variant: continuous, no square roots
        out = (1 - 2 * b) * a * a + 2 * b * a
    elif mode == "darken":
        out = np.minimum(a, b)
    elif mode == "lighten":
        out = np.maximum(a, b)
    elif mode == "difference":
        out = np.abs(a - b)
    else:
        raise ValueError(f"unknown blend mode {mode!r}")
    return out.astype(np.float32) * np.float32(255.0)


def gray(planar: np.ndarray) -> np.ndarray:
    """BT.601 gray (H, W) of a planar (3, H, W) image (what the model sees after cv2's RGB -> gray)."""
    return planar[0] * np.float32(0.299) + planar[1] * np.float32(0.587) + planar[2] * np.float32(0.114)
