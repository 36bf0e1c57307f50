"""Rendered scenes: whole photos with several signs of one to three lines of words, each word's polygon and text known,
as a development and test set for full-photo OCR (crnn.detection) and, later, training data for a detector.

A scene is a procedural background (the word renderer's BackgroundMaker) with distractors (its clutter: poles,
lines, panel edges; plus blank panels without text), then signs: each sign's lines are laid out with the word
renderer's glyphs (crnn_synth_data.layout) on a flat canvas, optionally on a panel, and put into the photo through one
perspective warp (scale, rotation, foreshortening), the text coloured against what lies under it. Occluders (a pole
or a blob) may then cover parts of words; a word more than OCCLUDED_DONT_CARE hidden is labelled ``###`` (don't care,
as ICDAR 2015 labels illegible words). Last the camera: blur, uneven light, noise and JPEG.

Folders are written like ../shared/realtrain/SVT_train_full: ``img/*.jpg`` and ``annotations.jsonl``, one line per
photo: ``{"image": "img/scene_000000.jpg", "words": [{"polygon": [[x, y] x 4], "box": [x, y, w, h], "text": ...}]}``
(``box`` the polygon's bounding box, for readers of SVT's format).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from crnn_synth_data.backgrounds import BackgroundMaker
from crnn_synth_data.clutter import clutter_mask
from crnn_synth_data.colors import color_with_luminance, contrasting_luminance
from crnn_synth_data.config import SynthConfig
from crnn_synth_data.fonts import FontPool, GlyphSet
from crnn_synth_data.layout import Line, draw_line, layout_line
from crnn_synth_data.render import sample_seed
from crnn_synth_data.text import TextSampler

SCENE_SIZE = (960, 720)  # width, height: IC15's photos are 1280 x 720
GLYPH_SIZE = 64  # glyphs are rasterised at this size, then scaled by the warp (mostly down)
TEXT_HEIGHTS = (14.0, 90.0)  # a line's x-height-to-descender span in the photo, px (drawn log-uniformly)
OCCLUDED_DONT_CARE = 0.3
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass
class SceneWord:
    """A word of a scene: its text (``###`` when mostly hidden) and quadrilateral (4, 2) float32, clockwise from the
    top-left corner of the word as it reads."""

    text: str
    polygon: np.ndarray

    def to_dict(self) -> dict[str, object]:
        """The annotation line's word: ``polygon``, ``box`` (x, y, w, h of its bounding box) and ``text``."""
        p = self.polygon
        x0, y0 = float(p[:, 0].min()), float(p[:, 1].min())
        box = [round(x0), round(y0), round(float(p[:, 0].max()) - x0), round(float(p[:, 1].max()) - y0)]
        return {"polygon": np.round(p.astype(np.float64), 1).tolist(), "box": box, "text": self.text}


@dataclass
class Scene:
    """A rendered photo (H, W, 3) uint8 RGB and its words."""

    image: np.ndarray
    words: list[SceneWord]


class SceneRenderer:
    """Renders scene ``index`` of stream ``seed`` (always the same photo); fonts and lexicon as the word renderer's."""

    def __init__(self, config: SynthConfig | None = None, size: tuple[int, int] = SCENE_SIZE,
                 fonts: FontPool | None = None, words: list[str] | None = None) -> None:
        self.config = config or SynthConfig()
        self.size = size
        self.texts = TextSampler(self.config, words)
        self.fonts = fonts or FontPool(self.config)
        self.backgrounds = BackgroundMaker(self.config)
        self._glyphs: dict[tuple[str, int], GlyphSet] = {}

    def _glyph_set(self, text: str, r: random.Random) -> GlyphSet | None:
        face = self.fonts.pick(text, r)
        if face is None:
            return None
        key = (face.path, face.index)
        if key not in self._glyphs:
            self._glyphs[key] = GlyphSet(face, GLYPH_SIZE)
        return self._glyphs[key]

    def render(self, seed: int, index: int) -> Scene:
        """Scene ``index`` of stream ``seed``."""
        r = random.Random(sample_seed(seed, index) ^ 0x5C3E)  # a stream apart from the word renderer's
        rng = np.random.default_rng(r.getrandbits(64))
        w, h = self.size
        img = self.backgrounds.make(r, rng, h, w, r.uniform(0.15, 0.85))  # planar (3, H, W) float32
        for _ in range(r.randint(0, 3)):  # blank panels: text-like rectangles that hold no text
            self._panel(r, img, self._random_quad(r, w, h))
        if r.random() < 0.7:
            m = clutter_mask(r, h, w).astype(np.float32) / 255.0
            img += (color_with_luminance(r, r.random(), 0.3)[:, None, None] - img) * m
        occupied = np.zeros((h, w), np.uint8)
        words: list[SceneWord] = []
        for _ in range(r.randint(1, 5)):
            words += self._sign(r, img, occupied)
        np.clip(img, 0, 255, out=img)
        hidden = self._occluders(r, rng, img) if r.random() < 0.5 else None
        if hidden is not None:
            for word in words:
                if _covered(hidden, word.polygon) > OCCLUDED_DONT_CARE:
                    word.text = "###"
        image = self._camera(r, rng, cv2.merge(list(np.clip(img, 0, 255).astype(np.uint8))))
        return Scene(image, words)

    def _random_quad(self, r: random.Random, w: int, h: int) -> np.ndarray:
        cx, cy = r.uniform(0, w), r.uniform(0, h)
        hw, hh = r.uniform(0.05, 0.25) * w, r.uniform(0.03, 0.12) * h
        a = np.deg2rad(r.gauss(0, 6))
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        corners = np.array([[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]]) @ rot.T
        return (corners + [cx, cy]).astype(np.float32)

    def _panel(self, r: random.Random, img: np.ndarray, quad: np.ndarray) -> None:
        mask = np.zeros(img.shape[1:], np.uint8)
        cv2.fillConvexPoly(mask, np.round(quad).astype(np.int32), 255, cv2.LINE_AA)
        colour = color_with_luminance(r, r.random(), 0.3)[:, None, None]
        img += (colour - img) * (mask.astype(np.float32) / 255.0)

    def _lines(self, r: random.Random) -> tuple[list[str], GlyphSet] | None:
        """One to three lines of one to three texts each, and a face that draws them all."""
        lines = []
        for _ in range(r.choice((1, 1, 2, 2, 3))):
            # Mostly dictionary words (signs), some numbers, codes and phrases: the word renderer's mix has many random
            # strings for the recognizer's sake, which signs rarely show.
            lines.append(" ".join(self.texts.word(r) if r.random() < 0.7 else self.texts.sample(r)
                                  for _ in range(r.choice((1, 1, 2, 2, 3)))))
        for _ in range(5):
            gs = self._glyph_set("".join(lines), r)
            if gs is not None:
                return lines, gs
        return None

    def _sign(self, r: random.Random, img: np.ndarray, occupied: np.ndarray) -> list[SceneWord]:
        """Lay out one sign, warp it into a free part of ``img`` (planar, in place) and return its words."""
        drawn = self._lines(r)
        if drawn is None:
            return []
        texts, gs = drawn
        tracking = r.uniform(-0.02, 0.08) * gs.size
        laid = [layout_line(gs, t, tracking, space_scale=r.uniform(1.0, 1.8)) for t in texts]
        laid = [(t, line) for t, line in zip(texts, laid) if len(line.boxes)]
        if not laid:
            return []
        pitch = gs.size * r.uniform(1.15, 1.5)
        width = max(line.ink[2] for _, line in laid)
        align = r.choice(("left", "centre"))
        margin = gs.size * 0.5
        canvas_w = int(width + 2 * margin) + 2
        canvas_h = int(pitch * len(laid) + 2 * margin) + 2
        mask = np.zeros((canvas_h, canvas_w), np.uint8)
        local_words: list[tuple[str, np.ndarray]] = []
        for k, (text, line) in enumerate(laid):
            x = int(margin + ((width - line.ink[2]) / 2 if align == "centre" else 0))
            baseline = int(margin + gs.ascent * 0.9 + k * pitch)
            draw_line(mask, line, x, baseline)
            local_words += _word_boxes(text, line, x, baseline)
        # The warp: scale to a text height, rotate a little, foreshorten, and place where nothing is yet.
        scale = np.exp(r.uniform(*np.log(TEXT_HEIGHTS))) / gs.size
        w, h = self.size
        if canvas_w * scale > 0.95 * w or canvas_h * scale > 0.9 * h:
            scale = min(0.95 * w / canvas_w, 0.9 * h / canvas_h)
        src = np.array([[0, 0], [canvas_w, 0], [canvas_w, canvas_h], [0, canvas_h]], np.float32)
        for _ in range(12):
            m = _placement(r, src * scale, w, h)
            if m is None:
                continue
            m = m @ np.diag([scale, scale, 1.0])
            outline = cv2.perspectiveTransform(src[None].astype(np.float64), m)[0]
            footprint = np.zeros((h, w), np.uint8)
            cv2.fillConvexPoly(footprint, np.round(outline).astype(np.int32), 1)
            if (footprint & occupied).any():
                continue
            occupied |= footprint
            break
        else:
            return []
        if r.random() < 0.6:
            pad = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32) * margin * r.uniform(0.2, 0.9)
            self._panel(r, img, cv2.perspectiveTransform((src + pad)[None].astype(np.float64), m)[0].astype(np.float32))
        alpha = cv2.warpPerspective(mask, m, (w, h), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        a = alpha.astype(np.float32) / 255.0
        under = float((img.mean(axis=0) * a).sum() / max(a.sum(), 1e-6)) / 255.0
        fg_lum = contrasting_luminance(r, under, r.uniform(0.25, 0.5), r.random() < 0.4)
        img += (color_with_luminance(r, fg_lum, 0.4)[:, None, None] - img) * a
        out = []
        for text, box in local_words:
            quad = cv2.perspectiveTransform(box[None].astype(np.float64), m)[0].astype(np.float32)
            out.append(SceneWord(text, quad))
        return out

    def _occluders(self, r: random.Random, rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
        """Paint one or two occluders (a pole, a blob) over the photo in place; their mask (H, W) uint8."""
        h, w = img.shape[1:]
        mask = np.zeros((h, w), np.uint8)
        for _ in range(r.choice((1, 1, 2))):
            if r.random() < 0.5:  # a pole or a post
                x = r.uniform(0, w)
                half = r.uniform(0.01, 0.04) * w
                tilt = r.uniform(-0.08, 0.08) * h
                pts = np.array([[x - half, 0], [x + half, 0], [x + half + tilt, h], [x - half + tilt, h]], np.int32)
                cv2.fillConvexPoly(mask, pts, 255, cv2.LINE_AA)
            else:  # a blob: a branch, a head, a car's corner
                centre = (int(r.uniform(0, w)), int(r.uniform(0, h)))
                axes = (int(r.uniform(0.03, 0.12) * w), int(r.uniform(0.03, 0.12) * h))
                cv2.ellipse(mask, centre, axes, r.uniform(0, 180), 0, 360, 255, -1, cv2.LINE_AA)
        colour = color_with_luminance(r, r.random(), 0.5)[:, None, None]
        texture = self.backgrounds.texture(r, rng, h, w, float(colour.mean()) / 255.0)
        img += (texture - img) * (mask.astype(np.float32) / 255.0)
        return mask

    def _camera(self, r: random.Random, rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
        """Blur, uneven light, sensor noise and JPEG compression."""
        out = image.astype(np.float32)
        sigma = r.uniform(0.0, 1.3)
        if sigma > 0.3:
            out = cv2.GaussianBlur(out, (0, 0), sigma)
        h, w = out.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        a = r.uniform(0, 2 * np.pi)
        ramp = (np.cos(a) * xx / w + np.sin(a) * yy / h)
        out *= (1.0 + r.uniform(-0.35, 0.35) * (ramp - ramp.mean()))[:, :, None]
        out += rng.normal(0, r.uniform(0, 6), out.shape).astype(np.float32)
        out = np.clip(out, 0, 255).astype(np.uint8)
        ok, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, r.randint(40, 95)])
        return cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if ok else out


def _word_boxes(text: str, line: Line, x: int, baseline: int) -> list[tuple[str, np.ndarray]]:
    """Each word of a laid-out line with its ink box as a quadrilateral (4, 2) on the sign's canvas."""
    out = []
    k = 0  # index into line.boxes, which has one box per non-space character
    for word in text.split(" "):
        if not word:
            continue
        b = line.boxes[k : k + len(word)]
        k += len(word)
        x0, y0 = float(b[:, 0].min()) + x, float(b[:, 1].min()) + baseline
        x1, y1 = float(b[:, 2].max()) + x, float(b[:, 3].max()) + baseline
        out.append((word, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)))
    return out


