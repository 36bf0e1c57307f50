"""Backgrounds drawn directly at output size: flat, gradient, noise, procedural textures, natural-image crops."""

from __future__ import annotations

import logging
import random
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from crnn.errors import BackgroundSourceError
from crnn_synth_data.colors import color_with_luminance
from crnn_synth_data.config import SynthConfig

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def refuse_labeled_folder(root: Path) -> None:
    """Raise BackgroundSourceError when ``root`` (or a folder in it) holds a ``labels.tsv``: a labeled text data
    set (a benchmark, a training set) must never become background material."""
    hit = next(iter(sorted(Path(root).rglob("labels.tsv"))), None)
    if hit is not None:
        raise BackgroundSourceError(
            f"{root} holds a labeled text data set ({hit}); backgrounds must not come from text-recognition "
            "or benchmark data: use `crnn synth --collect-backgrounds DIR` and point backgrounds_dir at DIR"
        )


class BackgroundMaker:
    """Draws planar (3, H, W) float32 RGB backgrounds in 0..255 around a requested mean gray level.

    Planar, not (H, W, 3): numpy broadcasts a colour over channel planes several times faster.
    """

    def __init__(self, config: SynthConfig) -> None:
        self.config = config
        self.images: list[Path] = []
        if config.backgrounds_dir:
            root = Path(config.backgrounds_dir).expanduser()
            refuse_labeled_folder(root)
            self.images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.images:
                log.warning("no images found in backgrounds_dir %s", root)
        c = config
        kinds = [(c.bg_flat, self.flat), (c.bg_gradient, self.gradient), (c.bg_noise, self.noise),
                 (c.bg_texture, self.texture)]
        if self.images:
            kinds.append((c.bg_image, self.image))
        kinds = [k for k in kinds if k[0] > 0] or [(1.0, self.flat)]
        self.kinds = [k[1] for k in kinds]
        total = 0.0
        self.cum = []
        for w, _ in kinds:
            total += w
            self.cum.append(total)

    def make(self, r: random.Random, rng: np.random.Generator, h: int, w: int, lum: float) -> np.ndarray:
        """A background of mean gray level about ``lum`` (0..1)."""
        kind = r.choices(self.kinds, cum_weights=self.cum)[0]
        return kind(r, rng, h, w, lum)

    def _color(self, r: random.Random, lum: float) -> np.ndarray:
        """A colour (3, 1, 1) for broadcasting over planes."""
        return color_with_luminance(r, lum, self.config.p_gray)[:, None, None]

    def flat(self, r: random.Random, rng: np.random.Generator, h: int, w: int, lum: float) -> np.ndarray:
        """One colour."""
        return np.broadcast_to(self._color(r, lum), (3, h, w)).copy()

    def gradient(self, r: random.Random, rng: np.random.Generator, h: int, w: int, lum: float) -> np.ndarray:
        """A linear blend of two colours of nearby gray levels, in a random direction."""
        d = r.uniform(0.05, 0.3)
        c0, c1 = self._color(r, lum - d / 2), self._color(r, lum + d / 2)
        t = _ramp(h, w, r.uniform(0, 2 * np.pi), 1.0 / max(w, 1), 1.0 / max(h, 1))
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        return c0 + (c1 - c0) * t

    def noise(self, r: random.Random, rng: np.random.Generator, h: int, w: int, lum: float) -> np.ndarray:
        """A colour with gray or colour gaussian grain."""
        sigma = r.uniform(3, 18)
        channels = 3 if r.random() < 0.3 else 1
        n = rng.standard_normal((channels, h, w), dtype=np.float32) * np.float32(sigma)
        return _clip255(self._color(r, lum) + n)

    def texture(self, r: random.Random, rng: np.random.Generator, h: int, w: int, lum: float) -> np.ndarray:
        """Procedural textures: blotchy multi-scale noise, stripes, brushed metal or paper grain."""
        style = r.randrange(4)
        if style == 0:  # clouds / stains: two octaves of smooth value noise
            t = _value_noise(rng, h, w, r.uniform(4, 16)) * 0.7 + _value_noise(rng, h, w, r.uniform(1.5, 4)) * 0.3
        elif style == 1:  # stripes, e.g. awnings, wood, corrugated metal
            f = 2 * np.pi / r.uniform(3, 40)
            t = 0.5 + 0.5 * np.sin(_ramp(h, w, r.uniform(0, np.pi), f, f) + r.uniform(0, 6.3))
            if r.random() < 0.5:
                t = (t > 0.5).astype(np.float32)
        elif style == 2:  # brushed: noise smeared along one axis
            t = rng.random((h, w), dtype=np.float32)
            k = r.randint(5, 25)
            t = cv2.blur(t, (k, 1) if r.random() < 0.7 else (1, k))
            t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        else:  # paper / concrete: fine grain over smooth noise
            t = _value_noise(rng, h, w, r.uniform(2, 8)) * 0.6 + rng.random((h, w), dtype=np.float32) * 0.4
        d = r.uniform(0.05, 0.25)
        c0, c1 = self._color(r, lum - d / 2), self._color(r, lum + d / 2)
        return c0 + (c1 - c0) * t

    def fill(self, r: random.Random, rng: np.random.Generator, h: int, w: int, lum: float) -> np.ndarray:
        """A texture for the letters' fill: a photo crop when there are images, else a procedural texture."""
        return self.image(r, rng, h, w, lum) if self.images else self.texture(r, rng, h, w, lum)

    def image(self, r: random.Random, rng: np.random.Generator, h: int, w: int, lum: float) -> np.ndarray:
        """A random crop of a natural image, rescaled, with its gray level shifted towards ``lum``."""
        img = _load_rgb(str(r.choice(self.images)))
        if img is None:
            return self.texture(r, rng, h, w, lum)
        ih, iw = img.shape[:2]
        # Crops 1x..4x the output size: textures seen at a plausible scale.
        scale = r.uniform(1.0, 4.0)
        ch, cw = min(ih, max(2, int(h * scale))), min(iw, max(2, int(w * scale)))
        y, x = r.randint(0, ih - ch), r.randint(0, iw - cw)
        crop = cv2.resize(img[y : y + ch, x : x + cw], (w, h), interpolation=cv2.INTER_AREA)
        c = self.config
        if c.p_bg_flip > 0 and r.random() < c.p_bg_flip:
            crop = crop[:, ::-1]
        if c.p_bg_color_shift > 0 and r.random() < c.p_bg_color_shift:
            crop = _shift_hue_saturation(crop, r.randint(-90, 90), r.uniform(0.5, 1.5))
        crop = np.ascontiguousarray(crop.transpose(2, 0, 1), dtype=np.float32)
        # Reduce contrast so that text stays readable, then move the mean to the requested level.
        crop = crop.mean() + (crop - crop.mean()) * r.uniform(0.3, 0.9)
        return _clip255(crop + (lum * 255.0 - float(crop.mean())))


