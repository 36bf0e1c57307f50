"""Full-photo OCR (crnn.detection): the detector contract and registry with a fake detector, line crops and their
mapping back to the photo, the photo reader's words and boxes, photos without text, hostile photos, and the real
PP-OCRv6 detector where ``crnn-ocr[detect]`` is installed."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from crnn.detection.detector import DetectedText, DetectorKind, TextDetector, register_detector
from crnn.detection.registry import detector_kinds, load_detector
from crnn.detection.end_to_end_metric import polygon_iou
from crnn.detection.line_crop import cut, is_tall
from crnn.detection.photo_reader import PhotoReader, PhotoReading, model_space_prob
from crnn.detection.word_split import SPACE_PROB
from crnn.errors import BackendError, InvalidImageError
from tests.word_images import render_word

HAVE_DETECT = importlib.util.find_spec("rapidocr") is not None and importlib.util.find_spec("onnxruntime") is not None


class FakeDetector:
    """Returns the regions it was given, whatever the photo."""

    name = "fake"

    def __init__(self, regions: list[DetectedText] | None = None) -> None:
        self.regions = regions or []
        self.calls = 0

    def detect(self, image: np.ndarray) -> list[DetectedText]:
        self.calls += 1
        return list(self.regions)

    def describe(self) -> dict:
        return {"detector": self.name}


def quad(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)


def line_photo(words: list[str], gap: int = 24, height: int = 32) -> tuple[np.ndarray, list[np.ndarray]]:
    """A gray photo (RGB) with ``words`` side by side on one line, and each word's ink box."""
    crops = [render_word(w, height=height, size=24) for w in words]
    photo = np.full((120, 40 + sum(c.shape[1] for c in crops) + gap * (len(crops) - 1)), 255, np.uint8)
    boxes, x = [], 20
    for c in crops:
        photo[40 : 40 + c.shape[0], x : x + c.shape[1]] = c
        ys, xs = np.nonzero(c < 128)
        boxes.append(quad(x + xs.min(), 40 + ys.min(), x + xs.max() + 1, 40 + ys.max() + 1))
        x += c.shape[1] + gap
    return np.repeat(photo[:, :, None], 3, axis=2), boxes


@pytest.fixture(scope="module")
def recognizer():
    from crnn.kinds.loading import load_recognizer

    return load_recognizer(threads=1)


def test_fake_detector_keeps_the_contract():
    assert isinstance(FakeDetector(), TextDetector)


def test_registry_builds_registered_kinds_and_refuses_unknown_ones():
    kind = register_detector(DetectorKind("fake-for-tests", "a fake", lambda **kw: FakeDetector()))
    assert detector_kinds()["fake-for-tests"] is kind
    assert isinstance(load_detector("fake-for-tests"), FakeDetector)
    with pytest.raises(BackendError, match="unknown text detector"):
        load_detector("no-such-detector")
    with pytest.raises(ValueError, match="already registered"):
        register_detector(DetectorKind("fake-for-tests", "another", lambda **kw: FakeDetector()))


