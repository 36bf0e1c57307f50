"""Turn any image input into the model's input: grayscale, 32 pixels high, normalised, width-bucketed."""

from __future__ import annotations

import io
import math
import os
import re
import stat
import struct
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Union

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from crnn.errors import InvalidImageError
from crnn.frozen_config import FrozenConfig, Setting

if TYPE_CHECKING:
    from torch import Tensor

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray]


class PreprocessConfig(FrozenConfig):
    """How images are turned into model input; stored in checkpoints next to the model config.

    Frozen (hashable, and shared by threads and worker processes), and a FrozenConfig, not a pydantic Config:
    `crnn ocr` reads it from every checkpoint header, and pydantic would add ~0.1 s to its start-up. It validates
    as the pydantic model of the same fields would (crnn/frozen_config.py).
    """

    kind = "preprocess"

    height: int = Setting(32, ge=1)
    min_width: int = Setting(16, ge=1)
    max_width: int = Setting(1024, ge=1)
    # Resized widths are rounded to a multiple of this (see resized_width), so images of one bucket
    # batch together with no padding and a result never depends on the rest of its batch.
    width_bucket: int = Setting(8, ge=1)
    max_pixels: int = Setting(40_000_000, ge=1)
    min_side: int = Setting(4, ge=1)
    max_aspect: float = Setting(64.0, gt=0.0)
    # Decode a JPEG at 1/2, 1/4 or 1/8 scale (PIL's Image.draft, done inside libjpeg) while it stays at least
    # twice config.height high: a 4000x1000 crop costs 1/64 of the memory and a fraction of the time. Results
    # differ slightly from a full decode, so it is off by default (the server turns it on). Never stored in
    # checkpoints (exclude), so checkpoints stay readable by versions without it.
    jpeg_draft: bool = Setting(False, exclude=True)


def _describe(source: object) -> str:
    # Only a path names its input in messages; bytes, PIL images and arrays have no name worth showing
    # (a caller that has one, e.g. the server's part name, puts it beside the message).
    if isinstance(source, (str, os.PathLike)):
        return os.fsdecode(source)
    return ""


def _msg(name: str, text: str) -> str:
    """One message style for every input: ``path: problem`` for a path, just ``problem`` otherwise."""
    return f"{name}: {text}" if name else text


# Pixel kinds an array may hold: bool, signed and unsigned integers, floats. Anything else (object,
# strings, bytes, structured records, complex, datetime64, timedelta64) is no image.
_PIXEL_KINDS = frozenset("biuf")


def _draft(img: Image.Image, min_height: int) -> None:
    """Let libjpeg decode ``img`` (not yet loaded) at the smallest 1/2^k scale that keeps the text's height
    (after EXIF rotation) at least ``min_height``; PNG and the other formats have no such reduced decode."""
    w, h = img.size
    try:
        if img.getexif().get(0x0112) in (5, 6, 7, 8):  # stored sideways: the text's height is the stored width
            w, h = h, w
    except Exception:
        pass
    if h <= min_height:
        return
    scale = min_height / h
    size = (max(1, math.ceil(img.size[0] * scale)), max(1, math.ceil(img.size[1] * scale)))
    img.draft("L" if img.mode in ("L", "RGB", "YCbCr") else img.mode, size)