def _shift_hue_saturation(rgb: np.ndarray, hue: int, saturation: float) -> np.ndarray:
    """``rgb`` (H, W, 3) uint8 with its hue turned by ``hue`` OpenCV units (180 = a full turn) and saturation scaled."""
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)
    hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + hue) % 180).astype(np.uint8)
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _clip255(a: np.ndarray) -> np.ndarray:
    """``a`` limited to 0..255 in place (np.clip's Python overhead is large on small arrays)."""
    np.maximum(a, 0, out=a)
    return np.minimum(a, 255, out=a)


def _ramp(h: int, w: int, angle: float, fx: float, fy: float) -> np.ndarray:
    """x * cos(angle) * fx + y * sin(angle) * fy over the (H, W) grid, float32, built by broadcasting."""
    xs = np.arange(w, dtype=np.float32) * np.float32(np.cos(angle) * fx)
    ys = np.arange(h, dtype=np.float32) * np.float32(np.sin(angle) * fy)
    return ys[:, None] + xs[None, :]


def _value_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth noise (H, W) float32 in 0..1 with features about ``cell`` pixels wide."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    small = rng.random((gh, gw), dtype=np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


@lru_cache(maxsize=512)  # a collected folder (~160 images of <= 640 px, ~130 MB decoded) stays decoded
def _load_rgb(path: str) -> np.ndarray | None:
    """A decoded background image (RGB uint8), cached; None (with a warning) when unreadable."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        log.warning("cannot read background image %s", path)
        return None
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
