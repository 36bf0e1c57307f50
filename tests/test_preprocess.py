import io
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crnn.errors import InvalidImageError
from crnn.io.preprocess import PreprocessConfig, bucket_width, collate, load_image, prepare
from tests.word_images import render_word

WORD = render_word("Hello")  # (32, W) uint8


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF", "WEBP"])
def test_encoded_bytes(fmt: str) -> None:
    rgb = Image.fromarray(WORD).convert("RGB")
    gray = load_image(_encode(rgb, fmt))
    assert gray.shape == WORD.shape and gray.dtype == np.uint8
    assert np.abs(gray.astype(int) - WORD).mean() < 8  # lossy formats differ a little


def test_path_and_pil(tmp_path: Path) -> None:
    p = tmp_path / "w.png"
    Image.fromarray(WORD).save(p)
    assert np.array_equal(load_image(p), WORD)
    assert np.array_equal(load_image(str(p)), WORD)
    assert np.array_equal(load_image(Image.open(p)), WORD)


@pytest.mark.parametrize(
    "array",
    [
        WORD,
        np.stack([WORD] * 3, axis=2),
        np.dstack([WORD, WORD, WORD, np.full_like(WORD, 255)]),
        WORD[:, :, None],
        WORD.astype(np.uint16) * 257,
        WORD.astype(np.float32) / 255.0,
    ],
    ids=["gray", "rgb", "rgba", "gray-hw1", "16-bit", "float01"],
)
def test_numpy_kinds(array: np.ndarray) -> None:
    gray = load_image(array)
    assert gray.shape == WORD.shape
    assert np.abs(gray.astype(int) - WORD).max() <= 1


def test_sixteen_bit_png() -> None:
    img = Image.fromarray(WORD.astype(np.uint16) * 257)
    gray = load_image(_encode(img, "PNG"))
    assert np.abs(gray.astype(int) - WORD).max() <= 1


def test_transparent_pixels_become_white() -> None:
    rgba = np.zeros((32, 64, 4), np.uint8)  # fully transparent black
    assert (load_image(rgba) == 255).all()


def test_exif_orientation_applied() -> None:
    img = Image.fromarray(WORD)
    rotated = img.transpose(Image.Transpose.ROTATE_90)  # stored sideways...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...with a tag saying "rotate 90 CW to display"
    data = _encode(rotated.convert("RGB"), "JPEG", exif=exif.tobytes(), quality=95)
    gray = load_image(data)
    assert gray.shape == WORD.shape


@pytest.mark.parametrize("height,width", [(32, 100), (64, 40), (10, 300), (100, 5000)])
def test_prepare_height_and_clamped_width(height: int, width: int) -> None:
    cfg = PreprocessConfig(min_width=16, max_width=1024)
    out = prepare(np.full((height, width), 128, np.uint8), cfg)
    assert out.shape[0] == 32 and out.dtype == np.float32
    assert 16 <= out.shape[1] <= 1024
    assert -1.0 <= out.min() and out.max() <= 1.0


def test_collate_pads_to_bucket() -> None:
    cfg = PreprocessConfig()
    arrays = [np.ones((32, 40), np.float32), np.ones((32, 70), np.float32)]
    batch, widths = collate(arrays, cfg)
    assert batch.shape == (2, 1, 32, bucket_width(70, cfg)) and widths.tolist() == [40, 70]
    assert (batch[0, 0, :, 40:] == 0).all()


def _truncated_png() -> bytes:
    return _encode(Image.fromarray(WORD), "PNG")[:60]


def _bomb_png(side: int = 20000) -> bytes:
    # A valid header for a side x side 1-bit image whose pixels were never decoded.
    import struct

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    raw = zlib.compress(b"\x00" * (side // 8 + 1) * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "source,match",
    [
        (b"", "empty"),
        (_truncated_png(), "corrupt or truncated"),
        (b"just some text, not an image\n", "not an image"),
        (np.zeros((0, 0), np.uint8), "empty"),
        (np.zeros((1, 100000), np.uint8), "too small|aspect"),
        (np.zeros((2, 3, 5), np.uint8), "not a gray, RGB or RGBA"),
        (_bomb_png(), "over the limit"),
        (12345, "unsupported input"),
    ],
    ids=["empty", "truncated-png", "text", "0x0", "1x100000", "5-channels", "20000x20000", "int"],
)
def test_bad_inputs_raise_typed_error(source: object, match: str) -> None:
    with pytest.raises(InvalidImageError, match=match):
        prepare(source)  # type: ignore[arg-type]


def test_missing_file_and_text_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageError, match="no such file"):
        load_image(tmp_path / "missing.png")
    t = tmp_path / "notes.png"
    t.write_text("hello")
    with pytest.raises(InvalidImageError, match="not an image"):
        load_image(t)
    e = tmp_path / "empty.png"
    e.write_bytes(b"")
    with pytest.raises(InvalidImageError, match="empty"):
        load_image(e)


