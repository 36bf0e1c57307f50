"""The ICDAR 2015 Robust Reading (Challenge 4, incidental scene text) detection and end-to-end metrics, "generic"
protocol (no lexicon, no word spotting), written from the challenge's published definition (the RRC's evaluation
script for Task 4.1 / 4.4):

* Ground-truth words transcribed ``###`` are "don't care": never counted, matched or missed.
* A detection whose area lies more than half inside a don't-care word is removed from the evaluation.
* Matching is one-to-one: ground-truth words are taken in order and, for each, the detections in order; a pair
  neither of whose members is matched yet and whose polygons' intersection over union exceeds 0.5 is matched.
* Detection: every matched pair counts. End-to-end: a matched pair counts when its texts are equal ignoring case; a
  ground-truth word may also lose one special character (``!?.:,*"()·[]/'``) at its start and/or end.
* Precision = counted pairs / cared-for detections, recall = counted pairs / cared-for ground-truth words, summed
  over all photos before dividing; F is their harmonic mean. Both are 0 when their denominator is.

Polygons are shapely polygons; a self-intersecting one is repaired with ``buffer(0)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

DONT_CARE = "###"
IOU_THRESHOLD = 0.5
DONT_CARE_AREA = 0.5
SPECIAL_CHARACTERS = "!?.:,*\"()·[]/'"


@dataclass(frozen=True)
class TextBox:
    """A word (ground truth or reading): its polygon (N, 2) in photo pixels and its text."""

    polygon: np.ndarray
    text: str


def _shape(points: np.ndarray):  # -> shapely Polygon
    from shapely.geometry import Polygon

    poly = Polygon(np.asarray(points, np.float64).reshape(-1, 2))
    return poly if poly.is_valid else poly.buffer(0)


def polygon_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two polygons (N, 2); 0 when either has no area."""
    pa, pb = _shape(a), _shape(b)
    inter = pa.intersection(pb).area
    union = pa.area + pb.area - inter
    return float(inter / union) if union > 0 else 0.0


def transcription_match(truth: str, read: str) -> bool:
    """Whether a reading matches a ground-truth text: equal ignoring case, the truth allowed to lose one special
    character at its start and/or end."""
    t, r = truth.upper(), read.upper()
    if not t:
        return False
    if t == r:
        return True
    first, last = t[0] in SPECIAL_CHARACTERS, t[-1] in SPECIAL_CHARACTERS
    return (first and t[1:] == r) or (last and t[:-1] == r) or (first and last and t[1:-1] == r)


@dataclass
class PhotoScore:
    """One photo's counts: cared-for ground-truth words and detections, detection matches, end-to-end matches, and
    the matched pairs (truth index, detection index, texts equal)."""

    truths: int
    detections: int
    detected: int
    read: int
    pairs: list[tuple[int, int, bool]] = field(default_factory=list)


def score_photo(truth: Sequence[TextBox], found: Sequence[TextBox]) -> PhotoScore:
    """The counts of one photo (see the module's docstring for the rules)."""
    truth_shapes = [_shape(t.polygon) for t in truth]
    found_shapes = [_shape(f.polygon) for f in found]
    dont_care = [t.text == DONT_CARE for t in truth]
    ignored = []
    for shape in found_shapes:
        area = shape.area
        ignored.append(area > 0 and any(
            dc and truth_shapes[g].intersection(shape).area / area > DONT_CARE_AREA for g, dc in enumerate(dont_care)))
    truth_used = [False] * len(truth)
    found_used = [False] * len(found)
    pairs: list[tuple[int, int, bool]] = []
    for g, tshape in enumerate(truth_shapes):
        if dont_care[g]:
            continue
        for d, fshape in enumerate(found_shapes):
            if truth_used[g] or found_used[d] or ignored[d]:
                continue
            inter = tshape.intersection(fshape).area
            union = tshape.area + fshape.area - inter
            if union > 0 and inter / union > IOU_THRESHOLD:
                truth_used[g] = found_used[d] = True
                pairs.append((g, d, transcription_match(truth[g].text, found[d].text)))
    return PhotoScore(truths=sum(not dc for dc in dont_care), detections=sum(not i for i in ignored),
                      detected=len(pairs), read=sum(ok for _, _, ok in pairs), pairs=pairs)


@dataclass(frozen=True)
class PRF:
    """Precision, recall and F (harmonic mean), each in [0, 1]."""

    precision: float
    recall: float
    f: float

    @classmethod
    def of(cls, matched: int, found: int, truths: int) -> PRF:
        p = matched / found if found else 0.0
        r = matched / truths if truths else 0.0
        return cls(p, r, 2 * p * r / (p + r) if p + r else 0.0)

    def to_dict(self) -> dict[str, float]:
        """Percentages rounded to 0.1."""
        return {"precision": round(100 * self.precision, 1), "recall": round(100 * self.recall, 1),
                "f": round(100 * self.f, 1)}


@dataclass(frozen=True)
class EndToEndResult:
    """Detection and end-to-end P/R/F over a set of photos, with the counts they come from."""

    detection: PRF
    end_to_end: PRF
    photos: int
    truths: int
    detections: int
    detected: int
    read: int

    def to_dict(self) -> dict[str, object]:
        """A JSON-able dict."""
        return {"photos": self.photos, "truths": self.truths, "detections": self.detections,
                "detected": self.detected, "read": self.read, "detection": self.detection.to_dict(),
                "end_to_end": self.end_to_end.to_dict()}


def end_to_end(photos: Iterable[tuple[Sequence[TextBox], Sequence[TextBox]]]) -> EndToEndResult:
    """Detection and end-to-end P/R/F over (ground truth, readings) pairs, one per photo."""
    scores = [score_photo(truth, found) for truth, found in photos]
    truths = sum(s.truths for s in scores)
    dets = sum(s.detections for s in scores)
    detected = sum(s.detected for s in scores)
    read = sum(s.read for s in scores)
    return EndToEndResult(PRF.of(detected, dets, truths), PRF.of(read, dets, truths), len(scores), truths, dets,
                          detected, read)
