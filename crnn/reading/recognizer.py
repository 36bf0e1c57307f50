"""Recognizer: the high-level API that reads text from word images with a trained CRNN."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from crnn.charset import Charset
from crnn.checkpoints.checkpoint import Checkpoint, input_preprocess
from crnn.models.crnn import CRNN, ModelConfig, describe, fuse_for_inference
from crnn.checkpoints.onnx_export import export_crnn
from crnn.reading.precision import resolve_precision
from crnn.io.preprocess import PreprocessConfig, collate
from crnn.checkpoints.kind import ModelKind
from crnn.reading.text_recognizer import CTCRecognizer, set_threads

__all__ = ["Recognizer", "set_threads"]


class Recognizer(CTCRecognizer):
    """Reads the text of word images: preprocessing, batching by width bucket, CRNN, CTC decoding."""

    kind = "crnn"
    model: CRNN

    def __init__(
        self,
        weights: str | os.PathLike | Checkpoint | None = None,
        device: str | torch.device = "cpu",
        threads: int | None = None,
        precision: str = "auto",
    ) -> None:
        """Load ``weights`` (a checkpoint path, a loaded Checkpoint, or None for the shipped model).

        ``precision``: ``fp32``; ``mixed`` (convolutions in bf16, the recurrence in fp32: ~1.25x faster
        on CPUs with AVX-512 BF16); ``bf16`` (the whole network in bfloat16, as autocast would run it: ~2x
        faster there, the same benchmark accuracy); ``auto`` (default): ``bf16`` on a CPU with native bf16,
        else ``fp32``.
        In every precision an image's result does not depend on the batch it is in (tested).
        """
        self.precision = resolve_precision(precision, torch.device(device))
        super().__init__(weights, device, threads, precision)
        # Inference runs a copy with batch norm folded into the convs and cheaper max pools, in channels-last
        # layout: same outputs, and about 1.5x faster on CPU (oneDNN's NHWC kernels; benchmarks/bench_ocr.py).
        self._net = fuse_for_inference(self.model).to(memory_format=torch.channels_last)
        if self.precision == "bf16":
            # Weights cast once here rather than by autocast at every call (~4% of a batch's time); the
            # results are bit-identical to autocast's (tested).
            self._net = self._net.to(torch.bfloat16)

    @classmethod
    def from_model(
        cls,
        model: CRNN,
        charset: Charset,
        preprocess: PreprocessConfig | None = None,
        device: str | torch.device = "cpu",
        threads: int | None = None,
        precision: str = "fp32",
    ) -> Recognizer:
        """Wrap an in-memory model (e.g. during training) without going through a file."""
        return cls(Checkpoint(model, charset, preprocess or input_preprocess(model.config)), device, threads, precision)

    @torch.inference_mode()
    def log_probs(self, arrays: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame log-probabilities (B, T, C) on the CPU and valid frame counts (B,) for one batch."""
        images, widths = collate(list(arrays), self.preprocess)
        lengths = CRNN.frames_for_width(widths)
        images = images.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        if self.precision == "bf16":
            # oneDNN runs a bf16 matrix product of one row (a batch of one) with another kernel than
            # several rows, and rounds differently; a lone image is therefore run as a pair (itself twice)
            # so that its result is the one it gets in any batch.
            lone = images.shape[0] == 1
            if lone:
                images, lengths = images.expand(2, -1, -1, -1), lengths.expand(2)
            out = self._net(images.to(torch.bfloat16), lengths.to(self.device))
            if lone:
                out, lengths = out[:1], lengths[:1]
        elif self.precision == "mixed":
            # Convolutions in bf16, the recurrence in fp32: closer to fp32 results than bf16, for
            # CPUs where the bf16 LSTM kernels are slow or a caller wants the fp32 recurrence.
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                features = self._net.features(images)
            out = self._net.sequence_head(features.float(), lengths.to(self.device))
        else:
            out = self._net(images, lengths.to(self.device))
        return out.cpu(), lengths

    def batch_log_probs(self, arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`log_probs` as numpy (B, T, C) float32 and (B,), what the shared decoder takes: one conversion a batch."""
        lp, lengths = self.log_probs(arrays)
        return lp.numpy(), lengths.numpy()


def _describe_lines(d: dict[str, Any]) -> list[str]:
    a = d["architecture"]
    rnn = "none" if a["cell"] == "none" else (
        f"{a['num_layers']}-layer {'bi' if a['bidirectional'] else 'uni'}directional {a['cell'].upper()}, hidden {a['hidden_size']}")
    lines = [f"charset:       {len(d['charset'])} characters + blank"] if "charset" in d else []
    return lines + [
        f"backbone:      {a['backbone']}, {a.get('height', 32)} px input",
        *([f"mixing:        {a['mixer_layers']} self-attention blocks, {a['mixer_heads']} heads"] if a.get("mixer_layers") else []),
        f"recurrent:     {rnn}",
        f"classes:       {a['num_classes']}",
        f"parameters:    {d['parameters']:,} ({d['parameters'] / 1e6:.2f} M)",
        f"multiply-adds: {d['multiply_adds']:,} ({d['multiply_adds'] / 1e9:.3f} G) for a {d['input']} input, {d['frames']} frames",
    ]


def _summary(c: ModelConfig) -> str:
    rnn = f"{'bi' if c.bidirectional else 'uni'}directional {c.cell} x{c.num_layers}, {c.hidden_size} units"
    mix = f", {c.mixer_layers} mixing blocks" if c.mixer_layers else ""
    px = f", {c.height} px" if c.height != 32 else ""
    return f"CRNN, {c.backbone} backbone{px}{mix}, {rnn if c.cell != 'none' else 'no recurrent head'} + CTC"


# The kind this module adds (registered by crnn/kinds/registry.py).
KIND = ModelKind(
    name="crnn", title="a CRNN", model_class=CRNN, config_class=ModelConfig, recognizer_class=Recognizer,
    describe=describe, describe_lines=_describe_lines, summary=_summary, export_onnx=export_crnn,
)
Recognizer.model_kind = KIND
