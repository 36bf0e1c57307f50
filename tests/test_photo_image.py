"""The photo loader (crnn.detection.photo_image): the crop loader's input dispatch and errors with an RGB converter."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from crnn.detection.photo_image import load_photo
from crnn.errors import InvalidImageError
from crnn.io.preprocess import load_image


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


RGB = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)


@pytest.mark.parametrize("source, expected", [
    (RGB, RGB),  # an RGB array as it is
    (Image.fromarray(RGB), RGB),
    (_png(Image.fromarray(RGB)), RGB),
    (np.full((5, 7), 9, np.uint8), np.full((5, 7, 3), 9, np.uint8)),  # gray -> three equal channels
    (np.zeros((4, 4), bool), np.zeros((4, 4, 3), np.uint8)),
    (_png(Image.new("RGBA", (6, 4), (0, 0, 0, 0))), np.full((4, 6, 3), 255, np.uint8)),  # transparent over white
])
def test_photo_loader_gives_rgb(source, expected):
    out = load_photo(source)
    assert out.dtype == np.uint8 and out.shape == expected.shape
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("source, message", [
    (b"", "empty input"),
    (_png(Image.fromarray(RGB))[:60], "corrupt or truncated"),
    (b"not an image", "not an image file"),
    (np.zeros((0, 5, 3), np.uint8), "empty image"),
    (np.zeros((3000, 3000, 3), np.uint8), "over the limit"),
    (["a list"], "unsupported input"),
    ("/no/such/photo.jpg", "no such file"),
])
def test_photo_and_crop_loaders_refuse_alike(source, message):
    limit = 1_000_000
    with pytest.raises(InvalidImageError, match=message) as photo:
        load_photo(source, limit)
    with pytest.raises(InvalidImageError, match=message) as crop:
        load_image(source, limit)
    if "empty image" not in message:  # (an empty RGB array: the gray converter says so before the dispatch)
        assert str(photo.value) == str(crop.value)  # the one dispatch's message
