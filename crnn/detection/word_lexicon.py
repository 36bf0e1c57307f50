"""A lexicon on photos: it constrains words, and a detected line holds several, so each word of a read line is
decoded from its own CTC frames (the span its alignment gives it, crnn.detection.word_split.align) by the decoder
crops use (crnn.decoding.ctc_decode.decode with the lexicon), keeping the word's box. A word the lexicon cannot place
follows the crop path's rule: a large list keeps the reading, flagged ``in_lexicon: false``; a small list (at most
crnn.decoding.lexicon.SMALL_LEXICON_WORDS words) is closed, so every word becomes one of its words."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np

from crnn.charset import Charset
from crnn.decoding.ctc_decode import decode
from crnn.decoding.lexicon import Lexicon, as_lexicon
from crnn.detection.word_split import align, word_spans
from crnn.errors import DecoderOptionError

if TYPE_CHECKING:
    from crnn.reading.text_recognizer import TextRecognizer


class _Word(Protocol):
    """What constrain_words reads of a word (crnn.detection.photo_reader.PhotoWord: not imported, it imports this)."""

    text: str
    confidence: float
    line: int
    in_lexicon: bool | None


class _Line(Protocol):
    text: str


W = TypeVar("W", bound=_Word)
L = TypeVar("L", bound=_Line)

__all__ = ["Lexicon", "as_lexicon", "check_recognizer", "constrain_words", "word_frames"]


def check_recognizer(recognizer: TextRecognizer) -> None:
    """Raise DecoderOptionError unless ``recognizer`` gives per-frame outputs: a word's own frames are what its
    lexicon decoding reads, and a kind without them (e.g. attention) has none."""
    if getattr(recognizer, "batch_log_probs", None) is None or getattr(recognizer, "batches", None) is None:
        raise DecoderOptionError("a lexicon on photos needs a CTC recognizer (per-frame outputs), not "
                                 f"{getattr(recognizer, 'kind', type(recognizer).__name__)}")


def word_frames(text: str, peaks: np.ndarray, log_probs: np.ndarray, space: int | None) -> list[tuple[int, int]]:
    """The frames [f0, f1) of each word of ``text`` (word_spans) in ``log_probs`` (T, C), from the alignment's peak
    frame of every character (``peaks``, spaces included): a word runs from the frame after the space before it to
    the frame before the space after it (the line's ends for its outer words), less the frames at its edges where
    the space class (``space``, None when the charset has none) still wins: they belong to the gap."""
    spans = word_spans(text)
    frames = log_probs.shape[0]
    best = np.asarray(log_probs).argmax(axis=1)
    out = []
    for k, (a, b) in enumerate(spans):
        lo = 0 if k == 0 else int(max(peaks[i] for i in range(spans[k - 1][1], a))) + 1
        hi = frames if k == len(spans) - 1 else int(min(peaks[i] for i in range(b, spans[k + 1][0])))
        while space is not None and lo < peaks[a] and best[lo] == space:
            lo += 1
        while space is not None and hi - 1 > peaks[b - 1] and best[hi - 1] == space:
            hi -= 1
        out.append((lo, hi))
    return out


def constrain_words(words: Sequence[W], lines: Sequence[L], line_frames: Sequence[np.ndarray | None],
                    charset: Charset, lexicon: Lexicon, decoder: str, beam_width: int, lm_weight: float | None
                    ) -> tuple[list[W], list[L]]:
    """``words`` with each one's text decoded from its own frames under ``lexicon`` (``line_frames``: each line's
    log-probabilities (T, C), in ``lines``' order), its box kept; each line's text becomes its words' joined by a
    space. A word the list does not place keeps its reading and confidence (``in_lexicon`` False)."""
    space = charset.encode(" ")[0] if " " in charset else None
    segments: list[np.ndarray] = []
    where: list[int] = []  # the index in ``words`` of each segment
    by_line: dict[int, list[int]] = {}
    for i, w in enumerate(words):
        by_line.setdefault(w.line, []).append(i)
    for line_no, idx in by_line.items():
        lp, text = line_frames[line_no], lines[line_no].text
        if lp is None or len(word_spans(text)) != len(idx):
            continue
        peaks = align(lp, charset.encode(text))
        if peaks is None:
            continue
        for i, (f0, f1) in zip(idx, word_frames(text, peaks, lp, space)):
            segments.append(lp[f0:f1])
            where.append(i)
    out = list(words)
    if segments:
        # One decode for every word of the photo, padded to the longest (padding frames are never read).
        batch = np.zeros((len(segments), max(len(s) for s in segments), segments[0].shape[1]), segments[0].dtype)
        for j, s in enumerate(segments):
            batch[j, : len(s)] = s
        preds = decode(batch, np.array([len(s) for s in segments]), charset, decoder, beam_width, lexicon=lexicon,
                       lm_weight=lm_weight)
        for i, p in zip(where, preds):
            if p.in_lexicon and p.text:
                conf = float(np.mean(p.char_confidences)) if p.char_confidences else out[i].confidence
                out[i] = replace(out[i], text=p.text, confidence=conf, in_lexicon=True)  # type: ignore[type-var]
            else:  # the crop path's rule: the reading stands, flagged
                out[i] = replace(out[i], in_lexicon=False)  # type: ignore[type-var]
    # Words whose line could not be aligned (cannot happen for a decoded text; be safe) are flagged by membership.
    out = [w if w.in_lexicon is not None else replace(w, in_lexicon=w.text in lexicon) for w in out]  # type: ignore[type-var]
    new_lines = list(lines)
    for line_no, idx in by_line.items():
        new_lines[line_no] = replace(lines[line_no], text=" ".join(out[i].text for i in idx))  # type: ignore[type-var]
    return out, new_lines
