"""Batch OCR: chunks of decoded images read by a recognizer into rows, in input order (what `crnn ocr` and the
actors of `crnn ocr --ray` run)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crnn.prediction import Prediction

if TYPE_CHECKING:
    import numpy as np

    from crnn.decoding.lexicon import Lexicon
    from crnn.io.image_loader import Chunk
    from crnn.reading.orientation import OrientationClassifier
    from crnn.reading.text_recognizer import TextRecognizer

# Images per chunk = batch size x this. Big chunks fill the width buckets, so batches are full (on 2,000
# rendered words, whose widths spread over ~60 buckets, 32 batches a chunk instead of 2 doubled the mean
# batch, 10 -> 21 images); two chunks at most are held at a time.
CHUNK_BATCHES = 32


@dataclass
class Row:
    """One output record: a path and either a prediction or an error message."""

    path: str
    prediction: Prediction | None = None
    error: str | None = None


def run_ocr(
    recognizer: TextRecognizer,
    chunks: Iterable[Chunk],
    batch_size: int = 64,
    decoder: str | None = None,
    beam_width: int = 10,
    lexicon: Lexicon | None = None,
    workers: int = 1,
    lm_weight: float | None = None,
    orientation: OrientationClassifier | None = None,
) -> Iterator[Row]:
    """Yield one Row per input in input order, a chunk at a time (see :class:`crnn.io.image_loader.ChunkLoader`).

    With ``orientation`` the chunks hold OrientedCrops (an ``oriented`` loader): each is turned as the classifier
    says before it is read, and its prediction says how (``Prediction.orientation``). ``decoder`` None: the
    default (crnn.decoding.ctc_decode.DEFAULT_DECODER).
    """
    from dataclasses import replace

    from crnn.decoding.ctc_decode import DEFAULT_DECODER

    decoder = DEFAULT_DECODER if decoder is None else decoder

    for chunk in chunks:
        good = [i for i, (_, arr, _) in enumerate(chunk) if arr is not None]
        arrays = [chunk[i][1] for i in good]
        labels: list[str | None] = [None] * len(good)

        def read(inputs: list[np.ndarray]) -> list[Prediction]:
            return recognizer.recognize_prepared(inputs, batch_size, decoder, beam_width, lexicon, workers, lm_weight)  # type: ignore[arg-type]

        if orientation is not None:
            from crnn.reading.orientation import read_oriented

            preds, labels = read_oriented(read, arrays, orientation, recognizer.preprocess)  # type: ignore[arg-type,assignment]
        else:
            preds = read(arrays) if good else []
        preds = [p if o is None else replace(p, orientation=o) for p, o in zip(preds, labels)]
        by_index = dict(zip(good, preds))
        for i, (path, _, err) in enumerate(chunk):
            yield Row(path, by_index.get(i), None if i in by_index else err)
