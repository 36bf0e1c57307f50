"""The result of recognising one word image."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Prediction:
    """A recognised text with its confidences.

    ``confidence`` is the CTC probability of the whole text given the image, P(text | image),
    summed over every alignment of the text to the frames (so it is comparable across decoders).
    ``char_confidences`` has one value per character of ``text``: the highest per-frame
    probability of that character among the frames the best alignment assigns to it.
    ``in_lexicon`` is None when no lexicon was used, True when the text is a lexicon word, and False when
    no lexicon word was near the reading, which was returned as read.
    ``orientation`` is None when no orientation step ran (``--orientation none``), else how the crop's text
    appeared and was turned before reading: ``"0"``, ``"90"``, ``"180"``, ``"270"`` (degrees clockwise) or
    ``"stacked"`` (letters one under the other, re-laid side by side); see crnn.reading.orientation.
    """

    text: str
    confidence: float
    char_confidences: tuple[float, ...] = field(default_factory=tuple)
    in_lexicon: bool | None = None
    orientation: str | None = None

    def to_dict(self) -> dict[str, object]:
        """A JSON-able dict (``text``, ``confidence``, ``char_confidences``; ``in_lexicon`` when a lexicon was used)."""
        d: dict[str, object] = {
            "text": self.text,
            "confidence": self.confidence,
            "char_confidences": list(self.char_confidences),
        }
        if self.in_lexicon is not None:  # absent without a lexicon: outputs stay as they were
            d["in_lexicon"] = self.in_lexicon
        if self.orientation is not None:  # likewise absent without the orientation step
            d["orientation"] = self.orientation
        return d
