"""Colour palettes of natural images (k-means per image) and text/background colour pairs drawn from them."""

from __future__ import annotations

import json
import random
from pathlib import Path

import cv2
import numpy as np

PALETTE_FILE = "palette.json"
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def image_palette(rgb: np.ndarray, k: int = 6, seed: int = 0) -> list[tuple[list[int], float]]:
    """The ``k`` main colours of an RGB uint8 image (k-means on up to 20,000 pixels), with their pixel shares."""
    px = rgb.reshape(-1, 3).astype(np.float32)
    if len(px) > 20_000:
        px = px[np.random.default_rng(seed).choice(len(px), 20_000, replace=False)]
    k = max(1, min(k, len(px)))
    cv2.setRNGSeed(seed)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 1.0)
    _, labels, centers = cv2.kmeans(px, k, None, criteria, 3, cv2.KMEANS_PP_CENTERS)
    shares = np.bincount(labels.ravel(), minlength=k) / len(px)
    order = np.argsort(-shares)
    return [([int(round(v)) for v in centers[i]], round(float(shares[i]), 4)) for i in order]


def write_palette(folder: Path, palettes: dict[str, list[tuple[list[int], float]]]) -> Path:
    """Save per-image palettes as ``folder/palette.json``."""
    path = Path(folder) / PALETTE_FILE
    data = {"version": 1, "images": [{"file": f, "colors": [c for c, _ in p], "shares": [s for _, s in p]}
                                      for f, p in sorted(palettes.items())]}
    path.write_text(json.dumps(data, indent=0), encoding="utf-8")
    return path


class Palette:
    """Colour sets of natural images; draws (background, text) pairs of co-occurring colours."""

    def __init__(self, sets: list[np.ndarray]) -> None:
        self.sets = [s for s in sets if len(s) >= 2]
        self.lums = [s @ _LUMA / 255.0 for s in self.sets]

    @classmethod
    def load(cls, folder: str | Path | None) -> Palette | None:
        """The palette of a collected backgrounds folder, or None when it has none."""
        if not folder:
            return None
        path = Path(folder).expanduser() / PALETTE_FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        pal = cls([np.asarray(im["colors"], np.float32) for im in data.get("images", [])])
        return pal if pal.sets else None

    def pair(self, r: random.Random, min_contrast: float) -> tuple[np.ndarray, np.ndarray] | None:
        """(background, text) colours (3,) float32 from one image, at least ``min_contrast`` apart in gray, or None."""
        i = r.randrange(len(self.sets))
        colors, lum = self.sets[i], self.lums[i]
        pairs = [(a, b) for a in range(len(colors)) for b in range(len(colors))
                 if a != b and abs(float(lum[a] - lum[b])) >= min_contrast]
        if not pairs:
            return None
        a, b = r.choice(pairs)
        return colors[a].copy(), colors[b].copy()
