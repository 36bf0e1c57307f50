"""BaselineRecognizer: the Recognizer interface over segment -> crop -> SegCharModel -> argmax per segment."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from crnn.models.baseline.model import PAD, BaselineConfig, SegCharModel, collate_crops, crops_from_boxes, describe
from crnn.models.baseline.segment import SegmentConfig, segment, text_is_dark
from crnn.charset import Charset
from crnn.checkpoints.checkpoint import Checkpoint
from crnn.decoding.lexicon import Lexicon, as_lexicons
from crnn.reading.precision import PRECISIONS, native_bf16
from crnn.prediction import Prediction
from crnn.io.preprocess import PreprocessConfig
from crnn.checkpoints.kind import ModelKind
from crnn.reading.text_recognizer import RecognizerBase


def to_uint8(array: np.ndarray) -> np.ndarray:
    """The uint8 gray image (H, W) of a prepared array (H, W) float32 in [-1, 1]."""
    return np.clip(np.rint((array + 1.0) * 127.5), 0, 255).astype(np.uint8)


def word_crops(array: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Crops (N, size, size) of a prepared array (H, W) in [-1, 1], always dark text on light (polarity flipped)."""
    # The segmenter already decides the polarity; flipping light text here means the classifier never has to
    # learn both versions of every letter.
    img = array if text_is_dark(to_uint8(array)) else -array
    return crops_from_boxes(img, boxes, size)