def test_import_crnn_loads_no_detector_package():
    code = ("import sys, crnn, crnn.detection.detector, crnn.detection.photo_reader; "
            "print(sorted(m for m in ('onnxruntime', 'rapidocr', 'shapely', 'pyclipper') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("turns", [0, 1, 3])
@pytest.mark.parametrize("angle", [0.0, 20.0])
def test_cut_maps_crop_corners_back_to_the_quad(turns, angle):
    photo = np.random.default_rng(0).integers(0, 255, (200, 300), dtype=np.uint8)
    a = np.deg2rad(angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    q = (quad(-60, -15, 60, 15) @ rot.T + [150, 100]).astype(np.float32)
    crop = cut(photo, q, turns)
    h, w = crop.image.shape
    assert (w, h) == ((120, 30) if turns % 2 == 0 else (30, 120))
    back = crop.box_to_photo(0, w)
    assert np.allclose(back, np.roll(q, -turns, axis=0), atol=1e-3)
    assert is_tall(q) is False and is_tall(quad(0, 0, 10, 40)) is True


def test_reader_splits_a_line_into_words_with_their_boxes(recognizer):
    photo, truth = line_photo(["HELLO", "WORLD", "TODAY"])
    # The line's box a few pixels around its ink, as a DB detector's (unclipped) box is.
    line = quad(truth[0][0, 0] - 4, min(t[0, 1] for t in truth) - 3, truth[-1][2, 0] + 4, max(t[2, 1] for t in truth) + 3)
    for split in ("ctc", "chars"):
        reading = PhotoReader(FakeDetector([DetectedText(line, 0.9)]), recognizer, split=split).read(photo)
        assert len(reading.lines) == 1
        assert [w.line for w in reading.words] == [0] * len(reading.words)
        if split == "ctc":
            assert [w.text.upper() for w in reading.words] == ["HELLO", "WORLD", "TODAY"]
            assert all(polygon_iou(w.polygon, t) > 0.5 for w, t in zip(reading.words, truth))
            ctc = reading
    # The alignment's boxes are at least as close to the words as the char-count ones.
    naive = PhotoReader(FakeDetector([DetectedText(line, 0.9)]), recognizer, split="chars").read(photo)
    ious = [(polygon_iou(a.polygon, t), polygon_iou(b.polygon, t)) for a, b, t in zip(ctc.words, naive.words, truth)]
    assert sum(a for a, _ in ious) >= sum(b for _, b in ious) - 1e-6


class DroppedSpaceRecognizer:
    """A fake CTC recognizer that reads every crop as "ATHIGH": its space, between T and H, lost the argmax to the
    blank with probability ``space`` (crnn.detection.word_split.infer_spaces puts it back)."""

    def __init__(self, space: float) -> None:
        from crnn.charset import Charset
        from crnn.io.preprocess import PreprocessConfig

        self.charset = Charset()
        self.preprocess = PreprocessConfig()
        frames = 24
        p = np.full((frames, self.charset.num_classes), 1e-6)
        p[:, 0] = 1.0
        for t, ch in {2: "A", 5: "T", 11: "H", 14: "I", 17: "G", 20: "H"}.items():
            p[t, 0], p[t, self.charset.encode(ch)[0]] = 1e-6, 0.9
        p[8, 0], p[8, self.charset.encode(" ")[0]] = 1.0 - space, space
        self.log_probs = np.log(p / p.sum(axis=1, keepdims=True)).astype(np.float32)

    def prepare(self, source) -> np.ndarray:
        return np.zeros((32, 96), np.float32)

    def batches(self, arrays, batch_size):
        yield list(range(len(arrays)))

    def batch_log_probs(self, arrays):
        return np.repeat(self.log_probs[None], len(arrays), axis=0), np.full(len(arrays), len(self.log_probs))


@pytest.mark.parametrize("space, space_prob, words", [
    (0.3, "default", ["AT", "HIGH"]),  # a likely space the argmax dropped: put back in the line and its words
    (0.3, None, ["ATHIGH"]),           # inference off: the text as decoded
    (0.3, 0.5, ["ATHIGH"]),            # below the threshold asked for
    (1e-4, "default", ["ATHIGH"]),     # an unlikely space: none
])
def test_reader_puts_back_dropped_spaces(space, space_prob, words):
    photo = np.full((60, 200, 3), 255, np.uint8)
    options = {} if space_prob == "default" else {"space_prob": space_prob}
    reader = PhotoReader(FakeDetector([DetectedText(quad(10, 10, 190, 50), 0.9)]), DroppedSpaceRecognizer(space),
                         decoder="greedy", **options)
    reading = reader.read(photo)
    assert [w.text for w in reading.words] == words
    assert reading.lines[0].text == " ".join(words)
    assert all(w.confidence > 0.99 for w in reading.words)  # the characters' own, not the space's (0.3)
    xs = [(float(w.polygon[:, 0].min()), float(w.polygon[:, 0].max())) for w in reading.words]
    assert all(x0 < x1 for x0, x1 in xs) and all(xs[i][1] <= xs[i + 1][0] + 1e-3 for i in range(len(xs) - 1))
    assert reader.read(photo).to_dict()["words"] == reading.to_dict()["words"]  # the same photo, the same words


@pytest.mark.parametrize("metadata, space_prob, words", [
    ({}, SPACE_PROB, ["AT", "HIGH"]),                            # no value of its own: SPACE_PROB
    ({"photo_space_prob": 0.5}, 0.5, ["ATHIGH"]),                # a model taught lines asks for more evidence
    ({"photo_space_prob": None}, None, ["ATHIGH"]),              # or none at all
    (None, SPACE_PROB, ["AT", "HIGH"]),                          # a recognizer without metadata
])
def test_the_default_space_prob_is_the_models_own(metadata, space_prob, words):
    rec = DroppedSpaceRecognizer(0.3)
    if metadata is not None:
        rec.metadata = metadata
    reader = PhotoReader(FakeDetector([DetectedText(quad(10, 10, 190, 50), 0.9)]), rec, decoder="greedy")
    assert model_space_prob(rec) == reader.space_prob == space_prob
    assert [w.text for w in reader.read(np.full((60, 200, 3), 255, np.uint8)).words] == words


@pytest.mark.parametrize("space_prob", [0.0, -0.1, 1.5, "often"])
def test_reader_refuses_a_bad_space_prob(space_prob):
    with pytest.raises(ValueError, match="space_prob"):
        PhotoReader(FakeDetector(), DroppedSpaceRecognizer(0.3), space_prob=space_prob)
    with pytest.raises(ValueError, match="space_prob"):  # the copy with another threshold checks it alike
        PhotoReader(FakeDetector(), DroppedSpaceRecognizer(0.3)).with_space_prob(space_prob)


def test_reading_order_and_json(recognizer):
    photo, _ = line_photo(["SALE"])
    two = np.concatenate([photo, photo], axis=0)  # the same line twice, one under the other
    h = photo.shape[0]
    regions = [DetectedText(quad(14, h + 34, photo.shape[1] - 14, h + 78), 0.8),
               DetectedText(quad(14, 34, photo.shape[1] - 14, 78), 0.9)]
    reading = PhotoReader(FakeDetector(regions), recognizer).read(two)
    assert len(reading.lines) == 2
    assert reading.lines[0].polygon[0, 1] < reading.lines[1].polygon[0, 1]  # top line first
    d = reading.to_dict()
    assert set(d) == {"width", "height", "words", "lines", "unreadable", "dropped", "timings"}
    assert set(d["words"][0]) == {"text", "confidence", "polygon", "line"}


def test_tall_line_is_read_turned(recognizer):
    photo, _ = line_photo(["OPEN"])
    turned = np.ascontiguousarray(np.rot90(photo, -1))  # the text runs down the photo (turned 90 clockwise)
    h, w = turned.shape[:2]
    reader = PhotoReader(FakeDetector([DetectedText(quad(w / 2 - 24, 10, w / 2 + 24, h - 10), 0.9)]), recognizer,
                         orientation="none")
    reading = reader.read(turned)
    assert [x.text.upper() for x in reading.lines] == ["OPEN"]
    assert reading.lines[0].orientation == "90"


@pytest.mark.parametrize("photo", [
    np.full((300, 400, 3), 255, np.uint8),  # blank
    np.random.default_rng(1).integers(0, 255, (300, 400, 3), dtype=np.uint8),  # noise
])
def test_no_text_gives_empty_lists(recognizer, photo):
    reading = PhotoReader(FakeDetector([]), recognizer).read(photo)
    assert isinstance(reading, PhotoReading) and reading.words == [] and reading.lines == []


@pytest.mark.parametrize("region", [
    quad(0, 0, 1, 1),  # 1 px: too small to read
    quad(0, 0, 400, 2),  # far too elongated
    np.array([[5, 5], [5, 5], [5, 5], [5, 5]], np.float32),  # a point
])
def test_unreadable_regions_are_counted_not_raised(recognizer, region):
    reading = PhotoReader(FakeDetector([DetectedText(region, 0.5)]), recognizer).read(np.zeros((10, 400, 3), np.uint8))
    assert reading.words == [] and reading.unreadable + reading.dropped == 1


def test_hostile_inputs(recognizer):
    reader = PhotoReader(FakeDetector([]), recognizer)
    assert reader.read(np.zeros((1, 1, 3), np.uint8)).words == []
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(buf, "JPEG")
    with pytest.raises(InvalidImageError):
        reader.read(buf.getvalue()[:100])  # truncated
    with pytest.raises(InvalidImageError):
        reader.read(b"")
    with pytest.raises(InvalidImageError, match="over the limit"):
        reader.read(np.zeros((8000, 6000, 3), np.uint8))  # 48 M pixels, over the 40 M limit


needs_detect = pytest.mark.skipif(not HAVE_DETECT, reason="needs the detect extra (rapidocr, onnxruntime)")


@pytest.fixture(scope="module")
def detector():
    return load_detector(threads=1)


@needs_detect
def test_ppocr_detector_finds_a_line_of_words(detector):
    photo, truth = line_photo(["OPEN", "DAILY"], gap=20, height=48)
    photo = cv2.resize(photo, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    regions = detector.detect(photo)
    assert len(regions) >= 1
    from shapely.geometry import Polygon

    for t in truth:  # each word lies inside a region, however the detector groups them into lines
        word = Polygon(2 * t)
        assert max(Polygon(r.polygon).intersection(word).area for r in regions) > 0.9 * word.area
    assert all(0.0 <= r.score <= 1.0 for r in regions)


@needs_detect
@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 3000, 3), (3000, 2, 3), (300, 400, 3), (4000, 6000, 3)])
def test_ppocr_detector_on_photos_without_text(detector, shape):
    assert detector.detect(np.full(shape, 255, np.uint8)) == []


