"""Plain rendered word images for tests (the real renderer lives in synth_data/)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

# matplotlib's own DejaVu Sans: a file of a pinned dependency, the same on every machine (never a host font). The
# bundled library's subset of it draws the same glyphs but without its kerning table (1 px narrower 'tree'), which
# would change the seeded tests built on these images.
FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def render_word(text: str, height: int = 32, size: int = 24, invert: bool = False) -> np.ndarray:
    """A plain black-on-white (or white-on-black) grayscale image of ``text`` (H, W) uint8."""
    font = ImageFont.truetype(str(FONT), size)
    left, top, right, bottom = font.getbbox(text or " ")
    img = Image.new("L", (max(right - left + 8, 8), height), 0 if invert else 255)
    ImageDraw.Draw(img).text((4 - left, (height - (bottom - top)) // 2 - top), text, font=font,
                             fill=255 if invert else 0)
    return np.asarray(img)
