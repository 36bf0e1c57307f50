"""Text recognition metrics: word accuracy, character error rate and normalised edit similarity.

Every metric takes parallel sequences of predicted and target strings and raises ValueError when
their lengths differ. With no samples at all every metric is 0.0 (``TextMetrics.count`` tells
such a result apart from a genuinely bad one).

``protocol=True`` applies the usual scene-text benchmark protocol (IIIT5k, SVT, IC13, IC15, ...)
to both sides first: lowercase and keep only the characters 0-9 and a-z.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from rapidfuzz.distance import Levenshtein

_NOT_ALNUM = re.compile(r"[^0-9a-z]")


def normalize_protocol(text: str) -> str:
    """``text`` under the benchmark protocol: lowercased, only 0-9 and a-z kept."""
    return _NOT_ALNUM.sub("", text.lower())


def _pairs(
    predictions: Sequence[str], targets: Sequence[str], protocol: bool
) -> list[tuple[str, str]]:
    if len(predictions) != len(targets):
        raise ValueError(f"got {len(predictions)} predictions for {len(targets)} targets")
    if protocol:
        return [(normalize_protocol(p), normalize_protocol(t)) for p, t in zip(predictions, targets)]
    return list(zip(predictions, targets))


def word_accuracy(
    predictions: Sequence[str], targets: Sequence[str], protocol: bool = False
) -> float:
    """Fraction of predictions equal to their target (0.0 for no samples)."""
    pairs = _pairs(predictions, targets, protocol)
    if not pairs:
        return 0.0
    return sum(p == t for p, t in pairs) / len(pairs)


def character_error_rate(
    predictions: Sequence[str], targets: Sequence[str], protocol: bool = False
) -> float:
    """Total Levenshtein distance over total target length (0.0 for no samples).

    When every target is empty the denominator is taken as 1, so the rate is then the number of
    inserted characters rather than a division by zero.
    """
    pairs = _pairs(predictions, targets, protocol)
    distance = sum(Levenshtein.distance(p, t) for p, t in pairs)
    return distance / max(sum(len(t) for _, t in pairs), 1)


def normalized_edit_similarity(
    predictions: Sequence[str], targets: Sequence[str], protocol: bool = False
) -> float:
    """Mean of 1 - NED, NED = distance / max(len(p), len(t)) and 0 when both are empty (0.0 for no samples)."""
    pairs = _pairs(predictions, targets, protocol)
    if not pairs:
        return 0.0
    # rapidfuzz normalises by max(len(p), len(t)) and returns 0 for two empty strings.
    return sum(1.0 - Levenshtein.normalized_distance(p, t) for p, t in pairs) / len(pairs)


@dataclass(frozen=True)
class TextMetrics:
    """All metrics of one evaluation.

    ``word_accuracy_protocol`` uses the benchmark protocol, ``word_accuracy_case`` the raw
    case-sensitive strings; ``cer`` and ``one_minus_ned`` also compare the raw strings.
    """

    count: int
    word_accuracy_protocol: float
    word_accuracy_case: float
    cer: float
    one_minus_ned: float

    def to_dict(self) -> dict[str, float | int]:
        """A JSON-able dict of every field."""
        return asdict(self)


def compute_metrics(predictions: Sequence[str], targets: Sequence[str]) -> TextMetrics:
    """Every metric of ``predictions`` against ``targets`` (CER and 1-NED on the raw, case-sensitive text)."""
    return TextMetrics(
        count=len(_pairs(predictions, targets, protocol=False)),
        word_accuracy_protocol=word_accuracy(predictions, targets, protocol=True),
        word_accuracy_case=word_accuracy(predictions, targets),
        cer=character_error_rate(predictions, targets),
        one_minus_ned=normalized_edit_similarity(predictions, targets),
    )


@dataclass(frozen=True)
class CalibrationBin:
    """Predictions whose confidence fell in [low, high): how many, their mean confidence, how many were right."""

    low: float
    high: float
    count: int
    mean_confidence: float
    accuracy: float


def calibration(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> tuple[float, list[CalibrationBin]]:
    """Expected calibration error and the reliability table over ``bins`` equal-width confidence bins.

    ECE = sum over bins of (bin count / total) * |accuracy - mean confidence|: 0 when, among predictions
    made with confidence c, a share c is right. Empty bins are left out of the table.
    """
    if len(confidences) != len(correct):
        raise ValueError(f"{len(confidences)} confidences but {len(correct)} correctness flags")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    groups: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for c, ok in zip(confidences, correct):
        groups[min(bins - 1, max(0, int(c * bins)))].append((c, bool(ok)))
    table = [
        CalibrationBin(i / bins, (i + 1) / bins, len(g), sum(c for c, _ in g) / len(g), sum(ok for _, ok in g) / len(g))
        for i, g in enumerate(groups) if g
    ]
    total = len(confidences)
    ece = sum(b.count / total * abs(b.accuracy - b.mean_confidence) for b in table) if total else 0.0
    return ece, table
