"""AttentionRecognizer (kind ``crnn_attention``): the CRNN encoder and an attention decoder behind the TextRecognizer
protocol, so `crnn ocr`, `crnn eval`, `crnn info` and the server read such a checkpoint like any other (docs/attention.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from crnn.models.attention import AttentionConfig, AttentionRecognizerNet, describe
from crnn.charset import Charset
from crnn.checkpoints.checkpoint import Checkpoint, input_preprocess
from crnn.decoding.ctc_decode import DECODERS, DEFAULT_DECODER
from crnn.decoding.lexicon import Lexicon
from crnn.errors import DecoderOptionError
from crnn.decoding.lm_decode import LM_WEIGHT
from crnn.models.crnn import fuse_for_inference
from crnn.reading.precision import PRECISIONS
from crnn.prediction import Prediction
from crnn.io.preprocess import PreprocessConfig, collate
from crnn.checkpoints.kind import ModelKind
from crnn.reading.text_recognizer import RecognizerBase, run_batches

# `--decoder lm`: beam search ranking each hypothesis by log P_decoder + LM_WEIGHT * log P_lm (characters and the end),
# the shipped character language model's shallow fusion. LM_WEIGHT is the CTC decoder's tuned weight (crnn.decoding.lm_decode),
# NOT tuned for this kind, so that `lm` means the same fusion strength.


class AttentionRecognizer(RecognizerBase):
    """Reads word images with the CRNN encoder and an attention decoder (greedy, beam, or beam with the language model).

    ``Prediction.confidence`` is the decoder's probability of the text it returns, the product of its step
    probabilities, end-of-sequence included: P(text | image) under the decoder's own factorisation, so it is
    comparable across this kind's decoders (the language model never enters it) but not equal to the CTC kind's,
    which sums over alignments. ``char_confidences`` are the step probabilities of the characters (EOS left out).
    A text cut at ``max_length`` characters ends with the probability of EOS after them (usually low).
    Lexicons are refused (DecoderOptionError): this kind has no lexicon decoding.
    """

    kind = "crnn_attention"
    model: AttentionRecognizerNet

    def __init__(
        self,
        weights: str | os.PathLike | Checkpoint | None = None,
        device: str | torch.device = "cpu",
        threads: int | None = None,
        precision: str = "auto",
    ) -> None:
        """Load ``weights`` (a crnn_attention checkpoint path or a loaded Checkpoint).

        ``precision``: ``fp32`` and ``auto`` run in fp32; ``mixed`` and ``bf16`` run the convolutions in bf16 and the
        recurrences and the decoder in fp32. Only fp32 is checked to give an image its result alone in any batch.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = "fp32" if precision in ("auto", "fp32") else "mixed"
        super().__init__(weights, device, threads, precision)
        # The encoder runs a fused copy (batch norm folded into the convs): same outputs, faster (crnn.models.crnn).
        self._encoder = fuse_for_inference(self.model.encoder)

    @classmethod
    def from_model(
        cls, model: AttentionRecognizerNet, charset: Charset, preprocess: PreprocessConfig | None = None,
        device: str | torch.device = "cpu", threads: int | None = None, precision: str = "fp32",
    ) -> AttentionRecognizer:
        """Wrap an in-memory model (e.g. during training) without going through a file."""
        return cls(Checkpoint(model, charset, preprocess or input_preprocess(model.config), {}, cls.kind), device, threads,
                   precision)

    @torch.inference_mode()
    def frames(self, arrays: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder frames (B, T, D) fp32 and valid frame counts (B,) of one batch of prepared images."""
        images, widths = collate(list(arrays), self.preprocess)
        lengths = self.model.frames_for_width(widths)
        images = images.to(self.device)
        if self.precision == "mixed":
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                features = self._encoder.features(images)
            features = features.float()
        else:
            features = self._encoder.features(images)
        return self._encoder.context(features, lengths.to(self.device)), lengths

    def recognize_prepared(
        self,
        arrays: Sequence[np.ndarray],
        batch_size: int = 64,
        decoder: str = DEFAULT_DECODER,
        beam_width: int = 10,
        lexicon: Lexicon | Iterable[str] | Sequence[Lexicon | None] | None = None,
        workers: int = 1,
        lm_weight: float | None = None,
    ) -> list[Prediction]:
        """Predictions for prepared images, in input order; ``decoder`` greedy, beam or lm (beam + language model).

        ``workers`` > 1 runs that many batches at once in threads; results do not depend on it, nor on the batch.
        """
        if decoder not in DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}; choose one of: {', '.join(DECODERS)}")
        if lexicon is not None and not (isinstance(lexicon, (list, tuple)) and all(x is None for x in lexicon)):
            raise DecoderOptionError("the attention decoder (model type crnn_attention) has no lexicon decoding; "
                                     "read without a lexicon")
        if lm_weight is not None and (decoder != "lm" or not lm_weight >= 0):
            raise DecoderOptionError("lm_weight needs decoder lm and a value >= 0")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        prior = self._lm_prior(LM_WEIGHT if lm_weight is None else lm_weight) if decoder == "lm" else None

        @torch.inference_mode()
        def run(idx: list[int]) -> list[Prediction]:
            frames, lengths = self.frames([arrays[i] for i in idx])
            net = self.model.decoder
            if decoder == "greedy":
                found = zip(*net.greedy(frames, lengths))
            else:
                found = (net.beam(frames[b : b + 1, : int(n)], int(n), beam_width, prior=prior)
                         for b, n in enumerate(lengths.tolist()))
            return [self._prediction(ids, logps) for ids, logps in found]

        return run_batches(run, list(self.batches(arrays, batch_size)), len(arrays), workers)

    def _prediction(self, ids: list[int], logps: list[float]) -> Prediction:
        """A Prediction from the ids before EOS and the step log-probabilities (EOS's last)."""
        confidence = float(np.exp(min(0.0, sum(logps))))
        return Prediction(self.charset.decode(ids), confidence, tuple(float(np.exp(lp)) for lp in logps[:-1]))

    def _lm_prior(self, weight: float) -> Any:
        """prior(prefix ids) -> weight * log P_lm(class | prefix) per class (EOS at 0): the shipped character LM."""
        from crnn.decoding.char_lm import load_lm
        from crnn.decoding.lm_decode import lm_symbols

        lm = load_lm()
        symbols = lm_symbols(self.charset, lm)
        symbols[0] = lm.eos  # the decoder's EOS is the language model's end of text
        keep = lm.order - 1

        def prior(prefix: tuple[int, ...]) -> list[float]:
            history = (lm.bos, *(symbols[c] for c in prefix))[-keep:] if keep else ()
            logs = lm.log_distribution(history)
            return [weight * logs[s] for s in symbols]

        return prior


def _describe_lines(d: dict[str, Any]) -> list[str]:
    a = d["architecture"]
    e = a["encoder"]
    rnn = "none" if e["cell"] == "none" else (
        f"{e['num_layers']}-layer {'bi' if e['bidirectional'] else 'uni'}directional {e['cell'].upper()}, hidden {e['hidden_size']}")
    lines = [f"charset:       {len(d['charset'])} characters + end-of-sequence"] if "charset" in d else []
    return lines + [
        "model type:    crnn_attention (CRNN encoder + attention decoder)",
        f"backbone:      {e['backbone']}",
        f"recurrent:     {rnn}",
        f"decoder:       {a['cell'].upper()} cell, hidden {a['hidden_size']}, additive attention {a['attention_size']}, "
        f"embedding {a['embedding_size']}, at most {a['max_length']} characters",
        f"classes:       {a['num_classes']}",
        f"parameters:    {d['parameters']:,} ({d['parameters'] / 1e6:.2f} M)",
        f"multiply-adds: {d['encoder_multiply_adds']:,} encoder for a {d['input']} input, {d['frames']} frames, "
        f"+ {d['decoder_multiply_adds_per_step']:,} per decoded character",
    ]


def _summary(c: AttentionConfig) -> str:
    e = c.encoder
    rnn = f"{'bi' if e.bidirectional else 'uni'}directional {e.cell} x{e.num_layers}, {e.hidden_size} units"
    return (f"CRNN encoder, {e.backbone} backbone, {rnn if e.cell != 'none' else 'no recurrent head'} + attention "
            f"decoder ({c.cell}, {c.hidden_size} units)")


# The kind this module adds (registered by crnn/kinds/registry.py).
KIND = ModelKind(
    name="crnn_attention", title="a CRNN with an attention decoder", model_class=AttentionRecognizerNet,
    config_class=AttentionConfig, recognizer_class=AttentionRecognizer,
    describe=describe, describe_lines=_describe_lines, summary=_summary, export_onnx=None,
)
AttentionRecognizer.model_kind = KIND
