"""One geometric mapping per sample: curve, rotation, shear, stretch, perspective, crop and scale to the output."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import cv2
import numpy as np

from crnn_synth_data.config import SynthConfig


@dataclass
class Curve:
    """A bend of the canvas: a vertical displacement dy(x) (parabolic "arc", "sine"), or text wrapped along
    a "circle" of radius ``amplitude`` centred below (``phase`` = 1) or above (-1) the text line at ``half_width``."""

    kind: str  # "arc", "sine" or "circle"
    amplitude: float
    center: float
    half_width: float
    period: float = 1.0
    phase: float = 0.0

    def forward(self, pts: np.ndarray) -> np.ndarray:
        """Canvas points (N, 2) float64 moved by the curve."""
        pts = pts.copy()
        if self.kind != "circle":
            pts[:, 1] += self.dy(pts[:, 0])
            return pts
        radius, s, base = self.amplitude, self.phase, self.half_width
        theta = (pts[:, 0] - self.center) / radius
        rho = radius + s * (base - pts[:, 1])
        pts[:, 0] = self.center + rho * np.sin(theta)
        pts[:, 1] = base + s * radius - s * rho * np.cos(theta)
        return pts

    def inverse(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Canvas coordinates (float32) whose image under :meth:`forward` is (x, y)."""
        if self.kind != "circle":
            # The curve only moves pixels vertically, so its inverse is exact: y = y' - dy(x).
            return x, y - self.dy(x).astype(np.float32)
        radius, s, base = self.amplitude, self.phase, self.half_width
        dx = x - np.float32(self.center)
        dy = s * (np.float32(base + s * radius) - y)
        rho = np.sqrt(dx * dx + dy * dy)
        theta = np.arctan2(dx, dy)
        return (np.float32(self.center) + np.float32(radius) * theta).astype(np.float32), (
            np.float32(base) - s * (rho - np.float32(radius))).astype(np.float32)

    def dy(self, x: np.ndarray) -> np.ndarray:
        """Vertical offset (same shape as ``x``) added to canvas y at column x."""
        if self.kind == "arc":
            t = (x - self.center) / self.half_width
            return self.amplitude * t * t
        return self.amplitude * np.sin(x * (2 * math.pi / self.period) + self.phase)


@dataclass
class Warp:
    """Canvas -> output mapping: ``curve`` first (optional), then the homography ``matrix``."""

    matrix: np.ndarray  # (3, 3) float64
    curve: Curve | None
    width: int
    height: int

    def apply(self, layers: np.ndarray) -> np.ndarray:
        """Warp canvas masks (h, w) or (h, w, C<=4) uint8 to the output size, zero outside the canvas."""
        size = (self.width, self.height)
        if self.curve is None:
            return cv2.warpPerspective(layers, self.matrix, size, flags=cv2.INTER_LINEAR, borderValue=0)
        inv = np.linalg.inv(self.matrix)
        u = np.arange(self.width, dtype=np.float32)[None, :]
        v = np.arange(self.height, dtype=np.float32)[:, None]
        den = inv[2, 0] * u + inv[2, 1] * v + inv[2, 2]
        mx = (inv[0, 0] * u + inv[0, 1] * v + inv[0, 2]) / den
        my = (inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]) / den
        mx, my = self.curve.inverse(mx, my)
        return cv2.remap(layers, mx.astype(np.float32), my.astype(np.float32), cv2.INTER_LINEAR, borderValue=0)


def _map_points(matrix: np.ndarray, curve: Curve | None, pts: np.ndarray) -> np.ndarray:
    """Points (N, 2) through the optional curve and the homography."""
    pts = pts.astype(np.float64)
    if curve is not None:
        pts = curve.forward(pts)
    return cv2.perspectiveTransform(pts[:, None, :], matrix)[:, 0, :]


def _boxes_of_points(pts: np.ndarray, n: int, width: int, height: int) -> np.ndarray:
    """Clipped axis-aligned boxes (n, 4) float32 around each group of mapped box points."""
    grouped = pts.reshape(n, -1, 2)
    res = np.concatenate([grouped.min(1), grouped.max(1)], 1)
    np.maximum(res, 0, out=res)
    np.minimum(res, (width, height, width, height), out=res)
    return res.astype(np.float32)


def _box_points(boxes: np.ndarray) -> np.ndarray:
    """Corners and edge midpoints of boxes: (N * 6, 2), enough to follow a gentle curve."""
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    xm = (x0 + x1) / 2
    return np.stack([x0, y0, x1, y0, x0, y1, x1, y1, xm, y0, xm, y1], 1).reshape(-1, 2)


