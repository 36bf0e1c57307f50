"""POST /v1/read (whole photos) through an in-process client: the rows against the library's PhotoReader, options,
photos without text, hostile photos and refused requests (as /v1/recognize answers them), the missing ``detect``
extra, the reader built once and shared, the queue, and the real PP-OCRv6 detector on a rendered scene."""

from __future__ import annotations

import importlib.util
import io
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")

from crnn.detection.detector import DetectedText
from crnn.detection.photo_reader import PhotoReader
from crnn.detection.word_split import SPLITS
from crnn_server import Settings, create_app
from crnn_server.parsing import READ_OPTION_FIELDS, ReadOptions
from tests.test_photo_reader import line_photo, quad
from tests.test_server_api import LIMITS, TestClient, assert_error, b64, png

HAVE_DETECT = importlib.util.find_spec("rapidocr") is not None and importlib.util.find_spec("onnxruntime") is not None
WORDS = ["HELLO", "WORLD"]
PHOTO_LIMITS = {**LIMITS, "max_photos": 3, "max_photo_pixels": 2_000_000, "threads": 1}


class InkDetector:
    """A fake TextDetector: one line around the photo's dark pixels, none on a photo without any."""

    name = "ink"

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, image: np.ndarray) -> list[DetectedText]:
        self.calls += 1
        ys, xs = np.nonzero(image.min(axis=2) < 128)
        if not len(xs):
            return []
        h, w = image.shape[:2]
        return [DetectedText(quad(max(0, xs.min() - 4), max(0, ys.min() - 3), min(w, xs.max() + 5),
                                  min(h, ys.max() + 4)), 0.9)]

    def describe(self) -> dict[str, Any]:
        return {"detector": self.name}


@pytest.fixture(scope="module")
def recognizer() -> Any:
    from crnn.kinds.loading import load_recognizer

    return load_recognizer(threads=1)  # the shipped model: the words come back readable


def make_client(recognizer: Any, detector: Any = None, **settings: Any) -> TestClient:
    app = create_app(Settings(**{**PHOTO_LIMITS, **settings}), recognizer, model_name="shipped",
                     detector=detector if detector is not None else InkDetector())
    return TestClient(app)


@pytest.fixture(scope="module")
def client(recognizer: Any) -> Iterator[TestClient]:
    with make_client(recognizer) as c:
        yield c


@pytest.fixture(scope="module")
def photo() -> bytes:
    return png(line_photo(WORDS)[0])


def expected(recognizer: Any, data: bytes, **options: Any) -> dict[str, Any]:
    """What the library's PhotoReader reads in the photo (the server must agree), without its timings."""
    out = PhotoReader(InkDetector(), recognizer, **options).read(data).to_dict()
    del out["timings"]
    return out


def files(items: list[tuple[str, bytes]]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (name, data, "image/png")) for name, data in items]


def read_photos(c: TestClient, items: list[tuple[str, bytes]], **data: str) -> list[dict[str, Any]]:
    r = c.post("/v1/read", files=files(items), data=data)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "shipped" and body["detector"] == "ink" and body["elapsed_ms"] > 0
    return body["results"]


# ---- rows ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["multipart", "json"])
def test_rows_are_the_library_reading(client: TestClient, recognizer: Any, photo: bytes, form: str) -> None:
    if form == "multipart":
        (result,) = read_photos(client, [("shop.png", photo)])
    else:
        r = client.post("/v1/read", json={"images": [{"name": "shop.png", "data": b64(photo)}]})
        assert r.status_code == 200, r.text
        (result,) = r.json()["results"]
    timings = result.pop("timings_ms")
    assert result == {"name": "shop.png", **expected(recognizer, photo)}
    assert [w["text"].upper() for w in result["words"]] == WORDS
    assert [w["line"] for w in result["words"]] == [0, 0] and len(result["lines"]) == 1
    assert all(len(w["polygon"]) == 4 and all(len(p) == 2 for p in w["polygon"]) for w in result["words"])
    assert (result["width"], result["height"]) == Image.open(io.BytesIO(photo)).size
    assert set(timings) == {"wait", "load", "detect", "recognize"} and all(v >= 0 for v in timings.values())


