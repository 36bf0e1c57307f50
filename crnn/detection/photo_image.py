"""Loading a whole photo in colour (the detector was trained on colour photos): the crop loader's input dispatch,
limits and one-line errors (crnn.io.preprocess.decode_image) with an RGB converter instead of its gray one."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from crnn.errors import InvalidImageError
from crnn.io.preprocess import (ImageSource, PixelConverter, PreprocessConfig, _array_to_gray, _flatten_alpha, _msg,
                                decode_image)


def _pil_to_rgb(img: Image.Image, name: str) -> np.ndarray:
    """A PIL image upright (EXIF) as RGB (H, W, 3) uint8; transparency over white, 16-bit and float modes as gray."""
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


def _array_to_rgb(arr: np.ndarray, name: str) -> np.ndarray:
    """An RGB (H, W, 3) uint8 array as it is; anything else the gray loader takes (16-bit, float, RGBA, bool) as gray."""
    if arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    return np.repeat(_array_to_gray(arr, name)[:, :, None], 3, axis=2)


RGB = PixelConverter(_pil_to_rgb, _array_to_rgb)


def load_photo(source: ImageSource, max_pixels: int = PreprocessConfig().max_pixels) -> np.ndarray:
    """An RGB uint8 array (H, W, 3) from a path, encoded bytes, a PIL image or a numpy array (gray, RGB or RGBA).

    EXIF orientation is applied; photos over ``max_pixels`` are refused from their header, before decoding.
    Raises InvalidImageError with a message naming the problem."""
    return decode_image(source, RGB, max_pixels)
