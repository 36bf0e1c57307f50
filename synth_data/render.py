"""WordRenderer: text -> glyph masks -> styled layers -> one warp -> background and colours -> degradations."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

import cv2
import numpy as np

from crnn_synth_data.backgrounds import BackgroundMaker
from crnn_synth_data.colors import color_with_luminance, contrasting_luminance
from crnn_synth_data.config import SynthConfig
from crnn_synth_data.degrade import Degrader
from crnn_synth_data.fonts import FontPool, GlyphSet
from crnn_synth_data.geometry import plan_warp
from crnn_synth_data.layout import Line, draw_line, layout_line
from crnn_synth_data.orientation import orient_sample
from crnn_synth_data.text import TextSampler


@dataclass
class Sample:
    """One rendered word: image (H, W) uint8 gray (or (H, W, 3) RGB), its text, and (N, 4) float32 char boxes."""

    image: np.ndarray
    text: str
    boxes: np.ndarray  # x0, y0, x1, y1 per non-space character of text, in reading order


def sample_seed(seed: int, index: int) -> int:
    """The integer seeding sample ``index`` of stream ``seed``: distinct for every (seed, index) pair."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    return (seed << 64) | index


_ELLIPSES = {k: cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)) for k in range(1, 5)}


class WordRenderer:
    """Renders sample ``index`` of stream ``seed``; fonts, glyphs, lexicon and the pipeline are cached."""

    def __init__(self, config: SynthConfig | None = None, fonts: FontPool | None = None, words: list[str] | None = None) -> None:
        self.config = config or SynthConfig()
        self.texts = TextSampler(self.config, words)
        self.fonts = fonts or FontPool(self.config)
        self.backgrounds = BackgroundMaker(self.config)
        self.degrader = Degrader(self.config)
        # Re-seeded in place for every sample: cheaper than new generator objects.
        self._r = random.Random()
        self._rng = np.random.Generator(np.random.PCG64(0))

    def render(self, seed: int, index: int) -> Sample:
        """Sample ``index`` of stream ``seed``: always the same image, in any process."""
        c = self.config
        r = self._r
        r.seed(sample_seed(seed, index))
        text, gs = self._text_and_font(r)
        rng = self._rng
        rng.bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {"state": r.getrandbits(128), "inc": r.getrandbits(128) | 1},
            "has_uint32": 0,
            "uinteger": 0,
        }

        tracking = self._tracking(r, gs)
        line = layout_line(gs, text, tracking, space_scale=r.uniform(0.8, 1.6))
        ix0, iy0, ix1, iy1 = line.ink
        text_h = iy1 - iy0
        margin = int(gs.size * 0.6) + 6
        mid_lines = self._midground(r, gs, line) if r.random() < c.p_midground else []
        top = margin - int(iy0) + (int(text_h * 1.6) if any(s < 0 for s, _ in mid_lines) else 0)
        bottom_room = int(iy1) + margin + (int(text_h * 1.6) if any(s > 0 for s, _ in mid_lines) else 0)
        canvas_h = top + bottom_room
        canvas_w = int(line.width) + 2 * margin + max(0, int(ix1 - line.width))
        x_off = margin - min(0, int(ix0))

        text_mask = np.zeros((canvas_h, canvas_w), np.uint8)
        draw_line(text_mask, line, x_off, top)
        if r.random() < c.p_fake_bold:
            text_mask = cv2.dilate(text_mask, _ELLIPSES[1] if gs.size > 40 else np.ones((2, 2), np.uint8))
        boxes = line.boxes + np.array([x_off, top, x_off, top], np.float32)

        layers = [text_mask]
        outline_only = r.random() < c.p_outline_only
        border = outline_only or r.random() < c.p_border
        if border:
            k = r.choice((1, 1, 2, 2, 3)) if not outline_only else r.choice((1, 2))
            layers.append(cv2.dilate(text_mask, _ELLIPSES[k]))
        shadow = r.random() < c.p_shadow
        if shadow:
            layers.append(_shadow(r, layers[-1]))
        mid_mask = None
        if mid_lines:
            mid_mask = np.zeros_like(text_mask)
            for side, mline in mid_lines:
                mx0, my0, mx1, my1 = mline.ink
                gap = r.uniform(0.08, 0.45) * text_h
                baseline = top + iy0 - gap - my1 if side < 0 else top + iy1 + gap - my0
                draw_line(mid_mask, mline, x_off + int(r.uniform(-0.6, 0.4) * line.width), int(baseline))
            layers.append(mid_mask)

        pads = self._pads(r, mid_lines)
        warp, out_boxes = plan_warp(r, c, boxes, text_h, pads)
        stack = layers[0] if len(layers) == 1 else np.dstack(layers)
        scale = warp.height / max(canvas_h, 1)
        if warp.height / (text_h * (1 + pads[1] + pads[3]) + 1e-6) < 0.6 or scale < 0.25:
            # Strong minification: pre-blur so that the bilinear warp does not alias thin strokes.
            stack = cv2.GaussianBlur(stack, (0, 0), 0.8)
        warped = warp.apply(stack)
        if warped.ndim == 2:
            warped = warped[..., None]
        image = self._compose(r, rng, warped, border, shadow, outline_only, mid_mask is not None)
        image = self.degrader(image, r, rng)
        if not c.color:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        # Last, so that with the layouts off (the default) nothing is drawn and every stream stays as it was.
        return orient_sample(Sample(image, text, out_boxes), c, r)

    def _text_and_font(self, r: random.Random) -> tuple[str, GlyphSet]:
        """A text and a face that can draw it (texts no face can draw are redrawn)."""
        for _ in range(50):
            text = self.texts.sample(r)
            face = self.fonts.pick(text, r)
            if face is not None:
                return text, self.fonts.glyphs(face)
        raise RuntimeError("no font can draw the sampled texts; check SynthConfig.font_dirs and charset")

    def _tracking(self, r: random.Random, gs: GlyphSet) -> float:
        """Extra pixels between characters: mostly natural, sometimes touching, sometimes spaced out."""
        u = r.random()
        if u < self.config.p_tight_spacing:
            return -r.uniform(0.01, 0.07) * gs.size
        if u < self.config.p_tight_spacing + self.config.p_wide_spacing:
            return r.uniform(0.05, 0.35) * gs.size
        return r.uniform(-0.02, 0.04) * gs.size

    def _midground(self, r: random.Random, gs: GlyphSet, line: Line) -> list[tuple[int, Line]]:
        """One or two neighbouring lines (side -1 above, +1 below) in this font, at least as wide as the text."""
        sides = [r.choice((-1, 1))] if r.random() < 0.75 else [-1, 1]
        out = []
        for side in sides:
            words = []
            width = 0.0
            while width < line.width * 1.6 and len(words) < 8:
                w = self.texts.sample(r)
                if not set(w) - {" "} <= gs.face.chars:
                    continue
                words.append(w)
                width += len(w) * gs.size * 0.55
            mline = layout_line(gs, " ".join(words), self._tracking(r, gs))
            if len(mline.boxes):
                out.append((side, mline))
        return out

    def _pads(self, r: random.Random, mid_lines: list[tuple[int, Line]]) -> tuple[float, float, float, float]:
        """Crop padding (left, top, right, bottom) in text heights; wider on a side with midground text."""
        c = self.config
        ph, pv = c.pad_horizontal, c.pad_vertical
        # Products of uniforms: tight crops are the most common, loose ones still occur.
        pads = [r.uniform(*ph) * r.random(), r.uniform(*pv), r.uniform(*ph) * r.random(), r.uniform(*pv)]
        for side, _ in mid_lines:
            i = 1 if side < 0 else 3
            pads[i] = max(pads[i], r.uniform(0.15, 0.5))
        return pads[0], pads[1], pads[2], pads[3]

    def _compose(
        self, r: random.Random, rng: np.random.Generator, warped: np.ndarray,
        border: bool, shadow: bool, outline_only: bool, midground: bool,
    ) -> np.ndarray:
        """Background plus coloured layers (H, W, 3) uint8; text contrast controlled in gray level."""
        c = self.config
        h, w = warped.shape[:2]
        light_text = r.random() < c.p_light_on_dark
        bg_lum = r.uniform(0.0, 0.7) if light_text else r.uniform(0.3, 1.0)
        img = self.backgrounds.make(r, rng, h, w, bg_lum)  # planar (3, H, W): fast broadcasting
        if r.random() < c.p_panel_edge:
            _panel_edge(r, img, color_with_luminance(r, r.random(), c.p_gray))
        actual = float(img.mean()) / 255.0
        fg_lum = contrasting_luminance(r, actual, c.min_contrast, light_text)
        fg = color_with_luminance(r, fg_lum, c.p_gray)[:, None, None]
        alpha = warped.transpose(2, 0, 1).astype(np.float32) * np.float32(1 / 255.0)  # (layers, H, W)
        ch = 1
        if border:
            b_alpha = alpha[ch]
            ch += 1
        if shadow:
            s_alpha = alpha[ch] * np.float32(r.uniform(0.4, 0.9))
            ch += 1
            s_col = color_with_luminance(r, min(fg_lum, actual) * r.uniform(0.0, 0.5), c.p_gray)[:, None, None]
            img += (s_col - img) * s_alpha
        if midground:
            m_col = fg if r.random() < 0.6 else color_with_luminance(
                r, contrasting_luminance(r, actual, c.min_contrast, r.random() < 0.5), c.p_gray)[:, None, None]
            img += (m_col - img) * alpha[ch]
        if border:
            b_lum = contrasting_luminance(r, fg_lum, 0.25, fg_lum < 0.5)
            b_col = fg if outline_only else color_with_luminance(r, b_lum, c.p_gray)[:, None, None]
            img += (b_col - img) * b_alpha
        if outline_only:
            fg = color_with_luminance(r, actual, c.p_gray)[:, None, None]
        elif r.random() < 0.15:
            # Unevenly lit or painted letters: the fill varies a little across the word.
            fg = fg + (rng.random((1, h, 1), dtype=np.float32) - 0.5) * np.float32(r.uniform(10, 50))
        img += (fg - img) * alpha[0]
        np.maximum(img, 0, out=img)
        np.minimum(img, 255, out=img)
        return cv2.merge(list(img.astype(np.uint8)))