def _open_pil(data: bytes | Path, max_pixels: int, name: str, draft_height: int | None = None,
              size: int | None = None) -> Image.Image:
    # A path is opened lazily by PIL, so a huge file is refused from its header without reading it all.
    if isinstance(data, Path):
        if (data.stat().st_size if size is None else size) == 0:  # ``size``: the caller's stat of the file
            raise InvalidImageError(_msg(name, "empty file (0 bytes)"))
    elif not data:
        raise InvalidImageError(_msg(name, "empty input (0 bytes)"))
    try:
        with warnings.catch_warnings():
            # PIL's own bomb check warns past 89 M pixels; ours (max_pixels, from the header) decides. Its
            # hard error (past 179 M) still comes first, from Image.open: reported as our pixel limit too.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(data if isinstance(data, Path) else io.BytesIO(data))
            w, h = img.size  # read from the header, before any pixel is decoded
            if w * h > max_pixels:
                raise InvalidImageError(_msg(name, f"image of {w}x{h} pixels is over the limit of {max_pixels:,} pixels"))
            if draft_height is not None and img.format == "JPEG":
                _draft(img, draft_height)
            img.load()
    except InvalidImageError:
        raise
    except PermissionError as e:
        raise InvalidImageError(_msg(name, f"cannot read ({e.strerror or e})")) from None
    except UnidentifiedImageError:
        raise InvalidImageError(_msg(name, "not an image file (unknown or unsupported format)")) from None
    except Image.DecompressionBombError as e:
        found = re.search(r"\((\d+) pixels\)", str(e))
        size = f"image of {int(found.group(1)):,} pixels" if found else "image"
        raise InvalidImageError(_msg(name, f"{size} is over the limit of {max_pixels:,} pixels")) from None
    except (OSError, SyntaxError, ValueError, TypeError, struct.error, EOFError) as e:
        raise InvalidImageError(_msg(name, f"corrupt or truncated image ({e})")) from None
    return img


# EXIF orientations that turn or flip the image (1, and a missing tag, leave it as it is).
_TRANSPOSING = frozenset(range(2, 9))


def _pil_to_gray(img: Image.Image, name: str) -> np.ndarray:
    try:
        # exif_transpose copies an image it leaves as it is (nearly every one): asked only where it turns the
        # image, the same pixels without the copy. getexif() is cached on the image, so it is parsed once.
        img.load()  # as exif_transpose starts (a PNG's eXIf chunk may follow its pixels)
        if img.getexif().get(ExifTags.Base.Orientation, 1) in _TRANSPOSING:
            img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block should not lose an otherwise good image
        pass
    try:
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            return _array_to_gray(np.asarray(img), name)  # its own dtype: 2 bytes a pixel for 16-bit, not 8
        if img.mode == "LAB":  # PIL cannot convert LAB to L; its L channel is the lightness already
            return np.asarray(img.getchannel("L"), dtype=np.uint8)
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            img = _flatten_alpha(img.convert("RGBA"))
        return np.asarray(img.convert("L"), dtype=np.uint8)
    except InvalidImageError:
        raise
    except (OSError, ValueError, TypeError, SyntaxError, EOFError) as e:  # a mode PIL cannot turn into gray
        raise InvalidImageError(_msg(name, f"unsupported image mode {img.mode!r} ({e})")) from None


def _flatten_alpha(img: Image.Image) -> Image.Image:
    # Transparent pixels become white, as a viewer shows them on a page.
    background = Image.new("RGBA", img.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, img).convert("RGB")


def _array_to_gray(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype.kind not in _PIXEL_KINDS or arr.dtype.fields is not None:
        raise InvalidImageError(_msg(name, f"array of dtype {arr.dtype} is not an image (expected bool, integer or float pixels)"))
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] == 4:
        alpha = arr[:, :, 3:4].astype(np.float64) / (65535.0 if arr.dtype == np.uint16 else 255.0 if arr.dtype == np.uint8 else 1.0)
        white = {np.dtype(np.uint16): 65535.0, np.dtype(np.uint8): 255.0}.get(arr.dtype, 1.0)
        arr = arr[:, :, :3].astype(np.float64) * alpha + white * (1.0 - alpha)
    if arr.ndim == 3 and arr.shape[2] == 3:
        # ITU-R 601 luma, the weights PIL's "L" conversion uses; arrays are taken as RGB.
        arr = arr.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    if arr.ndim != 2:
        raise InvalidImageError(_msg(name, f"array of shape {arr.shape} is not a gray, RGB or RGBA image"))
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.size == 0:
        raise InvalidImageError(_msg(name, "empty image (0 pixels)"))
    if arr.dtype.kind in "iu" and arr.dtype.itemsize <= 2:
        # 8- and 16-bit integers without float64 copies (a 16 M pixel 16-bit PNG took ~0.5 GB that way); the
        # same values as the float path below: x * 255 / 65535 = x / 257 is never within 0.002 of a .5.
        lo, hi = int(arr.min()), int(arr.max())
        if hi <= 1 and lo >= 0:
            return arr.astype(np.uint8) * np.uint8(255)
        if hi <= 255:
            return np.clip(arr, 0, 255).astype(np.uint8)
        return np.clip(np.rint(arr.astype(np.float32) * np.float32(255.0 / 65535.0)), 0, 255).astype(np.uint8)
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise InvalidImageError(_msg(name, "array holds NaN or infinite values"))
    if arr.size == 0:
        raise InvalidImageError(_msg(name, "empty image (0 pixels)"))
    hi = arr.max()
    if hi <= 1.0 and arr.min() >= 0.0:
        scale = 255.0
    elif hi <= 255.0:
        scale = 1.0
    else:  # 16-bit (or wider) data
        scale = 255.0 / 65535.0 if hi <= 65535 else 255.0 / hi
    return np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class PixelConverter:
    """How a decoded input becomes the pixels a caller reads: ``from_pil(image, name)`` for files, bytes and PIL images,
    ``from_array(array, name)`` for numpy arrays; both return uint8 (H, W) or (H, W, C) and raise InvalidImageError."""

    from_pil: Callable[[Image.Image, str], np.ndarray]
    from_array: Callable[[np.ndarray, str], np.ndarray]