def plan_warp(
    r: random.Random,
    config: SynthConfig,
    boxes: np.ndarray,
    text_height: float,
    pads: tuple[float, float, float, float] | None = None,
    supersample: float = 1.0,
) -> tuple[Warp, np.ndarray]:
    """A random warp putting the text of char ``boxes`` (canvas coords) in a crop ``config.height`` high
    (times ``supersample``), and the char boxes (N, 4) float32 in those output coordinates.

    ``pads`` (left, top, right, bottom, as shares of text height) overrides the random crop padding.
    """
    c = config
    x0, y0 = boxes[:, :2].min(0).tolist()
    x1, y1 = boxes[:, 2:].max(0).tolist()
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    h = max(text_height, 1.0)

    curve = None
    if r.random() < c.p_curve and x1 - x0 > 2 * h:
        amp = r.uniform(0.1, c.max_curve) * h * r.choice((-1, 1))
        if r.random() < 0.6:
            curve = Curve("arc", amp, cx, max((x1 - x0) / 2, 1.0))
        else:
            curve = Curve("sine", amp / 2, cx, 1.0, period=r.uniform(0.7, 2.0) * (x1 - x0), phase=r.uniform(0, 6.3))
    if c.p_circle_arc > 0 and r.random() < c.p_circle_arc and x1 - x0 > 2 * h:
        # The baseline bent along a circle: the text spans 30 degrees up to max_arc_degrees of it.
        angle = math.radians(r.uniform(min(30.0, c.max_arc_degrees), c.max_arc_degrees))
        curve = Curve("circle", (x1 - x0) / angle, cx, y1, phase=r.choice((1.0, -1.0)))

    # Affine part about the text centre, composed in floats: stretch, then shear, then rotation.
    sx = math.exp(r.uniform(math.log(c.stretch_range[0]), math.log(c.stretch_range[1]))) if r.random() < c.p_stretch else 1.0
    sh = r.uniform(-c.max_shear, c.max_shear) if r.random() < c.p_shear else 0.0
    # Triangular distribution: most rotations small, a few near the limit.
    a = math.radians(r.triangular(-c.max_rotation, c.max_rotation, 0)) if r.random() < c.p_rotate else 0.0
    if c.p_strong_rotation > 0 and r.random() < c.p_strong_rotation:
        a = math.radians(r.uniform(-c.max_strong_rotation, c.max_strong_rotation))
    ca, sa = math.cos(a), math.sin(a)
    a00, a01 = ca * sx, -ca * sh - sa
    a10, a11 = sa * sx, -sa * sh + ca
    m = np.array([[a00, a01, cx - a00 * cx - a01 * cy], [a10, a11, cy - a10 * cx - a11 * cy], [0.0, 0.0, 1.0]])
    if r.random() < c.p_perspective:
        quad = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
        src = _map_points(m, None, quad)
        jitter = np.array([r.gauss(0, c.perspective_strength * h) for _ in range(8)]).reshape(4, 2)
        jitter = jitter.clip(-2.5 * c.perspective_strength * h, 2.5 * c.perspective_strength * h)
        p = cv2.getPerspectiveTransform(src.astype(np.float32), (src + jitter).astype(np.float32))
        m = p @ m

    pts = _map_points(m, curve, _box_points(boxes))
    bx0, by0 = pts.min(0).tolist()
    bx1, by1 = pts.max(0).tolist()
    if pads is None:
        pads = (
            r.uniform(*c.pad_horizontal) * r.random(),  # squared-ish: tight crops are the most common
            r.uniform(*c.pad_vertical),
            r.uniform(*c.pad_horizontal) * r.random(),
            r.uniform(*c.pad_vertical),
        )
    # Text height after the mapping, so that padding follows the text's apparent size.
    ph = h * math.sqrt(abs(a00 * a11 - a01 * a10))
    left, top = bx0 - pads[0] * ph, by0 - pads[1] * ph
    right, bottom = bx1 + pads[2] * ph, by1 + pads[3] * ph
    height = c.height if supersample == 1.0 else int(round(c.height * supersample))
    scale = height / max(bottom - top, 1.0)
    width = max(c.min_width, int(round((right - left) * scale)))
    crop = np.array([[scale, 0, -left * scale], [0, scale, -top * scale], [0, 0, 1.0]])
    out = (pts - (left, top)) * scale
    return Warp(crop @ m, curve, width, height), _boxes_of_points(out, len(boxes), width, height)
