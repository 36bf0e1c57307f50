"""A contact sheet of samples with their labels (and optionally character boxes) for eyeballing the data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from crnn_synth_data.render import Sample

_BOX_COLORS = [(230, 40, 40), (40, 200, 60), (40, 120, 255), (240, 180, 0)]


def preview_grid(samples: Sequence[Sample], columns: int = 4, cell_width: int = 260, scale: int = 2, boxes: bool = False) -> Image.Image:
    """An RGB image: each sample scaled ``scale``x (narrowed to fit ``cell_width``) above its label."""
    label_h = 18
    img_h = max(s.image.shape[0] for s in samples) * scale
    rows = (len(samples) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * (cell_width + 8) + 8, rows * (img_h + label_h + 10) + 8), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=14)
    for i, s in enumerate(samples):
        img = s.image if s.image.ndim == 3 else np.repeat(s.image[..., None], 3, 2)
        h, w = img.shape[:2]
        k = min(scale, cell_width / w)
        size = (max(1, round(w * k)), max(1, round(h * k)))
        tile = Image.fromarray(img).resize(size, Image.NEAREST if k >= 1 else Image.BILINEAR)
        x = 8 + (i % columns) * (cell_width + 8)
        y = 8 + (i // columns) * (img_h + label_h + 10)
        sheet.paste(tile, (x, y))
        if boxes:
            for j, (x0, y0, x1, y1) in enumerate(s.boxes):
                draw.rectangle([x + x0 * k, y + y0 * k, x + x1 * k, y + y1 * k], outline=_BOX_COLORS[j % len(_BOX_COLORS)])
        draw.text((x, y + size[1] + 2), s.text, fill=(0, 0, 160), font=font)
    return sheet


def write_preview(samples: Sequence[Sample], path: str | Path, columns: int = 4, boxes: bool = False) -> Path:
    """Save :func:`preview_grid` of ``samples`` as a PNG at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    preview_grid(samples, columns=columns, boxes=boxes).save(path)
    return path