@needs_detect
def test_read_photo_end_to_end(detector, recognizer):
    from crnn.detection.photo_reader import read_photo

    photo, _ = line_photo(["OPEN", "DAILY"], gap=20, height=48)
    photo = cv2.resize(photo, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    reading = read_photo(photo, detector=detector, recognizer=recognizer)
    assert " ".join(w.text.upper() for w in reading.words) == "OPEN DAILY"
    assert read_photo(np.zeros((1, 1, 3), np.uint8), detector=detector, recognizer=recognizer).words == []


# ---- the line decoder's options: lm_weight, and a lexicon on each word ------------------------------------------------


@pytest.mark.parametrize("split", ["ctc", "chars"])
def test_lm_weight_reaches_the_line_decoder(recognizer, monkeypatch, split):
    import crnn.decoding.ctc_decode as ctc_decode
    import crnn.detection.photo_reader as photo_reader
    import crnn.reading.text_recognizer as text_recognizer

    seen: list[float | None] = []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("lm_weight"))
        return ctc_decode.decode(*args, **kwargs)

    for module in (photo_reader, text_recognizer):  # the CTC split's decode, and the recognizer's (split="chars")
        monkeypatch.setattr(module, "decode", spy)
    photo, _ = line_photo(["OPEN", "DAILY"])
    h, w = photo.shape[:2]
    det = FakeDetector([DetectedText(quad(10, 30, w - 10, 85), 0.9)])
    PhotoReader(det, recognizer, split=split, decoder="lm", lm_weight=0.25).read(photo)
    assert seen and set(seen) == {0.25}


