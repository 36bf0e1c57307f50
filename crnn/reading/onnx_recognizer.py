"""OnnxRecognizer: reads word images with an exported .onnx model on ONNX Runtime, without torch.

Any kind exported by `crnn export` (crnn/kinds/export.py) runs here: the graph maps images (B, 1, H, W) to
per-frame log-probabilities, and the header in the file's metadata gives the charset and preprocessing.
Batching, decoding and the API are the torch Recognizer's (crnn.reading.text_recognizer.CTCRecognizer), so both
backends read the same texts; only the network's arithmetic differs (see docs/onnx.md for the tolerance).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crnn.charset import Charset
from crnn.checkpoints.header import read_header, shipped_onnx_path
from crnn.errors import BackendError, CheckpointError
from crnn.checkpoints.onnx_header import is_onnx_path, read_onnx_metadata
from crnn.io.preprocess import PreprocessConfig, pad_batch
from crnn.reading.text_recognizer import CTCRecognizer

__all__ = ["OnnxRecognizer", "DISABLED_OPTIMIZERS"]

# ONNX Runtime graph rewrites left out. QDQPropagationTransformer moves each QuantizeLinear of an int8 (QDQ) file up
# past the MaxPool before it; the first block's pool then runs on uint8 in NCHW, a naive kernel (14% of the int8
# network's time on IIIT5K), instead of fp32 in ORT's blocked NCHWc layout beside the convolution. Quantizing is
# monotonic, so max-then-quantize equals quantize-then-max: the outputs are bit for bit the same (every shipped
# .onnx, IIIT5K and SVT; tests/test_onnx_backend.py), and fp32 files have no QDQ nodes for it to touch.
DISABLED_OPTIMIZERS = ["QDQPropagationTransformer"]


def _one_line(e: Exception) -> str:
    """An ONNX Runtime error on one line (its messages span several), for the one-line refusals."""
    return " ".join(f"{type(e).__name__}: {e}".split())


class OnnxRecognizer(CTCRecognizer):
    """A TextRecognizer on ONNX Runtime (CPU): the same preprocessing, batching and decoding as the torch backend."""

    kind = "crnn"  # replaced per instance by the file's model type

    def __init__(
        self,
        weights: str | os.PathLike[str] | None = None,
        device: str = "cpu",
        threads: int | None = None,
        precision: str = "auto",
    ) -> None:
        """Load an .onnx file written by `crnn export` (None: the shipped weights/crnn.onnx).

        ``threads``: ONNX Runtime's intra-op threads (None: its default, one per core). ``precision``: ``auto`` or
        ``fp32``; the file decides (an int8 file runs int8).
        """
        try:
            import onnxruntime as ort
        except ModuleNotFoundError:
            raise BackendError("the onnx backend needs onnxruntime; install the extra: pip install 'crnn-ocr[onnx]'") from None
        if str(device) != "cpu":
            raise BackendError(f"the onnx backend runs on the CPU here, not {device!r} (use --backend torch for a GPU)")
        if precision not in ("auto", "fp32"):
            raise BackendError(f"the onnx backend runs the file's own precision; {precision!r} is torch only")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        path = Path(weights) if weights is not None else shipped_onnx_path()
        if not is_onnx_path(path):
            raise BackendError(f"{path} is not an .onnx file; export it first with `crnn export`")
        header = read_header(path)
        props = read_onnx_metadata(path)
        self.kind = header["model_type"]  # type: ignore[misc]
        self.charset = Charset.from_dict(header["charset"])
        self.preprocess = PreprocessConfig.from_dict(header["preprocess"])
        self.metadata = header["metadata"]
        self.precision = props.get("precision", "fp32")  # type: ignore[misc]
        self.device = "cpu"
        self.path = path
        self._describe = props.get("describe")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if threads is not None:
            options.intra_op_num_threads = threads
        if threads == 1:
            # Several batches run at once on single-threaded runs (crnn ocr's workers): no pool to spin.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        num_classes = int(header["model_config"].get("num_classes", self.charset.num_classes))
        if num_classes != self.charset.num_classes:
            raise CheckpointError(f"{path}: model has {num_classes} classes, charset needs {self.charset.num_classes}")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                                disabled_optimizers=DISABLED_OPTIMIZERS)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise CheckpointError(f"{path}: ONNX Runtime cannot load it ({_one_line(e)})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise CheckpointError(f"{path}: its graph takes {len(inputs)} inputs, not one (images); "
                                  "re-export it with `crnn export`")
        self._input = inputs[0].name
        self._check_runs()

    def _check_runs(self) -> None:
        """Run one blank image through the graph; CheckpointError unless it gives (1, T, classes of the charset).

        A graph that loads can still not fit its header (another charset's classifier, another input height):
        found here, at load, it is one line from `crnn info`, `crnn ocr` and `crnn serve` (which then never reports
        ready), not an error on every image.
        """
        blank = np.zeros((self.preprocess.height, self.preprocess.min_width), np.float32)
        images, _ = pad_batch([blank], self.preprocess)
        try:
            outputs = self.session.run(None, {self._input: images})
        except Exception as e:  # onnxruntime's own error types (wrong input rank or height, a failing kernel)
            raise CheckpointError(f"{self.path}: ONNX Runtime cannot run it ({_one_line(e)})") from None
        if len(outputs) != 1:
            raise CheckpointError(f"{self.path}: its graph gives {len(outputs)} outputs, not one (log_probs); "
                                  "re-export it with `crnn export`")
        shape = tuple(outputs[0].shape)
        expected = self.charset.num_classes
        if len(shape) != 3 or shape[0] != 1 or shape[1] < 1 or shape[2] != expected:
            raise CheckpointError(
                f"{self.path}: its graph outputs shape {shape} for one image, not (1, frames, {expected}) for the "
                f"{expected} classes of the charset in its header; re-export it with `crnn export`")

    @property
    def model(self) -> Any:
        """The ONNX Runtime session (this backend has no torch module)."""
        return self.session

    def batch_log_probs(self, arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame log-probabilities (B, T, C) float32 and valid frame counts (B,) of one batch."""
        images, widths = pad_batch(list(arrays), self.preprocess)
        (log_probs,) = self.session.run(None, {self._input: images})
        # Frames per pixel column from the graph itself (the CRNN's stride 4): a kind need not declare it.
        stride = images.shape[3] // max(1, log_probs.shape[1])
        return log_probs, -(-widths // stride)

    def describe(self, width: int = 128) -> dict[str, Any]:
        """Architecture and parameters as `crnn export` described the model (for a 32 x 128 input)."""
        import json

        info = json.loads(self._describe) if self._describe else {"architecture": {}, "parameters": 0}
        return {**info, "backend": "onnx", "weights": self.path.name, "precision": self.precision}
