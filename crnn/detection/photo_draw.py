"""A photo with its words drawn on it (`crnn ocr --detect --draw DIR`): each word's box outlined and its text written
on a filled label above the box (PIL; Pillow's bundled font, so no host font is needed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from crnn.detection.photo_reader import PhotoWord

BOX_COLOUR = (0, 220, 0)
LABEL_COLOUR, TEXT_COLOUR = (0, 160, 0), (255, 255, 255)


def draw_words(rgb: np.ndarray, words: Sequence[PhotoWord]) -> Image.Image:
    """The RGB photo (H, W, 3) uint8 with each word's polygon outlined and its text on a label above it."""
    img = Image.fromarray(np.ascontiguousarray(rgb[:, :, :3]), "RGB")
    draw = ImageDraw.Draw(img)
    width = max(1, round(max(img.size) / 500))  # lines stay visible on a big photo
    for word in words:
        points = [(float(x), float(y)) for x, y in np.asarray(word.polygon)]
        draw.line(points + points[:1], fill=BOX_COLOUR, width=width)
        # The label is as tall as half the word's box (at least 10 px), written at its top-left corner.
        h = float(np.linalg.norm(np.asarray(word.polygon[3]) - np.asarray(word.polygon[0])))
        font = ImageFont.load_default(size=max(10, round(h / 2)))
        x, y = points[0]
        left, top, right, bottom = draw.textbbox((x, y), word.text, font=font, anchor="lb")
        draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=LABEL_COLOUR)
        draw.text((x, y), word.text, fill=TEXT_COLOUR, font=font, anchor="lb")
    return img
