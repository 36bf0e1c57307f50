"""int8 ONNX models (onnxruntime.quantization): convolutions quantised statically, calibrated on given images
(synthetic ones, rendered by `crnn synth`: never a benchmark), then the LSTM / matrix products dynamically.

Only `crnn export --int8` imports this module (it needs onnx and onnxruntime, the onnx extra).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from crnn.checkpoints.onnx_header import read_onnx_metadata
from crnn.output_files import check_output_file
from crnn.io.preprocess import PreprocessConfig, pad_batch, width_batches

# Calibration batches: images of one width bucket, as the recognizer batches them.
CALIBRATION_BATCH = 16


class _Calibration:
    """onnxruntime's CalibrationDataReader over prepared images, a width bucket per batch."""

    def __init__(self, arrays: Sequence[np.ndarray], preprocess: PreprocessConfig, input_name: str) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = iter([
            {input_name: pad_batch([arrays[i] for i in idx], preprocess)[0]}
            for idx in width_batches([a.shape[1] for a in arrays], CALIBRATION_BATCH, preprocess)
        ])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize_int8(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    calibration: Sequence[np.ndarray],
    static_ops: Sequence[str] = ("Conv",),
    dynamic_ops: Sequence[str] = ("LSTM", "MatMul", "Gemm"),
) -> Path:
    """Write ``source`` (an fp32 .onnx from `crnn export`) as int8 to ``output``: static QDQ per-channel int8 for
    the convolutions but the first and the last (activation ranges from ``calibration``, prepared images), dynamic
    int8 for LSTM / MatMul / Gemm. The header is carried over with precision "int8". ``output`` is checked before
    any work and replaced atomically (crnn.output_files); ``source`` may be ``output``.

    Why the first and last convolutions stay fp32: quantising every one cost IIIT5K 1.9 points (82.10% -> 80.17%,
    convolutions only); the first sees the raw pixels through one channel (a small share of the work) and the last
    feeds the recurrent layers, and with both in fp32 the int8 model reads as well as fp32 (docs/onnx.md).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from crnn.checkpoints.header import read_header
    from crnn.checkpoints.onnx_export import INPUT_NAME, save_onnx

    check_output_file(output)
    if static_ops and not calibration:
        raise ValueError("int8 quantisation needs calibration images")
    header = read_onnx_metadata(source)
    preprocess = PreprocessConfig.from_dict(read_header(source)["preprocess"])
    with tempfile.TemporaryDirectory() as tmp:
        prepared, convs = Path(tmp) / "prepared.onnx", Path(tmp) / "convs.onnx"
        final = Path(tmp) / "int8.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        if static_ops:
            nodes = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type in static_ops]
            quantize_static(
                str(prepared), str(convs), _Calibration(calibration, preprocess, INPUT_NAME),
                quant_format=QuantFormat.QDQ, op_types_to_quantize=list(static_ops), per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=[nodes[0], nodes[-1]] if len(nodes) > 2 else [],
            )
        else:
            convs = prepared
        if dynamic_ops:
            quantize_dynamic(str(convs), str(final), op_types_to_quantize=list(dynamic_ops),
                             weight_type=QuantType.QInt8, per_channel=False)
        else:
            final = convs
        proto = onnx.load(str(final))
    return save_onnx(proto, output, {**header, "precision": "int8"})