def test_pixel_limit_is_configurable() -> None:
    data = _encode(Image.new("L", (400, 300)), "PNG")
    with pytest.raises(InvalidImageError, match="over the limit"):
        load_image(data, max_pixels=100_000)
    assert load_image(data, max_pixels=200_000).shape == (300, 400)


@pytest.mark.parametrize("bucket", [1, 4, 8, 16])
@pytest.mark.parametrize("width", [20, 37, 99, 150, 2000])
def test_resized_width_is_a_multiple_of_the_bucket(bucket: int, width: int) -> None:
    cfg = PreprocessConfig(width_bucket=bucket)
    out = prepare(np.full((40, width), 100, np.uint8), cfg)
    assert out.shape[1] % bucket == 0
    assert abs(out.shape[1] - min(width * 32 / 40, cfg.max_width)) <= bucket / 2 + 1


def _lab_image() -> Image.Image:
    return Image.fromarray(np.dstack([WORD, np.full_like(WORD, 128), np.full_like(WORD, 128)]), mode="LAB")


@pytest.mark.parametrize("kind", ["pil", "tiff-bytes", "tiff-path"])
def test_lab_image_is_read_by_its_lightness(kind: str, tmp_path: Path) -> None:
    img = _lab_image()
    if kind == "pil":
        source: object = img
    else:
        data = _encode(img, "TIFF")
        source = data
        if kind == "tiff-path":
            source = tmp_path / "lab.tif"
            source.write_bytes(data)
    gray = load_image(source)  # type: ignore[arg-type]
    assert np.array_equal(gray, WORD)


@pytest.mark.parametrize(
    "array",
    [
        np.array([[object()] * 8] * 8, dtype=object),
        np.full((8, 8), "ab"),
        np.full((8, 8), b"ab"),
        np.zeros((8, 8), dtype=[("r", "u1"), ("g", "u1")]),
        np.zeros((8, 8), dtype="datetime64[s]"),
        np.zeros((8, 8), dtype="timedelta64[s]"),
        np.zeros((8, 8), dtype=np.complex64),
    ],
    ids=["object", "str", "bytes", "structured", "datetime64", "timedelta64", "complex"],
)
def test_arrays_of_non_pixel_dtypes_raise_invalid_image(array: np.ndarray) -> None:
    with pytest.raises(InvalidImageError, match=r"^array of dtype .* is not an image"):
        prepare(array)


@pytest.mark.parametrize(
    "source",
    [b"", _truncated_png(), np.zeros((2, 3, 5), np.uint8), np.zeros((2, 2), np.uint8), _bomb_png(),
     Image.new("L", (2, 2)), bytearray(b"xx"), memoryview(b"")],
    ids=["empty", "truncated", "5-channels", "2x2-array", "bomb", "2x2-pil", "bytearray", "memoryview"],
)
def test_messages_of_unnamed_inputs_carry_no_type_prefix(source: object) -> None:
    with pytest.raises(InvalidImageError) as info:
        prepare(source)  # type: ignore[arg-type]
    assert not re.match(r"^(bytes|bytearray|memoryview|ndarray|array|Image|image bytes|PIL image|image):", str(info.value))


def test_path_messages_name_the_path(tmp_path: Path) -> None:
    p = tmp_path / "small.png"
    Image.new("L", (2, 2)).save(p)
    with pytest.raises(InvalidImageError, match=f"^{re.escape(str(p))}: 2x2 pixels is too small"):
        prepare(p)


