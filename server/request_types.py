"""What a recognize request asks for, once parsed: its images and decoding options (shared by parsing and the engine)."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from crnn.decoding.ctc_decode import DEFAULT_DECODER
from crnn.decoding.lexicon import Lexicon
from crnn.errors import InvalidImageError

_DATA_URL = re.compile(r"^data:[\w.+/-]*(;[\w.+=-]+)*;base64,", re.IGNORECASE)


@dataclass(frozen=True)
class DecodeOptions:
    """How one request's images are decoded; images of requests with equal options share batches."""

    decoder: str = DEFAULT_DECODER
    beam_width: int = 10
    lexicon: Lexicon | None = None
    lm_weight: float | None = None
    # "auto": crops are turned upright first (crnn.reading.orientation); not in the key, it acts before batching.
    orientation: str = "none"

    @property
    def key(self) -> tuple[Any, ...]:
        """Batching key: beam width only matters for beam searches, lm_weight for lm; a lexicon is never shared."""
        return (self.decoder, self.beam_width if self.decoder != "greedy" else None,
                self.lm_weight if self.decoder == "lm" else None,
                id(self.lexicon) if self.lexicon is not None else None)


@dataclass
class ImageInput:
    """One image of a request: its name and its encoded bytes (or why it could not be read), and its own lexicon's words."""

    name: str
    data: bytes | None = None
    error: str | None = None
    # A tuple: the cyclic GC stops tracking a tuple of strings at its first collection, while a list of 10,000 words
    # stays tracked and every full collection walks its words (64 of them: ~10 ms a collection, GIL held).
    lexicon: tuple[str, ...] | None = None


def decode_base64(text: str) -> bytes:
    """Bytes of a base64 string (standard or URL-safe alphabet, padding optional, data: URL prefix allowed)."""
    text = _DATA_URL.sub("", text.strip(), count=1)
    text = "".join(text.split())  # line breaks, as `base64` wraps its output
    text += "=" * (-len(text) % 4)
    alt = b"-_" if ("-" in text or "_" in text) else None
    try:
        return base64.b64decode(text, altchars=alt, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImageError("data is not valid base64") from None
