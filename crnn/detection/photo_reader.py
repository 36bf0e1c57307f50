"""PhotoReader: the words of a whole photo with where they are. A text detector finds the lines, each line is cut
out upright (perspective warp; tall lines turned), our recognizer reads it, and the line is split into words at its
spaces, from the CTC alignment of the read characters (crnn.detection.word_split)."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from crnn.decoding.ctc_decode import DEFAULT_DECODER, decode
from crnn.detection.detector import DEFAULT_DETECTOR, DetectedText, TextDetector
from crnn.detection.registry import load_detector
from crnn.detection.word_lexicon import Lexicon, as_lexicon, check_recognizer, constrain_words
from crnn.detection.line_crop import LineCrop, cut, is_tall
from crnn.detection.photo_image import load_photo
from crnn.detection.reading_order import reading_order
from crnn.detection.word_split import (SPACE_PROB, SPLITS, align, infer_spaces, split_by_alignment, split_by_char_count,
                                      word_spans)
from crnn.errors import InvalidImageError
from crnn.io.oriented_crops import ORIENTATIONS, classifier_input
from crnn.reading.orientation import OrientationClassifier, load_orientation
from crnn.prediction import Prediction
from crnn.io.preprocess import ImageSource, PreprocessConfig
from crnn.reading.text_recognizer import TextRecognizer

# A line is kept when the mean of its characters' confidences is at least this: the rule and value rapidocr's
# pipeline applies by default (Global.text_score 0.5), not tuned here. Measured on real street photos (issue 35): it
# raised end-to-end precision from 41.8 to 49.1 without losing one correct word.
MIN_LINE_CONFIDENCE = 0.5


def _round_polygon(polygon: np.ndarray) -> list[list[float]]:
    return np.round(np.asarray(polygon, np.float64), 1).tolist()


def model_space_prob(recognizer: TextRecognizer) -> float | None:
    """The space probability at which PhotoReader puts back dropped spaces for ``recognizer``: its checkpoint's
    ``photo_space_prob`` metadata (a number, or null: none inferred), else SPACE_PROB (chosen for the default model)."""
    metadata = getattr(recognizer, "metadata", None)
    value = metadata.get("photo_space_prob", SPACE_PROB) if isinstance(metadata, dict) else SPACE_PROB
    return None if value is None else float(value)


def _checked_space_prob(value: float | str | None) -> float | None:
    """``value`` when it is a space probability PhotoReader takes ((0, 1]) or None; ValueError otherwise."""
    if value is not None and (isinstance(value, str) or not 0.0 < value <= 1.0):
        raise ValueError(f"space_prob must be in (0, 1] or None, got {value!r}")
    return value


@dataclass(frozen=True)
class PhotoWord:
    """One word of a photo: its text, confidence (the mean of its characters'), and quadrilateral (4, 2) float32 in
    photo pixels, clockwise from the top-left corner of the text as it reads; ``line`` indexes PhotoReading.lines."""

    text: str
    confidence: float
    polygon: np.ndarray
    line: int
    in_lexicon: bool | None = None  # only with a lexicon: whether the text is a lexicon word (as on crops)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``text``, ``confidence``, ``polygon`` as [[x, y], ...], ``line``; ``in_lexicon`` only
        when a lexicon was used, as on crops)."""
        out = {"text": self.text, "confidence": round(self.confidence, 4), "polygon": _round_polygon(self.polygon),
               "line": self.line}
        if self.in_lexicon is not None:
            out["in_lexicon"] = self.in_lexicon
        return out


@dataclass(frozen=True)
class PhotoLine:
    """One detected text line as read: its text, confidence (mean of its characters'), quadrilateral in photo
    pixels, the detector's score, and how its text appeared (``"0"``, or ``"90"``/``"270"``/``"180"`` when turned)."""

    text: str
    confidence: float
    polygon: np.ndarray
    detector_score: float
    orientation: str = "0"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return {"text": self.text, "confidence": round(self.confidence, 4), "polygon": _round_polygon(self.polygon),
                "detector_score": round(self.detector_score, 4), "orientation": self.orientation}


@dataclass(frozen=True)
class PhotoReading:
    """Everything read in one photo: words and lines in reading order, the photo's size, the regions the detector
    found but that could not be read (too small or too elongated for the recognizer) or were dropped under the
    confidence rule, and the time each stage took (seconds)."""

    words: list[PhotoWord]
    lines: list[PhotoLine]
    width: int
    height: int
    unreadable: int = 0
    dropped: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The lines' texts, one per line, in reading order."""
        return "\n".join(line.text for line in self.lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``width``, ``height``, ``words``, ``lines``, ``unreadable``, ``dropped``, ``timings``)."""
        return {"width": self.width, "height": self.height, "words": [w.to_dict() for w in self.words],
                "lines": [x.to_dict() for x in self.lines], "unreadable": self.unreadable, "dropped": self.dropped,
                "timings": {k: round(v, 4) for k, v in self.timings.items()}}


@dataclass
class _Candidate:
    region: int
    crop: LineCrop
    array: np.ndarray


class PhotoReader:
    """Reads whole photos: ``detector`` (a TextDetector) finds the text lines, ``recognizer`` (a TextRecognizer)
    reads them, and each line is split into words. ``decoder``, ``beam_width`` and ``lm_weight`` (the ``lm``
    decoder's language-model weight; None: the tuned one) decode the lines. ``lexicon``: each word (not line) is
    constrained to it, decoded from its own CTC frames as a crop is (crnn.detection.word_lexicon; a CTC recognizer).

    ``split``: ``"ctc"`` (default) places the word boxes from the CTC alignment of the read characters, where the
    recognizer gives per-frame outputs (any CTC kind, either backend); ``"chars"`` splits by character count (also
    what non-CTC kinds get). ``min_confidence``: lines whose mean character confidence is below it are dropped.
    ``orientation``: ``"auto"`` asks the shipped orientation classifier how the text of tall crops runs (a tall crop
    is otherwise read as it came and turned a quarter turn counter-clockwise, and the more confident reading kept),
    ``"none"`` skips the classifier. ``space_prob``: with the CTC split, a space the recognizer dropped is put back
    between two read characters where the network gives the space at least this probability on a frame between
    them (crnn.detection.word_split.infer_spaces): the line's text and its words get it; None reads the text as
    decoded; ``"auto"`` (default) takes the recognizer's own value from its checkpoint (``photo_space_prob`` in its
    metadata: a model taught multi-word lines reads most spaces and wants a higher one), else SPACE_PROB. A photo's
    result does not depend on other photos (no state between calls).
    """

    def __init__(self, detector: TextDetector, recognizer: TextRecognizer, split: str = "ctc",
                 min_confidence: float = MIN_LINE_CONFIDENCE, orientation: str | OrientationClassifier | None = "auto",
                 decoder: str = DEFAULT_DECODER, beam_width: int = 10, batch_size: int = 64,
                 space_prob: float | str | None = "auto", lm_weight: float | None = None,
                 lexicon: Lexicon | Iterable[str] | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        self.space_prob = _checked_space_prob(model_space_prob(recognizer) if space_prob == "auto" else space_prob)
        self.detector = detector
        self.recognizer = recognizer
        self.split = split
        self.min_confidence = min_confidence
        self._orientation_mode = orientation
        self._classifier: OrientationClassifier | None = orientation if isinstance(orientation, OrientationClassifier) else None
        self.decoder = decoder
        self.beam_width = beam_width
        self.batch_size = batch_size
        self.lm_weight = lm_weight
        self.lexicon = as_lexicon(lexicon, recognizer.charset)
        if self.lexicon is not None:
            check_recognizer(recognizer)

    def with_split(self, split: str) -> PhotoReader:
        """A reader like this one (the same detector, recognizer and classifier) that splits lines by ``split``."""
        other = copy.copy(self)
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        other.split = split
        return other

    def with_space_prob(self, space_prob: float | None) -> PhotoReader:
        """A reader like this one that infers dropped spaces at ``space_prob`` (None: not at all)."""
        other = copy.copy(self)
        other.space_prob = _checked_space_prob(space_prob)
        return other

    @property
    def preprocess(self) -> PreprocessConfig:
        """The recognizer's preprocessing (its pixel limit also bounds the photos read)."""
        return self.recognizer.preprocess

    def _orientation(self) -> OrientationClassifier | None:
        # Loaded on the first tall crop: photos without one never load torch's classifier.
        if self._classifier is None and self._orientation_mode == "auto":
            try:
                self._classifier = load_orientation("auto")
            except Exception:  # no torch (the onnx backend) or no weights: tall crops get the fixed quarter turn
                self._orientation_mode = "none"
        return self._classifier

    def read(self, image: ImageSource) -> PhotoReading:
        """The words and lines of one photo (a path, bytes, a PIL image or an RGB array); a photo without text gives
        empty lists. Raises InvalidImageError for an input that is no readable image (as the recognizer does)."""
        t0 = time.perf_counter()
        rgb = load_photo(image, self.preprocess.max_pixels)
        t1 = time.perf_counter()
        regions = self.detector.detect(rgb)
        t2 = time.perf_counter()
        reading = self.read_regions(rgb, regions)
        t3 = time.perf_counter()
        reading.timings.update({"load": t1 - t0, "detect": t2 - t1, "recognize": t3 - t2})
        return reading

    def read_regions(self, rgb: np.ndarray, regions: Sequence[DetectedText]) -> PhotoReading:
        """Read the given ``regions`` (e.g. a detector's, or ground-truth boxes) of the RGB photo (H, W, 3) uint8."""
        h, w = rgb.shape[:2]
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        candidates = self._candidates(gray, regions)
        preds, frames = self._recognize([c.array for c in candidates])
        best: dict[int, int] = {}
        for k, (c, p) in enumerate(zip(candidates, preds)):
            old = best.get(c.region)
            # A turned reading replaces the crop as it came only when strictly more confident (crnn.reading.orientation).
            if old is None or p.confidence > preds[old].confidence:
                best[c.region] = k
        unreadable = len(regions) - len(best)
        dropped = 0
        kept: list[tuple[int, int, float]] = []
        for region, k in best.items():
            p = preds[k]
            conf = float(np.mean(p.char_confidences)) if p.char_confidences else 0.0
            if not p.text.strip() or conf < self.min_confidence:
                dropped += 1
                continue
            kept.append((region, k, conf))
        order = reading_order([regions[r].polygon for r, _, _ in kept])
        lines: list[PhotoLine] = []
        words: list[PhotoWord] = []
        for index in order:
            region, k, conf = kept[index]
            c, p = candidates[k], preds[k]
            line_no = len(lines)
            text, spans = self._split(p.text, frames[k], c)
            lines.append(PhotoLine(text.strip(), conf, c.crop.box_to_photo(0, c.crop.image.shape[1]),
                                   regions[region].score, str(90 * c.crop.turns)))
            # Word confidences from the read characters' own (an inferred space adds none): the text's non-space
            # characters are the reading's, in order.
            own = [x for ch, x in zip(p.text, p.char_confidences) if ch != " "] \
                if len(p.char_confidences) == len(p.text) else []
            used = 0
            for (a, b), (x0, x1) in zip(word_spans(text), spans):
                cc = own[used : used + b - a]
                used += b - a
                words.append(PhotoWord(text[a:b], float(np.mean(cc)) if len(cc) else conf,
                                       c.crop.box_to_photo(x0, x1), line_no))
        if self.lexicon is not None:  # each word of each kept line, from its own frames
            words, lines = constrain_words(words, lines, [frames[kept[i][1]] for i in order], self.recognizer.charset,
                                           self.lexicon, self.decoder, self.beam_width, self.lm_weight)
        return PhotoReading(words, lines, w, h, unreadable, dropped)

    def _candidates(self, gray: np.ndarray, regions: Sequence[DetectedText]) -> list[_Candidate]:
        """Each region cut upright and prepared for the recognizer; a tall region twice (as it came and turned)."""
        crops: list[tuple[int, LineCrop]] = []
        tall: list[tuple[int, LineCrop]] = []
        for i, region in enumerate(regions):
            crop = cut(gray, region.polygon)
            crops.append((i, crop))
            if is_tall(region.polygon):
                tall.append((i, crop))
        if tall:
            classifier = self._orientation() if self._orientation_mode != "none" else None
            turns = [1] * len(tall)
            if classifier is not None:
                thumbs = [classifier_input(c.image) for _, c in tall]
                labels = classifier.classify([t for t, _ in thumbs], [f for _, f in thumbs])
                turns = [int(label) // 90 if label in ORIENTATIONS[1:4] else 1 for label in labels]
            for (i, _), k in zip(tall, turns):
                crops.append((i, cut(gray, regions[i].polygon, k)))
        out = []
        for i, crop in crops:
            try:
                out.append(_Candidate(i, crop, self.recognizer.prepare(crop.image)))
            except InvalidImageError:  # too small or too elongated to be read as one line
                continue
        return out

    def _recognize(self, arrays: list[np.ndarray]) -> tuple[list[Prediction], list[np.ndarray | None]]:
        """Readings of prepared crops and, for CTC recognizers, each crop's per-frame log-probabilities (T, C)."""
        rec = self.recognizer
        if not arrays:
            return [], []
        batch_log_probs = getattr(rec, "batch_log_probs", None)
        batches = getattr(rec, "batches", None)
        if (self.split != "ctc" and self.lexicon is None) or batch_log_probs is None or batches is None:
            return (rec.recognize_prepared(arrays, self.batch_size, self.decoder, self.beam_width, lm_weight=self.lm_weight),
                    [None] * len(arrays))
        preds: list[Prediction | None] = [None] * len(arrays)
        frames: list[np.ndarray | None] = [None] * len(arrays)
        for idx in batches(arrays, self.batch_size):
            lp, lengths = batch_log_probs([arrays[i] for i in idx])
            preds_batch = decode(lp, lengths, rec.charset, self.decoder, self.beam_width, lm_weight=self.lm_weight)
            for j, (i, p) in enumerate(zip(idx, preds_batch)):
                preds[i] = p
                frames[i] = np.asarray(lp[j, : int(lengths[j])])
        return preds, frames  # type: ignore[return-value]

    def _split(self, text: str, log_probs: np.ndarray | None, c: _Candidate) -> tuple[str, list[tuple[float, float]]]:
        """The line's text (with the spaces inferred from its alignment, see ``space_prob``) and each of its words'
        (x0, x1) in the crop."""
        width = float(c.crop.image.shape[1])
        if log_probs is not None and self.split == "ctc":
            charset = self.recognizer.charset
            try:
                peaks = align(log_probs, charset.encode(text))
            except Exception:  # a character outside the charset cannot happen for a decoded text; be safe
                peaks = None
            if peaks is not None:
                if self.space_prob is not None and " " in charset:
                    text, peaks = infer_spaces(text, peaks, log_probs, charset.encode(" ")[0], self.space_prob, None)
                return text, split_by_alignment(text, peaks, log_probs.shape[0], width)
        return text, split_by_char_count(text, width)


def read_photo(image: ImageSource, detector: TextDetector | None = None, recognizer: TextRecognizer | None = None,
               **options: Any) -> PhotoReading:
    """The words and lines of one photo, with the default detector (PP-OCRv6 small, ``crnn-ocr[detect]``) and the
    shipped photo recognizer (crnn.checkpoints.shipped.PHOTO_MODEL) unless given. Loads both on every call: build a
    :class:`PhotoReader` to read many photos."""
    from crnn.checkpoints.shipped import photo_model
    from crnn.kinds.loading import load_recognizer

    reader = PhotoReader(detector or load_detector(DEFAULT_DETECTOR),
                         recognizer or load_recognizer(model=photo_model(None, None)), **options)
    return reader.read(image)