@pytest.mark.parametrize("side", [10_000, 14_000, 20_000])  # 100 M (past PIL's warning), 196 M (past its error)
def test_oversized_header_gives_the_pixel_limit_message(side: int) -> None:
    with pytest.raises(InvalidImageError, match=r"^image of .* pixels is over the limit of 40,000,000 pixels$"):
        prepare(_bomb_png(side))


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.int8])  # uint8 is taken as it is
def test_integer_fast_path_gives_what_the_float_path_gives(dtype: type) -> None:
    from crnn.io.preprocess import _array_to_gray

    info = np.iinfo(dtype)
    rng = np.random.default_rng(0)
    for lo, hi in [(0, 2), (0, 256), (max(info.min, -300), info.max)]:
        arr = rng.integers(lo, hi, size=(40, 300), endpoint=False).astype(dtype)
        assert np.array_equal(_array_to_gray(arr, ""), _array_to_gray(arr.astype(np.float64), "")), (dtype, lo, hi)


@pytest.mark.parametrize("orientation", [None, 6])
def test_jpeg_draft_decodes_a_large_crop_at_a_reduced_scale(orientation: int | None) -> None:
    big = np.kron(WORD, np.ones((16, 16), np.uint8))  # 512 px high
    img = Image.fromarray(big).convert("RGB")
    kw = {}
    if orientation:
        img = img.transpose(Image.Transpose.ROTATE_90)
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    data = _encode(img, "JPEG", quality=95, **kw)
    full = load_image(data)
    small = load_image(data, draft_height=64)
    assert full.shape == big.shape
    assert 64 <= small.shape[0] < 128 and small.shape[0] * 8 == full.shape[0]  # 1/8 scale keeps 64 px
    cfg = PreprocessConfig()
    a, b = prepare(data, cfg), prepare(data, cfg.replace(jpeg_draft=True))
    assert a.shape == b.shape and np.abs(a - b).mean() < 0.05  # the same input for the model, nearly
    assert "jpeg_draft" not in cfg.replace(jpeg_draft=True).to_dict()  # never stored in checkpoints


def _reference_path_check(path: Path) -> str | None:
    """What the path checks of load_image said before they took one stat (Path.exists, is_file, the size)."""
    if not path.exists():
        return "no such file"
    if not path.is_file():
        return "not a file"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    return None


def _path_case(kind: str, tmp_path: Path) -> Path:
    good = tmp_path / "word.png"
    Image.fromarray(WORD).save(good)
    if kind == "file":
        return good
    if kind == "missing":
        return tmp_path / "missing.png"
    if kind == "folder":
        (tmp_path / "folder.png").mkdir()
        return tmp_path / "folder.png"
    if kind == "empty":
        (tmp_path / "empty.png").write_bytes(b"")
        return tmp_path / "empty.png"
    if kind == "link":
        (tmp_path / "link.png").symlink_to(good)
        return tmp_path / "link.png"
    if kind == "broken-link":
        (tmp_path / "broken.png").symlink_to(tmp_path / "nowhere.png")
        return tmp_path / "broken.png"
    if kind == "under-a-file":
        return good / "inside.png"
    if kind == "fifo":
        import os

        os.mkfifo(tmp_path / "fifo.png")
        return tmp_path / "fifo.png"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["file", "missing", "folder", "empty", "link", "broken-link", "under-a-file", "fifo"])
@pytest.mark.parametrize("as_str", [False, True], ids=["Path", "str"])
def test_path_checks_say_what_the_three_checks_said(kind: str, as_str: bool, tmp_path: Path) -> None:
    """One stat instead of Path.exists, is_file and the size: the same message (or image) for every kind of path."""
    path = _path_case(kind, tmp_path)
    expected = _reference_path_check(path)
    source = str(path) if as_str else path
    if expected is None:
        assert np.array_equal(load_image(source), WORD)
    else:
        with pytest.raises(InvalidImageError) as info:
            load_image(source)
        assert str(info.value) == f"{path}: {expected}"


@pytest.mark.parametrize("orientation", [None, 1, 2, 3, 4, 5, 6, 7, 8, 9])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_orientation_gives_exif_transposes_pixels(orientation: int | None, fmt: str, tmp_path: Path) -> None:
    """The EXIF turn is asked for only where the tag turns the image: the pixels exif_transpose (which copies the
    others) gives, for every orientation (9: not one, left as it is), from a file, bytes or a PIL image."""
    from PIL import ImageOps

    rgb = Image.fromarray(np.stack([WORD, WORD[::-1], WORD[:, ::-1]], axis=2)[:, :40])  # no symmetry to hide a turn
    kwargs: dict = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    path = tmp_path / f"w.{fmt.lower()}"
    rgb.save(path, format=fmt, **kwargs)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("L"))
    for source in (path, path.read_bytes(), Image.open(path)):
        assert np.array_equal(load_image(source), expected)