def planted(text: str, charset, frames_per_char: int = 3, runner_up: dict[int, str] | None = None) -> np.ndarray:
    """Log-probabilities (T, C) that read ``text``: each character on one frame at 0.9, then blanks; at character
    index i of ``runner_up``, that character fires instead and the text's own is second (0.3)."""
    rows = []
    for i, ch in enumerate(text):
        p = np.full(charset.num_classes, 1e-4)
        if runner_up and i in runner_up:
            p[charset.encode(runner_up[i])[0]], p[charset.encode(ch)[0]] = 0.6, 0.3
        else:
            p[charset.encode(ch)[0]] = 0.9
        rows.append(p)
        for _ in range(frames_per_char - 1):
            b = np.full(charset.num_classes, 1e-4)
            b[0] = 0.9
            rows.append(b)
    lp = np.log(np.array(rows) / np.array(rows).sum(axis=1, keepdims=True))
    return lp.astype(np.float32)


def test_word_frames_are_the_words_own_without_the_space(recognizer):
    from crnn.detection.word_lexicon import word_frames
    from crnn.detection.word_split import align

    cs = recognizer.charset
    lp = planted("AB CD", cs)  # frames: A=0, B=3, space=6, C=9, D=12 (T=15)
    space = cs.encode(" ")[0]
    lp2 = np.concatenate([lp[:7], lp[6:7], lp[7:]])  # the space fires on two frames (6 and 7)
    peaks = align(lp2, cs.encode("AB CD"))
    assert peaks.tolist() == [0, 3, 6, 10, 13]
    assert word_frames("AB CD", peaks, lp2, space) == [(0, 6), (8, 16)]  # frame 7 (still the space) is the gap's
    assert word_frames("AB", align(lp[:6], cs.encode("AB")), lp[:6], space) == [(0, 6)]