GRAY = PixelConverter(_pil_to_gray, _array_to_gray)  # the recognizer's: grayscale (H, W) uint8


def decode_image(source: ImageSource, converter: PixelConverter, max_pixels: int = PreprocessConfig().max_pixels,
                 draft_height: int | None = None) -> np.ndarray:
    """The pixels of a path, encoded bytes, a PIL image or a numpy array, as ``converter`` makes them (uint8, (H, W)
    or (H, W, C)): the one input dispatch of the crop loader (GRAY) and the photo loader (crnn.detection.photo_image).

    EXIF orientation is applied (by the converter); images over ``max_pixels`` are refused from their header, before
    decoding. With ``draft_height``, a JPEG is decoded at a reduced scale that keeps it at least that high (see
    PreprocessConfig.jpeg_draft). Raises InvalidImageError with a message naming the problem.
    """
    name = _describe(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        # One stat for the usual case, a regular file (Path.exists, is_file and the size each stat it): anything
        # else goes through those checks, so that what they say (or raise) stays theirs.
        try:
            st: os.stat_result | None = path.stat()
        except (OSError, ValueError):
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            if not path.exists():
                raise InvalidImageError(_msg(name, "no such file"))
            if not path.is_file():
                raise InvalidImageError(_msg(name, "not a file"))
        out = converter.from_pil(_open_pil(path, max_pixels, name, draft_height, st.st_size if st else None), name)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        try:
            data = bytes(source)
        except (TypeError, ValueError, BufferError) as e:  # e.g. a non-contiguous memoryview
            raise InvalidImageError(f"unreadable buffer ({e})") from None
        out = converter.from_pil(_open_pil(data, max_pixels, name, draft_height), name)
    elif isinstance(source, Image.Image):
        w, h = source.size
        if w * h > max_pixels:
            raise InvalidImageError(f"image of {w}x{h} pixels is over the limit of {max_pixels:,} pixels")
        out = converter.from_pil(source, name)
    elif isinstance(source, np.ndarray):
        if source.size > max_pixels * (source.shape[2] if source.ndim == 3 else 1):
            raise InvalidImageError(f"array of shape {source.shape} is over the limit of {max_pixels:,} pixels")
        out = converter.from_array(source, name)
    else:
        raise InvalidImageError(
            f"unsupported input of type {type(source).__name__}: expected a path, bytes, a PIL image or a numpy array"
        )
    if out.size == 0 or min(out.shape[:2]) == 0:
        raise InvalidImageError(_msg(name, f"empty image ({out.shape[1] if out.ndim >= 2 else 0}x{out.shape[0]} pixels)"))
    return out


def load_image(source: ImageSource, max_pixels: int = PreprocessConfig().max_pixels,
               draft_height: int | None = None) -> np.ndarray:
    """A grayscale uint8 array (H, W) from a path, encoded bytes, a PIL image or a numpy array (decode_image with
    GRAY; see there for limits, EXIF and ``draft_height``). Raises InvalidImageError with a message naming the problem.
    """
    return decode_image(source, GRAY, max_pixels, draft_height)


def resized_width(height: int, width: int, config: PreprocessConfig) -> int:
    """Width after scaling ``height`` x ``width`` to config.height: a multiple of config.width_bucket, clamped.

    Rounding the width (a change of aspect of at most half a bucket) instead of padding means no image has
    padded frames: the recurrent layers run unpacked (several times faster on CPU) and see just the image.
    """
    b = config.width_bucket
    w = int(round(width * config.height / height / b)) * b
    lo = -(-config.min_width // b) * b
    return max(lo, min(config.max_width // b * b, w))


def bucket_width(width: int, config: PreprocessConfig) -> int:
    """Padded width of an image resized to ``width``: the next multiple of config.width_bucket."""
    return int(math.ceil(width / config.width_bucket) * config.width_bucket)


def width_batches(widths: Sequence[int], batch_size: int, config: PreprocessConfig) -> Iterator[list[int]]:
    """Indices of images of these (resized) ``widths`` in batches of one width bucket each, sorted by width."""
    order = sorted(range(len(widths)), key=lambda i: widths[i])
    for _, group in groupby(order, key=lambda i: bucket_width(widths[i], config)):
        idx = list(group)
        for start in range(0, len(idx), batch_size):
            yield idx[start : start + batch_size]


def check_shape(gray: np.ndarray, config: PreprocessConfig, name: str = "") -> None:
    """Refuse images too small or too elongated to hold a word (raises InvalidImageError)."""
    h, w = gray.shape[:2]
    if min(h, w) < config.min_side:
        raise InvalidImageError(_msg(name, f"{w}x{h} pixels is too small (each side must be at least {config.min_side})"))
    if w / h > config.max_aspect or h / w > config.max_aspect:
        raise InvalidImageError(
            _msg(name, f"{w}x{h} pixels has an aspect ratio beyond {config.max_aspect:g}:1, not a word image")
        )


def normalize(gray: np.ndarray, config: PreprocessConfig, name: str = "") -> np.ndarray:
    """Model input (config.height, W') float32 in [-1, 1] from a grayscale uint8 image (H, W)."""
    check_shape(gray, config, name)
    h, w = gray.shape
    return resize_normalized(gray, resized_width(h, w, config), config)


def resize_normalized(gray: np.ndarray, width: int, config: PreprocessConfig) -> np.ndarray:
    """(config.height, ``width``) float32 in [-1, 1] from a checked grayscale uint8 image (H, W)."""
    interp = cv2.INTER_AREA if gray.shape[0] > config.height else cv2.INTER_CUBIC
    resized = cv2.resize(gray, (width, config.height), interpolation=interp)
    return resized.astype(np.float32) * (2.0 / 255.0) - 1.0


def prepare(source: ImageSource, config: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """load_image then normalize: (config.height, W') float32."""
    draft = 2 * config.height if config.jpeg_draft else None
    return normalize(load_image(source, config.max_pixels, draft), config, _describe(source))


def collate(arrays: list[np.ndarray], config: PreprocessConfig = PreprocessConfig()) -> tuple[Tensor, Tensor]:
    """Batch normalised images: (B, 1, H, Wmax) padded with 0 to the largest bucket, and widths (B,).

    Images of one bucket padded together give the same result as each alone (see Recognizer).
    """
    import torch  # here, not at the top: the image-decoding processes of `crnn ocr` run without torch

    batch, widths = pad_batch(arrays, config)
    return torch.from_numpy(batch), torch.from_numpy(widths)


def pad_batch(arrays: list[np.ndarray], config: PreprocessConfig = PreprocessConfig()) -> tuple[np.ndarray, np.ndarray]:
    """:func:`collate` in numpy: (B, 1, H, Wmax) float32 padded with 0 to the largest bucket, and widths (B,) int64."""
    if not arrays:
        raise ValueError("collate needs at least one image")
    widths = [a.shape[1] for a in arrays]
    padded_w = max(bucket_width(w, config) for w in widths)
    batch = np.zeros((len(arrays), 1, config.height, padded_w), dtype=np.float32)
    for i, a in enumerate(arrays):
        batch[i, 0, :, : a.shape[1]] = a
    return batch, np.asarray(widths, dtype=np.int64)
