"""Loading a whole photo in colour (the detector was trained on colour photos), under the same limits and with the
same one-line errors as the recognizer's gray loader (crnn.io.preprocess.load_image)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from crnn.errors import InvalidImageError
from crnn.io.preprocess import ImageSource, PreprocessConfig, _array_to_gray, _describe, _flatten_alpha, _msg, _open_pil

# Smaller than this on either side, a photo holds no text a detector can find; it is an empty result, not an error.
MIN_PHOTO_SIDE = 1


def _pil_to_rgb(img: Image.Image, name: str) -> np.ndarray:
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block should not lose an otherwise good photo
        pass
    try:
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            img = _flatten_alpha(img.convert("RGBA"))
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            return np.repeat(_array_to_gray(np.asarray(img), name)[:, :, None], 3, axis=2)
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, TypeError, SyntaxError, EOFError) as e:
        raise InvalidImageError(_msg(name, f"unsupported image mode {img.mode!r} ({e})")) from None


def load_photo(source: ImageSource, max_pixels: int = PreprocessConfig().max_pixels) -> np.ndarray:
    """An RGB uint8 array (H, W, 3) from a path, encoded bytes, a PIL image or a numpy array (gray, RGB or RGBA).

    EXIF orientation is applied; photos over ``max_pixels`` are refused from their header, before decoding.
    Raises InvalidImageError with a message naming the problem."""
    name = _describe(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise InvalidImageError(_msg(name, "no such file"))
        if not path.is_file():
            raise InvalidImageError(_msg(name, "not a file"))
        rgb = _pil_to_rgb(_open_pil(path, max_pixels, name), name)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        try:
            data = bytes(source)
        except (TypeError, ValueError, BufferError) as e:
            raise InvalidImageError(f"unreadable buffer ({e})") from None
        rgb = _pil_to_rgb(_open_pil(data, max_pixels, name), name)
    elif isinstance(source, Image.Image):
        w, h = source.size
        if w * h > max_pixels:
            raise InvalidImageError(f"image of {w}x{h} pixels is over the limit of {max_pixels:,} pixels")
        rgb = _pil_to_rgb(source, name)
    elif isinstance(source, np.ndarray):
        pixels = source.shape[0] * source.shape[1] if source.ndim >= 2 else source.size
        if pixels > max_pixels:
            raise InvalidImageError(f"array of shape {source.shape} is over the limit of {max_pixels:,} pixels")
        if source.ndim == 3 and source.shape[2] == 3 and source.dtype == np.uint8:
            rgb = np.ascontiguousarray(source)
        else:  # anything else the gray loader takes (16-bit, float, RGBA, bool): read as gray
            rgb = np.repeat(_array_to_gray(source, name)[:, :, None], 3, axis=2)
    else:
        raise InvalidImageError(
            f"unsupported input of type {type(source).__name__}: expected a path, bytes, a PIL image or a numpy array")
    if rgb.ndim != 3 or min(rgb.shape[:2]) < MIN_PHOTO_SIDE:
        raise InvalidImageError(_msg(name, f"empty image ({rgb.shape[1] if rgb.ndim > 1 else 0}x{rgb.shape[0]} pixels)"))
    return rgb
