"""WordRenderer: text -> glyph masks -> styled layers -> one warp -> background and colours -> degradations."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass

import cv2
import numpy as np

from crnn_synth_data.backgrounds import BackgroundMaker
from crnn_synth_data.blending import blend, gray
from crnn_synth_data.camera import Camera
from crnn_synth_data.clutter import clutter_mask
from crnn_synth_data.colors import color_with_luminance, contrasting_luminance
from crnn_synth_data.config import SynthConfig
from crnn_synth_data.degrade import Degrader
from crnn_synth_data.fonts import FontPool, GlyphSet
from crnn_synth_data.geometry import plan_warp
from crnn_synth_data.glyph_variation import vary_glyphs
from crnn_synth_data.layout import Line, draw_line, layout_line
from crnn_synth_data.orientation import orient_sample
from crnn_synth_data.palette import Palette
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


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_ELLIPSES = {k: cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)) for k in range(1, 5)}


class WordRenderer:
    """Renders sample ``index`` of stream ``seed``; fonts, glyphs, lexicon and the pipeline are cached."""

    def __init__(self, config: SynthConfig | None = None, fonts: FontPool | None = None, words: list[str] | None = None) -> None:
        self.config = config or SynthConfig()
        self.texts = TextSampler(self.config, words)
        self.fonts = fonts or FontPool(self.config)
        self.backgrounds = BackgroundMaker(self.config)
        self.degrader = Degrader(self.config)
        c = self.config
        camera_on = any(p > 0 for p in (c.p_supersample, c.p_lowres, c.p_gamma, c.p_lighting, c.p_sensor_noise))
        self.camera = Camera(c) if camera_on else None
        self.palette = Palette.load(c.backgrounds_dir) if c.p_palette_colors > 0 else None
        # Re-seeded in place for every sample: cheaper than new generator objects.
        self._r = random.Random()
        self._rng = np.random.Generator(np.random.PCG64(0))

    def render(self, seed: int, index: int) -> Sample:
        """Sample ``index`` of stream ``seed``: always the same image, in any process."""
        c = self.config
        r = self._r
        r.seed(sample_seed(seed, index))
        text, gs, multiword = self._text_and_font(r)
        rng = self._rng
        rng.bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {"state": r.getrandbits(128), "inc": r.getrandbits(128) | 1},
            "has_uint32": 0,
            "uinteger": 0,
        }

        tracking = self._tracking(r, gs)
        space_scale = r.uniform(0.8, 1.6)
        # A multi-word line: the words' ink a set gap apart (plus any letter-spacing, as typesetters widen the space
        # with the tracking), so every space of the label is visible; word crops keep the space glyph's advance.
        gap = self._word_gap(r, gs) + max(tracking, 0.0) if multiword else None
        line = layout_line(gs, text, tracking, space_scale=space_scale, word_gap=gap)
        line = self._vary_glyphs(r, rng, gs, line)
        ix0, iy0, ix1, iy1 = line.ink
        text_h = iy1 - iy0
        margin = int(gs.size * 0.6) + 6
        mid_lines = self._midground(r, gs, line) if r.random() < c.p_midground else []
        # A detector's line box would hold a neighbouring word on the baseline: multi-word lines have none.
        neighbors = (self._neighbors(r, gs) if not multiword and c.p_neighbor_words > 0 and r.random() < c.p_neighbor_words
                     else [])
        room = [0, 0]  # canvas widths added on the left and the right for neighbouring words
        for side, nline, gap in neighbors:
            room[side > 0] = int(nline.ink[2] + gap) + 2
        top = margin - int(iy0) + (int(text_h * 1.6) if any(s < 0 for s, _ in mid_lines) else 0)
        bottom_room = int(iy1) + margin + (int(text_h * 1.6) if any(s > 0 for s, _ in mid_lines) else 0)
        canvas_h = top + bottom_room
        canvas_w = int(line.width) + 2 * margin + max(0, int(ix1 - line.width)) + room[0] + room[1]
        x_off = margin - min(0, int(ix0)) + room[0]

        text_mask = np.zeros((canvas_h, canvas_w), np.uint8)
        draw_line(text_mask, line, x_off, top)
        if r.random() < c.p_fake_bold:
            text_mask = cv2.dilate(text_mask, _ELLIPSES[1] if gs.size > 40 else np.ones((2, 2), np.uint8))
        boxes = line.boxes + np.array([x_off, top, x_off, top], np.float32)

        layers = [text_mask]
        outline_only = r.random() < c.p_outline_only
        border = outline_only or r.random() < c.p_border
        if border:
            k = r.choice(_BORDERS[c.max_border]) if not outline_only else r.choice((1, 2))
            layers.append(cv2.dilate(text_mask, _ELLIPSES[k]))
        shadow = r.random() < c.p_shadow
        extrude = c.p_extrude > 0 and r.random() < c.p_extrude  # takes the shadow's layer
        if extrude:
            layers.append(_extrusion(r, layers[-1], gs.size))
        elif shadow:
            layers.append(_shadow(r, layers[-1], c.max_shadow_offset, c.max_shadow_blur))
        mid_mask = None
        if mid_lines or neighbors:
            mid_mask = np.zeros_like(text_mask)
            for side, mline in mid_lines:
                mx0, my0, mx1, my1 = mline.ink
                gap = r.uniform(0.08, 0.45) * text_h
                baseline = top + iy0 - gap - my1 if side < 0 else top + iy1 + gap - my0
                draw_line(mid_mask, mline, x_off + int(r.uniform(-0.6, 0.4) * line.width), int(baseline))
            for side, nline, gap in neighbors:
                nx = x_off + int(ix0) - int(gap) - int(nline.ink[2]) if side < 0 else x_off + int(ix1 + gap)
                draw_line(mid_mask, nline, nx, top)
            layers.append(mid_mask)

        pads = self._line_pads(r, mid_lines) if multiword else self._pads(r, mid_lines)
        for side, nline, gap in neighbors:
            # Show part of the neighbour (up to 60% of it): the crop cuts it, as real word crops often do.
            i = 0 if side < 0 else 2
            pads = tuple(max(v, (gap + r.uniform(0.1, 0.6) * nline.ink[2]) / max(text_h, 1.0)) if k == i else v
                         for k, v in enumerate(pads))
        ss = r.uniform(*c.supersample_range) if c.p_supersample > 0 and r.random() < c.p_supersample else 1.0
        warp, out_boxes = plan_warp(r, c, boxes, text_h, pads, ss)
        stack = layers[0] if len(layers) == 1 else np.dstack(layers)
        scale = warp.height / max(canvas_h, 1)
        if warp.height / (text_h * (1 + pads[1] + pads[3]) + 1e-6) < 0.6 or scale < 0.25:
            # Strong minification: pre-blur so that the bilinear warp does not alias thin strokes.
            stack = cv2.GaussianBlur(stack, (0, 0), 0.8)
        warped = warp.apply(stack)
        if warped.ndim == 2:
            warped = warped[..., None]
        image = self._compose(r, rng, warped, border, shadow or extrude, outline_only, mid_mask is not None,
                              extrude, out_boxes)
        if self.camera is not None:
            size = (max(c.min_width, int(round(warp.width / ss))), c.height)
            if ss != 1.0:
                out_boxes = _scale_boxes(out_boxes, size[0] / warp.width, size[1] / warp.height, size)
            heights = out_boxes[:, 3] - out_boxes[:, 1]
            image = self.camera(image, r, rng, size, float(heights.max()) if len(heights) else float(c.height))
        image = self.degrader(image, r, rng)
        if not c.color:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        # Last, so that with the layouts off (the default) nothing is drawn and every stream stays as it was.
        return orient_sample(Sample(image, text, out_boxes), c, r)

    def _text_and_font(self, r: random.Random) -> tuple[str, GlyphSet, bool]:
        """A text, a face that can draw it (texts no face can draw are redrawn), and whether it is a multi-word line."""
        multiword = self.config.p_multiword > 0 and r.random() < self.config.p_multiword  # no draw when off
        for _ in range(50):
            text = self.texts.line(r) if multiword else self.texts.sample(r)
            face = self.fonts.pick(text, r)
            if face is not None:
                return text, self.fonts.glyphs(face), multiword
        raise RuntimeError("no font can draw the sampled texts; check SynthConfig.font_dirs and charset")

    def _vary_glyphs(self, r: random.Random, rng: np.random.Generator, gs: GlyphSet, line: Line) -> Line:
        """``line`` with per-character jitter and/or elastic distortion, when drawn."""
        c = self.config
        jitter = c.glyph_jitter if c.p_glyph_jitter > 0 and r.random() < c.p_glyph_jitter else None
        elastic = r.uniform(0.5, 1.5) * gs.size / 32 if c.p_glyph_elastic > 0 and r.random() < c.p_glyph_elastic else 0.0
        if jitter is None and elastic == 0.0:
            return line
        return vary_glyphs(line, r, rng, gs.size, jitter, elastic)

    def _neighbors(self, r: random.Random, gs: GlyphSet) -> list[tuple[int, Line, float]]:
        """A word on the left and/or the right of the text, on its baseline: (side, line, gap in px)."""
        sides = [r.choice((-1, 1))] if r.random() < 0.7 else [-1, 1]
        out = []
        for side in sides:
            for _ in range(5):
                w = self.texts.sample(r).split(" ")[0]
                if w and set(w) <= gs.face.chars:
                    nline = layout_line(gs, w, self._tracking(r, gs))
                    if len(nline.boxes):
                        out.append((side, nline, r.uniform(0.25, 0.6) * gs.size))
                    break
        return out

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

    def _word_gap(self, r: random.Random, gs: GlyphSet) -> float:
        """The ink gap (canvas px) between the words of a multi-word line: the face's space advance times a factor
        drawn log-uniformly from ``multiword_gap`` (a font without a usable space counts a quarter em)."""
        lo, hi = self.config.multiword_gap
        space = gs.glyph(" ").advance
        if not 0.1 * gs.size <= space <= gs.size:
            space = 0.25 * gs.size
        return space * math.exp(r.uniform(math.log(lo), math.log(hi)))

    def _line_pads(self, r: random.Random, mid_lines: list[tuple[int, Line]]) -> tuple[float, float, float, float]:
        """Crop margins (left, top, right, bottom) in text heights of a detector's line box: a little room on every
        side (``multiword_pad``), never cutting the text; wider on a side with midground text."""
        lo, hi = self.config.multiword_pad
        pads = [r.uniform(lo, hi) for _ in range(4)]
        for side, _ in mid_lines:
            i = 1 if side < 0 else 3
            pads[i] = max(pads[i], r.uniform(0.15, 0.5))
        return pads[0], pads[1], pads[2], pads[3]

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
        extrude: bool = False, boxes: np.ndarray | None = None,
    ) -> np.ndarray:
        """Background plus coloured layers (H, W, 3) uint8; text contrast controlled in gray level."""
        c = self.config
        h, w = warped.shape[:2]
        light_text = r.random() < c.p_light_on_dark
        bg_lum = r.uniform(0.0, 0.7) if light_text else r.uniform(0.3, 1.0)
        min_contrast = c.low_contrast if c.p_low_contrast > 0 and r.random() < c.p_low_contrast else c.min_contrast
        pair = None
        if self.palette is not None and r.random() < c.p_palette_colors:
            pair = self.palette.pair(r, min_contrast)  # co-occurring colours of one photograph
            if pair is not None:
                bg_lum = float(pair[0] @ _LUMA) / 255.0
        img = self.backgrounds.make(r, rng, h, w, bg_lum)  # planar (3, H, W): fast broadcasting
        if pair is not None:
            img += (pair[0] - img.mean(axis=(1, 2)))[:, None, None]
        if r.random() < c.p_panel_edge:
            _panel_edge(r, img, color_with_luminance(r, r.random(), c.p_gray))
        if c.p_clutter > 0 and r.random() < c.p_clutter:
            m = clutter_mask(r, h, w).astype(np.float32) * np.float32(1 / 255.0)
            img += (color_with_luminance(r, r.random(), c.p_gray)[:, None, None] - img) * m
        if pair is not None or c.p_clutter > 0:
            np.clip(img, 0, 255, out=img)
        actual = float(img.mean()) / 255.0
        if pair is not None:
            fg_lum = float(pair[1] @ _LUMA) / 255.0
            fg = pair[1][:, None, None]
        else:
            fg_lum = contrasting_luminance(r, actual, min_contrast, light_text)
            fg = color_with_luminance(r, fg_lum, c.p_gray)[:, None, None]
        alpha = warped.transpose(2, 0, 1).astype(np.float32) * np.float32(1 / 255.0)  # (layers, H, W)
        ch = 1
        if border:
            b_alpha = alpha[ch]
            ch += 1
        if extrude:
            # The sides of 3-D letters: the fill colour in shade (darker, or lighter for dark letters).
            s_col = fg * np.float32(r.uniform(0.3, 0.6)) if fg_lum > 0.35 else fg + (255 - fg) * np.float32(r.uniform(0.3, 0.6))
            img += (s_col - img) * alpha[ch]
            ch += 1
        elif shadow:
            s_alpha = alpha[ch] * np.float32(r.uniform(0.4, 0.9))
            ch += 1
            s_col = color_with_luminance(r, min(fg_lum, actual) * r.uniform(0.0, 0.5), c.p_gray)[:, None, None]
            img += (s_col - img) * s_alpha
        if midground:
            m_col = fg if r.random() < 0.6 else color_with_luminance(
                r, contrasting_luminance(r, actual, min_contrast, r.random() < 0.5), c.p_gray)[:, None, None]
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
        if not outline_only and c.p_texture_fill > 0 and r.random() < c.p_texture_fill:
            fg = self.backgrounds.fill(r, rng, h, w, fg_lum)  # letters cut out of a photograph or a texture
        if c.p_glyph_color > 0 and boxes is not None and len(boxes) and r.random() < c.p_glyph_color:
            fg = _per_glyph_color(r, fg, boxes, h, w)
        target = fg
        if c.p_blend > 0 and r.random() < c.p_blend:
            mode = r.choice(c.blend_modes)
            blended = blend(mode, img, fg)
            # A blend can erase the text (darken of light text): keep it only if the text stays visible.
            a0 = alpha[0]
            ink = float(a0.sum())
            if ink > 0 and float((np.abs(gray(blended) - gray(img)) * a0).sum()) / ink >= 0.75 * 255 * min_contrast:
                target = blended
        img += (target - img) * alpha[0]
        np.maximum(img, 0, out=img)
        np.minimum(img, 255, out=img)
        return cv2.merge(list(img.astype(np.uint8)))


def _shifted(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``mask`` moved by (dx, dy) pixels, zero where it moved in from outside."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = mask[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def _shadow(r: random.Random, mask: np.ndarray, max_offset: int = 4, max_blur: float = 2.0) -> np.ndarray:
    """``mask`` shifted by a few pixels and softened: a drop shadow."""
    dx, dy = r.randint(-max_offset, max_offset), r.randint(1, max_offset) * r.choice((-1, 1, 1))
    out = _shifted(mask, dx, dy)
    sigma = r.uniform(0, max_blur)
    return cv2.GaussianBlur(out, (0, 0), sigma) if sigma > 0.5 else out


def _extrusion(r: random.Random, mask: np.ndarray, size: int) -> np.ndarray:
    """The side faces of 3-D letters: ``mask`` swept 2-8% of the font size in one direction, one pixel a step."""
    depth = max(2, int(size * r.uniform(0.03, 0.09)))
    angle = r.uniform(0, 2 * np.pi)
    out = mask.copy()
    for k in range(1, depth + 1):
        np.maximum(out, _shifted(mask, int(round(k * np.cos(angle))), int(round(k * np.sin(angle)))), out=out)
    return out


def _per_glyph_color(r: random.Random, fg: np.ndarray, boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    """The fill (3, H, W) with each character's columns shifted by its own colour offset (hand-painted letters)."""
    field = np.array(np.broadcast_to(fg, (3, h, w)), np.float32)
    for x0, _, x1, _ in boxes:
        d = np.array([r.uniform(-30, 30) for _ in range(3)], np.float32)[:, None, None]
        field[:, :, int(x0) : int(np.ceil(x1))] += d
    return field


def _scale_boxes(boxes: np.ndarray, sx: float, sy: float, size: tuple[int, int]) -> np.ndarray:
    """Boxes (N, 4) scaled by (sx, sy) and clipped to ``size`` (width, height)."""
    out = boxes * np.array([sx, sy, sx, sy], np.float32)
    np.minimum(out, np.array([size[0], size[1], size[0], size[1]], np.float32), out=out)
    return np.maximum(out, 0, out=out).astype(np.float32)


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


# Outline radii to draw from: thin ones most often (max_border 3 is the v1 draw).
_BORDERS = {m: tuple(k for k in (1, 1, 2, 2, 3, 4) if k <= m) for m in range(1, 5)}

_cached: tuple[str, WordRenderer] | None = None


def render_sample(config: SynthConfig, seed: int, index: int) -> Sample:
    """Sample ``index`` of stream ``seed`` under ``config`` (a module-level renderer is cached per config)."""
    global _cached
    key = json.dumps(config.to_dict(), sort_keys=True)
    if _cached is None or _cached[0] != key:
        _cached = (key, WordRenderer(config))
    return _cached[1].render(seed, index)
