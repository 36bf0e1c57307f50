"""`crnn export`: write a checkpoint in another format (ONNX), for inference without torch (docs/onnx.md)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from crnn.errors import CRNNError, ExportError

FORMATS = ("onnx",)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `crnn export`."""
    p = argparse.ArgumentParser(prog="crnn export", description="Export a checkpoint (e.g. to ONNX, for `--backend onnx`).")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="output format (default onnx)")
    p.add_argument("--output", "-o", required=True, help="file to write, e.g. model.onnx")
    p.add_argument("--weights", help="checkpoint (.safetensors) to export (default: the shipped model)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.add_argument("--int8", action="store_true",
                   help="also quantise to int8: convolutions static (calibrated on --calibration), LSTM/linear dynamic")
    p.add_argument("--calibration", metavar="DIR",
                   help="with --int8: images to calibrate on, e.g. rendered by `crnn synth --format folder` (never a "
                   "benchmark)")
    p.add_argument("--calibration-count", type=int, default=400, help="calibration images to use (default 400)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run `crnn export`; exit 0 on success, 2 when the checkpoint cannot be read or exported."""
    args = build_parser().parse_args(argv)
    if args.int8 and not args.calibration:
        print("crnn export: --int8 needs --calibration DIR (synthetic images, e.g. from crnn synth)", file=sys.stderr)
        return 2
    try:
        from crnn.onnx_export import OPSET, export_onnx
    except ModuleNotFoundError as e:
        print(f"crnn export: missing dependency {e.name!r}; install the onnx extra: pip install 'crnn-ocr[onnx]'",
              file=sys.stderr)
        return 2
    try:
        import onnx  # noqa: F401  (checked before the model loads, for a one-line error)
    except ModuleNotFoundError:
        print("crnn export: missing dependency 'onnx'; install the onnx extra: pip install 'crnn-ocr[onnx]'", file=sys.stderr)
        return 2
    try:
        path = export_onnx(args.weights, args.output, args.opset or OPSET)
        if args.int8:
            path = _quantize(path, args.calibration, args.calibration_count)
    except (CRNNError, OSError) as e:
        print(f"crnn export: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _quantize(path: str | os.PathLike[str], calibration: str, count: int) -> os.PathLike[str]:
    """The fp32 export at ``path`` rewritten as int8, calibrated on the first ``count`` images under ``calibration``."""
    from itertools import islice

    from crnn.checkpoint_header import read_header
    from crnn.ocr import expand_inputs
    from crnn.onnx_quantize import quantize_int8
    from crnn.preprocess import PreprocessConfig, prepare

    preprocess = PreprocessConfig.from_dict(read_header(path)["preprocess"])
    found = [p for p, error in islice(expand_inputs([calibration]), count) if error is None]
    if not found:
        raise ExportError(f"--calibration {calibration}: no images found")
    return quantize_int8(path, path, [prepare(p, preprocess) for p in found])