def _line(text: str, lp: np.ndarray, recognizer) -> tuple[list, list]:
    from crnn.detection.photo_reader import PhotoLine, PhotoWord
    from crnn.detection.word_split import word_spans

    box = quad(0, 0, 10, 10)
    words = [PhotoWord(text[a:b], 0.5, box + k, 0) for k, (a, b) in enumerate(word_spans(text))]
    return words, [PhotoLine(text, 0.5, box, 0.9)]


LARGE = [f"filler{i}" for i in range(600)]  # past SMALL_LEXICON_WORDS: a list that may not hold the word


@pytest.mark.parametrize("lexicon, texts, flags", [
    # A misread letter (HOTFL: F fired, E second) becomes the list word; the number stays as read (not in the list).
    (["hotel", "paris", *LARGE], ["HOTEL", "PARIS", "2024"], [True, True, False]),
    # A small list is closed (the crop path's rule): every word becomes one of its words.
    (["hotel", "paris"], ["HOTEL", "PARIS", None], [True, True, True]),
    (["Hotel", "paris"], ["HOTEL", "PARIS", None], [True, True, True]),  # the case the image shows
], ids=["large", "small", "case"])
def test_each_word_is_decoded_from_its_own_frames_under_the_lexicon(recognizer, lexicon, texts, flags):
    from crnn.decoding.lexicon import Lexicon
    from crnn.detection.word_lexicon import constrain_words

    cs = recognizer.charset
    read = "HOTFL PARIS 2024"
    lp = planted("HOTEL PARIS 2024", cs, runner_up={3: "F"})
    words, lines = _line(read, lp, recognizer)
    out, new_lines = constrain_words(words, lines, [lp], cs, Lexicon(lexicon, cs), "greedy", 10, None)
    assert [w.in_lexicon for w in out] == flags
    for w, want, before in zip(out, texts, words):
        if want is not None:
            assert w.text == want
        assert np.array_equal(w.polygon, before.polygon) and w.line == before.line  # the box is the word's own
    if flags[2] is False:
        assert out[2].text == "2024" and out[2].confidence == words[2].confidence  # the reading stands
    else:
        assert out[2].text.lower() in {"hotel", "paris"}
    assert new_lines[0].text == " ".join(w.text for w in out)


def test_lexicon_on_photos_through_the_reader(recognizer):
    photo, _ = line_photo(["HOTEL", "PARIS"])
    h, w = photo.shape[:2]
    det = FakeDetector([DetectedText(quad(10, 30, w - 10, 85), 0.9)])
    plain = PhotoReader(det, recognizer, decoder="greedy").read(photo)
    read = PhotoReader(det, recognizer, decoder="greedy", lexicon=["paris", "hotel", *LARGE]).read(photo)
    assert [x.text.upper() for x in read.words] == ["HOTEL", "PARIS"] and all(x.in_lexicon for x in read.words)
    assert [x.polygon.tolist() for x in read.words] == [x.polygon.tolist() for x in plain.words]
    assert all(x.in_lexicon is None and "in_lexicon" not in x.to_dict() for x in plain.words)
    assert read.words[0].to_dict()["in_lexicon"] is True
    chars = PhotoReader(det, recognizer, decoder="greedy", split="chars", lexicon=["paris", "hotel"]).read(photo)
    assert [x.text.upper() for x in chars.words] == ["HOTEL", "PARIS"]


def test_lexicon_needs_a_ctc_recognizer(recognizer):
    from crnn.errors import DecoderOptionError

    class NoFrames:
        kind = "attention"
        charset = recognizer.charset

    with pytest.raises(DecoderOptionError, match="CTC recognizer"):
        PhotoReader(FakeDetector(), NoFrames(), lexicon=["word"])  # type: ignore[arg-type]