@pytest.mark.parametrize("options", [
    {"split": "chars"},
    {"decoder": "greedy"},
    {"decoder": "beam", "beam_width": "3"},
    {"min_confidence": "1"},  # no line is that sure: all dropped
    {"min_confidence": "0"},
    {"decoder": "lm", "lm_weight": "0"},  # the line decoder's weight: passed through as the library takes it
    {"lm_weight": "3.5"},
])
def test_options_are_the_readers(client: TestClient, recognizer: Any, photo: bytes, options: dict[str, str]) -> None:
    (result,) = read_photos(client, [("p", photo)], **options)
    result.pop("timings_ms")
    typed = {k: (int(v) if k == "beam_width" else float(v) if k in ("min_confidence", "lm_weight") else v)
             for k, v in options.items()}
    assert result == {"name": "p", **expected(recognizer, photo, **typed)}
    if options.get("min_confidence") == "1":
        assert result["words"] == [] and result["dropped"] == 1


@pytest.mark.parametrize("form", ["multipart", "json"])
def test_lexicon_constrains_each_word_as_the_library_does(client: TestClient, recognizer: Any, photo: bytes,
                                                          form: str) -> None:
    words = ["world", "hello", *(f"filler{i}" for i in range(40))]  # at most the test server's 50 words
    if form == "multipart":
        (result,) = read_photos(client, [("p", photo)], decoder="greedy", lexicon="\n".join(words))
    else:
        r = client.post("/v1/read", json={"images": [{"name": "p", "data": b64(photo)}], "decoder": "greedy",
                                          "lexicon": words})
        assert r.status_code == 200, r.text
        (result,) = r.json()["results"]
    result.pop("timings_ms")
    assert result == {"name": "p", **expected(recognizer, photo, decoder="greedy", lexicon=words)}
    assert [(w["text"].upper(), w["in_lexicon"]) for w in result["words"]] == [(x, True) for x in WORDS]
    (plain,) = read_photos(client, [("p", photo)], decoder="greedy")  # the next request has no lexicon: none kept
    assert all("in_lexicon" not in w for w in plain["words"])