def _shadow(r: random.Random, mask: np.ndarray) -> np.ndarray:
    """``mask`` shifted by a few pixels and softened: a drop shadow."""
    dx, dy = r.randint(-4, 4), r.randint(1, 4) * r.choice((-1, 1, 1))
    h, w = mask.shape
    out = np.zeros_like(mask)
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = mask[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    sigma = r.uniform(0, 2)
    return cv2.GaussianBlur(out, (0, 0), sigma) if sigma > 0.5 else out


def _panel_edge(r: random.Random, bg: np.ndarray, color: np.ndarray) -> None:
    """Paint a strip at one edge of planar ``bg`` (3, H, W) in place: the border of a sign behind a loose crop."""
    _, h, w = bg.shape
    side = r.randrange(4)
    frac = r.uniform(0.03, 0.15)
    color = color[:, None, None]
    if side == 0:
        bg[:, : max(1, int(h * frac))] = color
    elif side == 1:
        bg[:, h - max(1, int(h * frac)) :] = color
    elif side == 2:
        bg[:, :, : max(1, int(h * frac * 1.5))] = color
    else:
        bg[:, :, w - max(1, int(h * frac * 1.5)) :] = color


_cached: tuple[str, WordRenderer] | None = None


def render_sample(config: SynthConfig, seed: int, index: int) -> Sample:
    """Sample ``index`` of stream ``seed`` under ``config`` (a module-level renderer is cached per config)."""
    global _cached
    key = json.dumps(config.to_dict(), sort_keys=True)
    if _cached is None or _cached[0] != key:
        _cached = (key, WordRenderer(config))
    return _cached[1].render(seed, index)