class BaselineRecognizer(RecognizerBase):
    """Reads word images with the segmented-character baseline; a TextRecognizer like crnn.Recognizer.

    ``Prediction.confidence`` is the product over segments of the highest softmax probability of each
    segment (the model treats segments as given, so this is P(text | image, segmentation)); it is 0.0 when
    the segmenter finds no character. ``char_confidences`` are those per-segment probabilities.
    Spaces are never predicted: the segmenter only finds characters.
    """

    kind = "baseline"
    model: SegCharModel

    def __init__(
        self,
        weights: str | os.PathLike | Checkpoint | None,
        device: str | torch.device = "cpu",
        threads: int | None = None,
        precision: str = "fp32",
    ) -> None:
        """Load ``weights`` (a baseline checkpoint path or a loaded Checkpoint); bf16 autocasts the network, other precisions run fp32."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "bf16" and torch.device(device).type == "cpu" and not native_bf16(torch.device(device)):
            # oneDNN has no bf16 LSTM primitive for the baseline's packed sequences on such CPUs (it fails
            # at the first batch); the CRNN's bf16 network does not take that path.
            raise ValueError("precision bf16 for the baseline needs a CPU with native bf16 (AVX-512 BF16 or AMX); "
                             "use fp32 (or auto)")
        self.precision = precision
        super().__init__(weights, device, threads, precision)
        self.segmenter = SegmentConfig.from_dict(self.metadata.get("segmenter", {}))

    @classmethod
    def from_model(
        cls, model: SegCharModel, charset: Charset, preprocess: PreprocessConfig | None = None,
        segmenter: SegmentConfig | None = None, device: str | torch.device = "cpu",
    ) -> BaselineRecognizer:
        """Wrap an in-memory model (e.g. during training) without going through a file."""
        meta: dict[str, Any] = {"segmenter": (segmenter or SegmentConfig()).to_dict()}
        return cls(Checkpoint(model, charset, preprocess or PreprocessConfig(), meta, "baseline"), device)

    def segment(self, array: np.ndarray) -> np.ndarray:
        """Character boxes (N, 4) of a prepared image (H, W'), left to right."""
        return segment(to_uint8(array), self.segmenter)

    @torch.inference_mode()
    def recognize_prepared(
        self,
        arrays: Sequence[np.ndarray],
        batch_size: int = 64,
        decoder: str = "greedy",
        beam_width: int = 10,
        lexicon: Lexicon | Iterable[str] | Sequence[Lexicon | None] | None = None,
        workers: int = 1,
        lm_weight: float | None = None,
    ) -> list[Prediction]:
        """Predictions for prepared images, in input order (``lexicon``: one for all, or one per image).

        ``decoder``, ``beam_width``, ``lm_weight`` and ``workers`` are accepted for interface parity: per-segment argmax is already the
        most likely text given the segmentation. With a lexicon, the word of the segment count with the
        highest summed log-probability is chosen, case-insensitively (each word's case variants compete, see
        Lexicon.variants); when none has that length the plain text stands, flagged ``in_lexicon=False``.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        lexicons = as_lexicons(lexicon, self.charset, len(arrays))
        size = self.model.config.crop_size
        crops = [word_crops(a, self.segment(a), size) for a in arrays]
        results: list[Prediction] = []
        for start in range(0, len(crops), batch_size):
            chunk = crops[start : start + batch_size]
            # Unlike Recognizer, no lone word is run as a pair: here a word alone (one-letter words
            # included) gets exactly its batched result in bf16 too (tested in tests/test_baseline.py).
            batch, lengths = collate_crops(chunk, size)
            batch = batch.to(self.device)
            if self.precision == "bf16":
                with torch.autocast(self.device.type, dtype=torch.bfloat16):
                    logits = self.model(batch, lengths)
            else:
                logits = self.model(batch, lengths)
            logits = logits.float().cpu()
            logits[..., PAD] = float("-inf")  # the padding class is never a character
            log_probs = logits.log_softmax(-1)
            for j, (lp, n) in enumerate(zip(log_probs, lengths.tolist())):
                results.append(self._decode(lp[:n], lexicons[start + j]))
        return results

    def _decode(self, log_probs: torch.Tensor, lexicon: Lexicon | None) -> Prediction:
        """One word's prediction from its segments' log-probabilities (N, C)."""
        if len(log_probs) == 0:
            return Prediction("", 0.0, (), None if lexicon is None else False)
        best, ids = log_probs.max(-1)
        text = self.charset.decode(ids.tolist())
        in_lexicon: bool | None = None
        if lexicon is not None:
            n = len(log_probs)
            # Every spelling of every word with one character per segment, scored at once: (K, n) ids.
            spellings = [v for folded in lexicon.folded if len(folded) == n for v in lexicon.variants(folded, text)]
            in_lexicon = bool(spellings)
            if spellings:
                targets = torch.tensor([self.charset.encode(w) for w in spellings])
                scores = log_probs[torch.arange(n), targets].sum(-1)
                k = int(scores.argmax())
                best = log_probs[torch.arange(n), targets[k]]
                text = spellings[k]
        chars = tuple(float(p) for p in best.exp())
        return Prediction(text, float(best.sum().exp()), chars, in_lexicon)


def _describe_lines(d: dict[str, Any]) -> list[str]:
    a = d["architecture"]
    lines = ["model type:    baseline (segmenter + per-character CNN + RNN + softmax)"]
    if "charset" in d:
        lines.append(f"charset:       {len(d['charset'])} characters")
    return lines + [
        f"crop CNN:      channels {a['channels']}, crops {a['crop_size']}x{a['crop_size']}, embedding {a['embed_dim']}",
        f"recurrent:     {a['num_layers']}-layer {'bi' if a['bidirectional'] else 'uni'}directional "
        f"{a['cell'].upper()}, hidden {a['hidden_size']}",
        f"parameters:    {d['parameters']:,} ({d['parameters'] / 1e6:.2f} M)",
    ]


def _summary(c: BaselineConfig) -> str:
    rnn = f"{'bi' if c.bidirectional else 'uni'}directional {c.cell} x{c.num_layers}, {c.hidden_size} units"
    return f"segmenter + crop CNN {tuple(c.channels)} + {rnn} + softmax per segment (cross-entropy)"


# The kind this module adds (registered by crnn/kinds/registry.py).
KIND = ModelKind(
    name="baseline", title="the segmented-character baseline", model_class=SegCharModel,
    config_class=BaselineConfig, recognizer_class=BaselineRecognizer,
    describe=describe, describe_lines=_describe_lines, summary=_summary,
)
BaselineRecognizer.model_kind = KIND