def test_options_are_the_forms_fields() -> None:
    from crnn_server.app import READ_BODY

    assert set(ReadOptions.model_fields) == set(READ_OPTION_FIELDS)
    form = READ_BODY["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]  # type: ignore[index]
    assert set(form) == {"files", *READ_OPTION_FIELDS}
    assert set(ReadOptions.model_fields["split"].annotation.__args__) == set(SPLITS)  # type: ignore[union-attr]


@pytest.mark.parametrize("image", [
    np.full((240, 320, 3), 255, np.uint8),  # blank
    np.full((1, 1, 3), 255, np.uint8),  # 1 px: a photo without text, as the library reads it
    np.full((1, 900), 255, np.uint8),  # one row
], ids=["blank", "1px", "1-row"])
def test_a_photo_without_text_is_empty_lists_not_an_error(client: TestClient, image: np.ndarray) -> None:
    (result,) = read_photos(client, [("empty.png", png(image))])
    assert result["words"] == [] and result["lines"] == [] and "error" not in result
    assert (result["height"], result["width"]) == image.shape[:2]


def hostile() -> list[tuple[str, bytes, str]]:
    good = png(line_photo(["OK"])[0])
    return [
        ("not-an-image", b"hello, I am text", "not an image"),
        ("empty", b"", "empty"),
        ("truncated", good[: len(good) // 2], "truncated"),
        ("huge", png(Image.new("L", (2000, 1500), 255)), "over the limit of 2,000,000 pixels"),  # from its header
    ]


@pytest.mark.parametrize("name,data,message", hostile(), ids=[h[0] for h in hostile()])
def test_a_hostile_photo_gets_its_own_error_and_the_others_are_read(
        client: TestClient, recognizer: Any, photo: bytes, name: str, data: bytes, message: str) -> None:
    first, bad, last = read_photos(client, [("a.png", photo), (name, data), ("b.png", photo)])
    assert bad == {"name": name, "error": bad["error"], "code": "invalid_image"} and message in bad["error"]
    for good in (first, last):
        good.pop("timings_ms")
        assert good["words"] == expected(recognizer, photo)["words"]


def test_json_bad_base64_is_a_photos_error(client: TestClient, photo: bytes) -> None:
    r = client.post("/v1/read", json={"images": [{"data": "@@not base64@@"}, {"data": b64(photo)}]})
    assert r.status_code == 200
    bad, good = r.json()["results"]
    assert "base64" in bad["error"] and bad["name"] == "image0" and good["words"]


def test_decoder_crash_costs_only_that_photo(client: TestClient, photo: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    import crnn_server.photos as photos

    original = photos.load_photo

    def flaky(data: Any, max_pixels: int) -> np.ndarray:
        if data == b"boom":  # as a decoder bug on a hostile file might fail, outside the typed errors
            raise ZeroDivisionError("division by zero")
        return original(data, max_pixels)

    monkeypatch.setattr(photos, "load_photo", flaky)
    bad, good = read_photos(client, [("x", b"boom"), ("y", photo)])
    assert bad["code"] == "invalid_image" and "could not decode" in bad["error"] and good["words"]


PNG = png(line_photo(["X"])[0])
READ_BAD_REQUESTS: list[tuple[str, dict[str, Any], int, str]] = [
    ("no-body", {}, 400, "empty_request"),
    ("text-plain", {"content": b"hello", "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_media_type"),
    ("raw-png", {"content": PNG, "headers": {"Content-Type": "image/png"}}, 415, "unsupported_media_type"),
    ("multipart-no-boundary", {"content": b"x", "headers": {"Content-Type": "multipart/form-data"}}, 400, "malformed_body"),
    ("multipart-only-options", {"files": [("split", (None, "chars"))]}, 422, "no_images"),
    ("multipart-too-many", {"files": [("files", (f"{i}.png", PNG)) for i in range(4)]}, 413, "too_many_images"),
    ("multipart-lexicon-charset", {"files": [("files", ("x.png", PNG)), ("lexicon", (None, "caf\u00e9"))]}, 422, "invalid_request"),
    ("json-lexicon-over-limit", {"json": {"images": [{"data": b64(PNG)}], "lexicon": [f"w{i}" for i in range(51)]}}, 422, "invalid_request"),
    ("json-lexicon-blank-word", {"json": {"images": [{"data": b64(PNG)}], "lexicon": ["open", " "]}}, 422, "invalid_request"),
    ("json-lexicon-not-a-list", {"json": {"images": [{"data": b64(PNG)}], "lexicon": "open"}}, 422, "invalid_request"),
    ("multipart-bad-split", {"files": [("files", ("x.png", PNG))], "data": {"split": "words"}}, 422, "invalid_request"),
    ("multipart-min-confidence-2", {"files": [("files", ("x.png", PNG))], "data": {"min_confidence": "2"}}, 422, "invalid_request"),
    ("multipart-min-confidence-text", {"files": [("files", ("x.png", PNG))], "data": {"min_confidence": "high"}}, 422, "invalid_request"),
    ("multipart-lm-weight-greedy", {"files": [("files", ("x.png", PNG))], "data": {"decoder": "greedy", "lm_weight": "1"}}, 422, "invalid_request"),
    ("json-lm-weight-over-10", {"json": {"images": [{"data": b64(PNG)}], "lm_weight": 11}}, 422, "invalid_request"),
    ("multipart-beam-over-limit", {"files": [("files", ("x.png", PNG))], "data": {"beam_width": "21"}}, 422, "invalid_request"),
    ("json-invalid", {"content": b'{"images": [', "headers": {"Content-Type": "application/json"}}, 400, "malformed_body"),
    ("json-empty-images", {"json": {"images": []}}, 422, "no_images"),
    ("json-too-many", {"json": {"images": [{"data": b64(PNG)}] * 4}}, 413, "too_many_images"),
    ("json-image-lexicon", {"json": {"images": [{"data": b64(PNG), "lexicon": ["a"]}]}}, 422, "invalid_request"),
    ("json-orientation", {"json": {"images": [{"data": b64(PNG)}], "orientation": "auto"}}, 422, "invalid_request"),
    ("json-min-confidence-true", {"json": {"images": [{"data": b64(PNG)}], "min_confidence": True}}, 422, "invalid_request"),
    ("too-large", {"json": {"images": [{"data": "A" * 300_000}]}}, 413, "payload_too_large"),
]


@pytest.mark.parametrize("kwargs,status,code", [b[1:] for b in READ_BAD_REQUESTS], ids=[b[0] for b in READ_BAD_REQUESTS])
def test_bad_requests_get_typed_4xx(client: TestClient, kwargs: dict[str, Any], status: int, code: str) -> None:
    assert_error(client.post("/v1/read", **kwargs), status, code)


def test_api_key_guards_the_route(recognizer: Any, photo: bytes) -> None:
    with make_client(recognizer, api_key="k") as c:
        assert_error(c.post("/v1/read", files=files([("p", photo)])), 401, "unauthorized")
        assert c.post("/v1/read", files=files([("p", photo)]), headers={"X-API-Key": "k"}).status_code == 200


# ---- the detector: built once, shared; missing extra ----------------------------------------------------------------


def test_reader_is_built_on_first_use_once_and_shared(recognizer: Any, photo: bytes,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import crnn_server.photos as photos

    built: list[InkDetector] = []

    def load(name: str, **options: Any) -> InkDetector:
        built.append(InkDetector())
        return built[-1]

    monkeypatch.setattr(photos, "load_detector", load)
    app = create_app(Settings(**PHOTO_LIMITS), recognizer, model_name="shipped")  # no detector given: the default
    with TestClient(app) as c:
        assert c.get("/v1/model").json()["photos"]["loaded"] is False and built == []
        answers: list[int] = []
        threads = [threading.Thread(target=lambda: answers.append(
            c.post("/v1/read", files=files([("p", photo)])).status_code)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert answers == [200] * 3
        assert len(built) == 1 and built[0].calls == 3
        info = c.get("/v1/model").json()["photos"]
        assert info["loaded"] is True and info["max_photos"] == 3 and info["describe"] == {"detector": "ink"}


def test_the_server_imports_no_detector_package_until_a_photo_comes() -> None:
    import subprocess

    code = ("import sys, crnn_server.app; "
            "print(sorted(m for m in ('onnxruntime', 'rapidocr', 'shapely', 'pyclipper') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_missing_detect_extra_is_a_501_and_the_rest_works(recognizer: Any, photo: bytes,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # As in an install without the extra: importing rapidocr or onnxruntime fails, find_spec finds neither.
    for name in ("rapidocr", "onnxruntime"):
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, mod)
        monkeypatch.setitem(sys.modules, name, None)
    app = create_app(Settings(**PHOTO_LIMITS), recognizer, model_name="shipped")
    with TestClient(app) as c:
        for _ in range(2):  # remembered, not retried: the same answer
            body = assert_error(c.post("/v1/read", files=files([("p", photo)])), 501, "detector_unavailable")
            assert "pip install 'crnn-ocr[detect]'" in body["error"]["message"]
        assert c.post("/v1/recognize", files=files([("w", photo)])).status_code == 200
        assert c.get("/readyz").status_code == 200
        info = c.get("/v1/model").json()["photos"]
        assert info["loaded"] is False and "crnn-ocr[detect]" in info["error"]
        assert 'crnn_http_errors_total{code="detector_unavailable",route="/v1/read",status="501"} 2.0' in \
            c.get("/metrics").text


class BlockingDetector(InkDetector):
    """Holds the photo thread until released."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def detect(self, image: np.ndarray) -> list[DetectedText]:
        self.entered.set()
        assert self.release.wait(30)
        return super().detect(image)


def test_a_photo_that_waits_past_the_queue_timeout_gets_503(recognizer: Any, photo: bytes) -> None:
    detector = BlockingDetector()
    with make_client(recognizer, detector, queue_timeout_s=0.2) as c:
        first: list[int] = []
        t = threading.Thread(target=lambda: first.append(c.post("/v1/read", files=files([("a", photo)])).status_code))
        t.start()
        try:
            assert detector.entered.wait(30)
            r = c.post("/v1/read", files=files([("b", photo)]))
            assert_error(r, 503, "overloaded")
            assert r.headers["retry-after"] == "1"
        finally:
            detector.release.set()
            t.join()
        assert first == [200]
        text = c.get("/metrics").text
    assert 'crnn_queue_rejected_total{reason="photo"} 1.0' in text
    assert 'crnn_photos_total{outcome="ok"} 1.0' in text
    assert 'crnn_photo_stage_seconds_count{stage="detect"} 1.0' in text


def test_index_page_has_the_photo_mode(client: TestClient) -> None:
    html = client.get("/").text
    assert 'name="mode" value="photo"' in html and '"v1/read"' in html and 'id="split"' in html


def test_openapi_describes_the_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/read"]["post"]
    assert set(op["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert {"200", "413", "422", "501", "503"} <= set(op["responses"])
    assert {"ReadJSON", "PhotoIn", "ReadResponse", "PhotoResult", "WordOut"} <= set(spec["components"]["schemas"])


# ---- the real detector ----------------------------------------------------------------------------------------------


@pytest.mark.skipif(not HAVE_DETECT, reason="needs the detect extra (rapidocr, onnxruntime)")
def test_real_detector_on_a_rendered_scene(recognizer: Any) -> None:
    from crnn.detection.registry import load_detector
    from crnn_synth_data.config import SynthConfig
    from crnn_synth_data.scene import SceneRenderer

    scene = SceneRenderer(SynthConfig(), size=(480, 360)).render(11, 0)
    data = png(scene.image)
    library = PhotoReader(load_detector(threads=1), recognizer).read(data).to_dict()
    app = create_app(Settings(**PHOTO_LIMITS), recognizer, model_name="shipped")  # the default detector, lazily
    with TestClient(app) as c:
        r = c.post("/v1/read", files=files([("scene.png", data)]))
        assert r.status_code == 200, r.text
        body = r.json()
        info = c.get("/v1/model").json()["photos"]
    (result,) = body["results"]
    assert body["detector"] == "ppocr-v6-small" and info["loaded"] is True
    assert info["describe"]["model"] == "PP-OCRv6_det_small.onnx"  # the file's name, no server path
    assert result["words"], "the detector found no word in the rendered scene"
    assert [w["text"] for w in result["words"]] == [w["text"] for w in library["words"]]
    for got, want in zip(result["words"], library["words"]):
        assert np.allclose(got["polygon"], want["polygon"], atol=0.5)


@pytest.mark.parametrize(("shipped_name", "model", "photo_model", "expected"), [
    ("default", None, "lines", "lines"),   # the server's own default model: photos get the photo model
    ("default", None, None, None),         # no photo model in this install: the served model reads photos
    ("real", "real", "lines", None),       # a chosen model reads crops and photos alike
    (None, None, "lines", None),           # other weights (or a recognizer given to create_app): the same
])
def test_photos_are_read_with_the_photo_model_unless_one_is_chosen(
        recognizer: Any, monkeypatch: pytest.MonkeyPatch, shipped_name: str | None, model: str | None,
        photo_model: str | None, expected: str | None) -> None:
    from types import SimpleNamespace

    from crnn_server.metrics import Metrics
    from crnn_server.photos import PhotoService

    loaded: list[str] = []

    def fake_load(weights: Any, device: str, threads: Any, precision: str, backend: str, model: str) -> Any:
        loaded.append(model)
        return recognizer

    monkeypatch.setattr("crnn.checkpoints.shipped.photo_model", lambda m, w: m or photo_model)
    monkeypatch.setattr("crnn.kinds.loading.load_recognizer", fake_load)
    engine = SimpleNamespace(shipped_name=shipped_name, recognizer=recognizer, model_preprocess=recognizer.preprocess)
    service = PhotoService(Settings(**PHOTO_LIMITS, model=model), Metrics(), engine, detector=InkDetector())  # type: ignore[arg-type]
    reader = service.reader()
    assert service.model_name == expected and loaded == ([expected] if expected else [])
    assert reader.preprocess.max_pixels <= PHOTO_LIMITS.get("max_photo_pixels", reader.preprocess.max_pixels)
    assert service.describe()["model"] == expected


# ---- hostile requests: seeded, parametrised; a typed 4xx or the photo's own invalid_image, never a 500 --------------

HOSTILE_SEED = 35  # the number: the cases below are the same on every run
REQUEST_CODES = {"empty_request", "malformed_body", "payload_too_large", "too_many_images", "unsupported_media_type",
                 "no_images", "invalid_request"}


def _chunk(tag: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def absurd_png(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (its few pixels are never decoded)."""
    import struct
    import zlib

    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b""))


def absurd_jpeg(width: int, height: int) -> bytes:
    """A real JPEG's bytes with its frame header (SOF0) rewritten to claim ``width`` x ``height``."""
    buf = io.BytesIO()
    Image.new("L", (16, 16), 255).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    at = data.index(b"\xff\xc0") + 5  # marker, length (2), precision (1), then height and width
    data[at : at + 4] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def absurd_gif(width: int, height: int) -> bytes:
    return b"GIF89a" + width.to_bytes(2, "little") + height.to_bytes(2, "little") + b"\x00\x00\x00" + b"\x3b"


def _encoded(fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(line_photo(WORDS)[0]).save(buf, fmt, **kw)
    return buf.getvalue()


def hostile_photos() -> list[tuple[str, bytes]]:
    """Photos a client might send (each must come back as that photo's invalid_image entry), seeded."""
    rng = np.random.default_rng(HOSTILE_SEED)
    good_png, good_jpeg = _encoded("PNG"), _encoded("JPEG", quality=80)
    out = [(f"random-{n}", rng.integers(0, 256, n, dtype=np.uint8).tobytes()) for n in (1, 17, 4096)]
    out += [(f"png-cut-{k}", good_png[: int(len(good_png) * f)]) for k, f in enumerate(rng.uniform(0.05, 0.9, 3))]
    out += [(f"jpeg-cut-{k}", good_jpeg[: int(len(good_jpeg) * f)]) for k, f in enumerate(rng.uniform(0.05, 0.6, 3))]
    out += [("png-magic-only", b"\x89PNG\r\n\x1a\n"), ("jpeg-magic-only", b"\xff\xd8\xff")]
    out += [("png-2^31-wide", absurd_png(2**31 - 1, 1)), ("png-100k-square", absurd_png(100_000, 100_000)),
            ("png-0x0", absurd_png(0, 0)), ("jpeg-65535-square", absurd_jpeg(65535, 65535)),
            ("gif-65535-square", absurd_gif(65535, 65535))]
    # Huge but valid: every pixel there, over the test server's --max-photo-pixels (2,000,000), refused from the header.
    out += [("huge-png", png(Image.new("L", (2000, 1500), 255))),
            ("huge-jpeg", (lambda b: (Image.new("RGB", (1800, 1200), "white").save(b, "JPEG", quality=30), b.getvalue())[1])(io.BytesIO()))]
    return out


@pytest.mark.parametrize("name,data", hostile_photos(), ids=[h[0] for h in hostile_photos()])
@pytest.mark.parametrize("form", ["multipart", "json"])
def test_hostile_photos_get_their_own_invalid_image(client: TestClient, photo: bytes, form: str, name: str,
                                                    data: bytes) -> None:
    if form == "multipart":
        r = client.post("/v1/read", files=files([(name, data), ("good.png", photo)]))
    else:
        r = client.post("/v1/read", json={"images": [{"name": name, "data": b64(data)}, {"data": b64(photo)}]})
    assert r.status_code == 200, r.text
    bad, good = r.json()["results"]
    assert bad == {"name": name, "error": bad["error"], "code": "invalid_image"} and bad["error"]
    assert [w["text"].upper() for w in good["words"]] == WORDS  # the request's other photo is read


def _multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "hostile") -> tuple[bytes, dict[str, str]]:
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{n}"'.encode()
                    + (f'; filename="{f}"'.encode() if f is not None else b"") + b"\r\n\r\n" + d + b"\r\n"
                    for n, f, d in parts)
    return body + f"--{boundary}--\r\n".encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def hostile_requests() -> list[tuple[str, dict[str, Any], int, str | None]]:
    """Requests no photo can be read from: (id, client.post kwargs, status, code or None for any typed 4xx)."""
    rng = np.random.default_rng(HOSTILE_SEED + 1)
    one = b64(PNG)
    out: list[tuple[str, dict[str, Any], int, str | None]] = []
    for k, n in enumerate((0, 7, 2000)):  # random bytes as the whole body, under each accepted media type
        noise = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        out += [(f"json-random-{k}", {"content": noise, "headers": {"Content-Type": "application/json"}}, 400, None),
                (f"multipart-random-{k}", {"content": noise, "headers": {"Content-Type": "multipart/form-data; boundary=zz"}},
                 400, None)]
    empty_body, empty_headers = _multipart([])
    out.append(("multipart-empty", {"content": empty_body, "headers": empty_headers}, 422, "no_images"))
    for field in ("file", "image", "photos", "Files", ""):  # (files[] is an accepted spelling of files)
        body, headers = _multipart([(field, "p.png", PNG)])
        out.append((f"multipart-field-{field or 'blank'}", {"content": body, "headers": headers}, 422, None))
    body, headers = _multipart([("files", "p.png", PNG), ("min_confidence", None, b"\xff\xfe")])
    out.append(("multipart-option-not-utf8", {"content": body, "headers": headers}, 422, None))
    for name, value in [("list", [{"data": one}]), ("string", "images"), ("number", 35), ("null", None),
                        ("images-dict", {"images": {"data": one}}), ("images-strings", {"images": [one]}),
                        ("images-nested", {"images": [[{"data": one}]]}), ("data-number", {"images": [{"data": 35}]}),
                        ("data-list", {"images": [{"data": [one]}]}), ("no-data", {"images": [{"name": "x"}]}),
                        ("unknown-key", {"images": [{"data": one}], "detect": True}),
                        ("image-unknown-key", {"images": [{"data": one, "box": [0, 0, 1, 1]}]}),
                        ("name-too-long", {"images": [{"name": "n" * 300, "data": one}]}),
                        ("split-number", {"images": [{"data": one}], "split": 1}),
                        ("beam-float", {"images": [{"data": one}], "beam_width": 2.5})]:
        out.append((f"json-{name}", {"json": value}, 422, None))
    out.append(("json-too-many", {"json": {"images": [{"data": one}] * 4}}, 413, "too_many_images"))
    out.append(("multipart-too-many", {"files": [("files", (f"{i}.png", PNG)) for i in range(5)]}, 413, "too_many_images"))
    out.append(("json-deep", {"content": b"[" * 100_000 + b"]" * 100_000,
                              "headers": {"Content-Type": "application/json"}}, 400, None))
    return out


@pytest.mark.parametrize("kwargs,status,code", [h[1:] for h in hostile_requests()], ids=[h[0] for h in hostile_requests()])
def test_hostile_requests_get_a_typed_4xx(client: TestClient, kwargs: dict[str, Any], status: int,
                                          code: str | None) -> None:
    r = client.post("/v1/read", **kwargs)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    body = r.json()
    assert body["error"]["code"] in REQUEST_CODES and body["error"]["message"], body
    if code is not None:
        assert (r.status_code, body["error"]["code"]) == (status, code)


def test_the_server_keeps_serving_after_every_hostile_input(recognizer: Any, photo: bytes) -> None:
    """Every hostile photo and request above, one after the other on a fresh server; then a photo is read as before."""
    with make_client(recognizer) as c:
        for name, data in hostile_photos():
            assert c.post("/v1/read", files=files([(name, data)])).status_code == 200
        for _, kwargs, _, _ in hostile_requests():
            assert c.post("/v1/read", **kwargs).status_code < 500
        assert c.get("/healthz").status_code == 200
        (result,) = read_photos(c, [("after.png", photo)])
    assert [w["text"].upper() for w in result["words"]] == WORDS