def _placement(r: random.Random, size_quad: np.ndarray, w: int, h: int) -> np.ndarray | None:
    """A homography from a sign of the given (scaled) size to somewhere inside the photo: a small rotation, corners
    moved for foreshortening, then a translation; None when it cannot fit."""
    sw, sh = float(size_quad[2, 0]), float(size_quad[2, 1])
    a = np.deg2rad(max(-25.0, min(25.0, r.gauss(0, 8))))
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    centred = size_quad - [sw / 2, sh / 2]
    jitter = np.array([[r.uniform(-1, 1) * 0.12 * sw, r.uniform(-1, 1) * 0.15 * sh] for _ in range(4)])
    moved = (centred + jitter * r.random()) @ rot.T
    lo, hi = moved.min(axis=0), moved.max(axis=0)
    if hi[0] - lo[0] > w or hi[1] - lo[1] > h:
        return None
    cx, cy = r.uniform(-lo[0], w - hi[0]), r.uniform(-lo[1], h - hi[1])
    return cv2.getPerspectiveTransform(size_quad.astype(np.float32), (moved + [cx, cy]).astype(np.float32))


def _covered(mask: np.ndarray, polygon: np.ndarray) -> float:
    """The share of ``polygon``'s pixels that ``mask`` covers."""
    inside = np.zeros(mask.shape, np.uint8)
    cv2.fillConvexPoly(inside, np.round(polygon).astype(np.int32), 1)
    n = int(inside.sum())
    return float((mask[inside > 0] > 127).sum()) / n if n else 0.0


def write_scenes(config: SynthConfig, out: str | Path, count: int, seed: int = 0, start: int = 0,
                 quality: int = 95) -> int:
    """Render scenes ``start..start+count-1`` of stream ``seed`` into folder ``out`` (img/ and annotations.jsonl,
    appended to when it exists); returns the number written."""
    root = Path(out)
    (root / "img").mkdir(parents=True, exist_ok=True)
    renderer = SceneRenderer(config)
    with open(root / "annotations.jsonl", "a", encoding="utf-8") as f:
        for i in range(start, start + count):
            scene = renderer.render(seed, i)
            name = f"img/scene_{seed}_{i:06d}.jpg"
            cv2.imwrite(str(root / name), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
            f.write(json.dumps({"image": name, "words": [w.to_dict() for w in scene.words]}) + "\n")
    return count
