"""Procedural images with natural-image statistics: dead leaves (occlusion) and 1/f ("pink") noise."""

from __future__ import annotations

import cv2
import numpy as np


def dead_leaves(rng: np.random.Generator, size: int = 384, min_radius: float = 2.0, max_radius: float = 120.0,
                leaves: int = 6000) -> np.ndarray:
    """An (size, size, 3) uint8 dead-leaves image: discs with power-law radii (density ~ r^-3), each drawn over
    the earlier ones (the last leaf is the front one), so that the image is scale-invariant like natural scenes."""
    base = rng.random(3) * 255
    img = np.empty((size, size, 3), np.uint8)
    img[:] = base.astype(np.uint8)
    u = rng.random(leaves)
    # Inverse-CDF sample of p(r) ~ r^-3 on [min_radius, max_radius].
    radii = (min_radius ** -2 - u * (min_radius ** -2 - max_radius ** -2)) ** -0.5
    centres = rng.integers(-int(max_radius // 2), size + int(max_radius // 2), (leaves, 2))
    jitter = rng.normal(0, 70, (leaves, 3))
    vivid = rng.random(leaves) < 0.3
    random_colors = rng.random((leaves, 3)) * 255
    for i in range(leaves):
        color = random_colors[i] if vivid[i] else np.clip(base + jitter[i], 0, 255)
        cv2.circle(img, (int(centres[i, 0]), int(centres[i, 1])), int(radii[i]), tuple(float(v) for v in color), -1, cv2.LINE_AA)
    return img


def pink_noise(rng: np.random.Generator, size: int = 384, exponent: float | None = None) -> np.ndarray:
    """An (size, size, 3) uint8 image with a 1/f^exponent amplitude spectrum (natural images: about 1-2),
    colours correlated across channels."""
    e = float(rng.uniform(0.9, 2.0)) if exponent is None else exponent
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    amp = 1.0 / f ** e
    amp[0, 0] = 0.0
    shared = rng.standard_normal((size, size // 2 + 1)) + 1j * rng.standard_normal((size, size // 2 + 1))
    out = np.empty((size, size, 3), np.float64)
    mix = rng.uniform(0.5, 0.95)  # how much the channels share: natural colours are correlated
    for ch in range(3):
        own = rng.standard_normal(shared.shape) + 1j * rng.standard_normal(shared.shape)
        plane = np.fft.irfft2((mix * shared + (1 - mix) * own) * amp, s=(size, size))
        out[..., ch] = (plane - plane.mean()) / (plane.std() + 1e-9)
    out = out * rng.uniform(30, 70) + rng.uniform(60, 200, 3)
    return np.clip(out, 0, 255).astype(np.uint8)
