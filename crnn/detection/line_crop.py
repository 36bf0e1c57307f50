"""Cutting a detected quadrilateral out of a photo as an upright rectangle (a perspective warp), and mapping boxes in
that crop back to the photo through the same warp."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# A crop this many times taller than wide is text running down the photo (rapidocr's rule, 1.5): it is turned.
TALL_RATIO = 1.5


@dataclass(frozen=True)
class LineCrop:
    """A region cut upright out of a photo: the crop (h, w) uint8 gray, the 3x3 homography from photo pixels to
    crop pixels, and the quarter turns (counter-clockwise) its corners were rolled by before the cut."""

    image: np.ndarray
    to_crop: np.ndarray
    turns: int = 0

    def to_photo(self, points: np.ndarray) -> np.ndarray:
        """Points (N, 2) in crop pixels (x to the right, y down; corners at 0 and w, h) as photo pixels (N, 2)."""
        inverse = np.linalg.inv(self.to_crop)
        pts = np.asarray(points, np.float64).reshape(-1, 1, 2)
        return cv2.perspectiveTransform(pts, inverse).reshape(-1, 2).astype(np.float32)

    def box_to_photo(self, x0: float, x1: float, y0: float = 0.0, y1: float | None = None) -> np.ndarray:
        """The crop's rectangle x0..x1 by y0..y1 (default the full height) as a photo quadrilateral (4, 2),
        clockwise from its top-left corner as the text reads."""
        y1 = float(self.image.shape[0]) if y1 is None else y1
        return self.to_photo(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64))


def crop_size(quad: np.ndarray) -> tuple[int, int]:
    """(width, height) of the upright crop of ``quad`` (4, 2): its longer top/bottom and left/right edges."""
    q = np.asarray(quad, np.float64)
    w = max(np.linalg.norm(q[0] - q[1]), np.linalg.norm(q[3] - q[2]))
    h = max(np.linalg.norm(q[0] - q[3]), np.linalg.norm(q[1] - q[2]))
    return max(1, int(round(w))), max(1, int(round(h)))


def cut(photo: np.ndarray, quad: np.ndarray, turns: int = 0) -> LineCrop:
    """The quadrilateral ``quad`` (4, 2; clockwise from the top-left) of ``photo`` (H, W) uint8 warped upright,
    after rolling its corners by ``turns`` quarter turns counter-clockwise (1: the text runs down the photo, read
    from its top; 3: it runs up). Border pixels repeat (cv2.BORDER_REPLICATE), as rapidocr's crop does."""
    q = np.roll(np.asarray(quad, np.float32).reshape(4, 2), -turns, axis=0)
    w, h = crop_size(q)
    target = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    m = cv2.getPerspectiveTransform(q, target)
    image = cv2.warpPerspective(photo, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return LineCrop(image, m, turns % 4)


def is_tall(quad: np.ndarray) -> bool:
    """Whether ``quad``'s upright crop is at least TALL_RATIO times taller than wide."""
    w, h = crop_size(quad)
    return h >= TALL_RATIO * w
