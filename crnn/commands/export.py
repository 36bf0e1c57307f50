"""`crnn export`: write a checkpoint in another format (ONNX), for inference without torch (docs/onnx.md)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from crnn.checkpoints.header import default_weights_path
from crnn.checkpoints.shipped import check_model_choice, model_names
from crnn.errors import CRNNError, ExportError, InvalidImageError, OutputPathError
from crnn.checkpoints.onnx_header import ONNX_SUFFIX, is_onnx_path
from crnn.output_files import check_output_file

FORMATS = ("onnx",)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `crnn export`."""
    p = argparse.ArgumentParser(prog="crnn export", description="Export a checkpoint (e.g. to ONNX, for `--backend onnx`).")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="output format (default onnx)")
    p.add_argument("--output", "-o", required=True,
                   help="file to write, e.g. model.onnx (its folder must exist; a file there is replaced only when the "
                   "export succeeds)")
    p.add_argument("--weights", help="checkpoint (.safetensors) to export (default: the shipped model)")
    p.add_argument("--model", metavar="NAME", help="a shipped model by name, instead of --weights: its .safetensors "
                   f"file (e.g. real, to write weights/crnn-real.onnx; names: {', '.join(model_names())})")
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
    if args.calibration and not args.int8:
        print("crnn export: --calibration is for --int8 only (an fp32 export needs no images)", file=sys.stderr)
        return 2
    if args.calibration_count < 1:
        print(f"crnn export: --calibration-count must be >= 1, got {args.calibration_count}", file=sys.stderr)
        return 2
    try:
        from crnn.checkpoints.onnx_export import OPSET
        from crnn.kinds.export import export_onnx
    except ModuleNotFoundError as e:
        print(f"crnn export: missing dependency {e.name!r}; install the onnx extra: pip install 'crnn-ocr[onnx]'",
              file=sys.stderr)
        return 2
    try:
        import onnx  # noqa: F401  (checked before the model loads, for a one-line error)
    except ModuleNotFoundError:
        print("crnn export: missing dependency 'onnx'; install the onnx extra: pip install 'crnn-ocr[onnx]'", file=sys.stderr)
        return 2
    if args.int8 and importlib.util.find_spec("onnxruntime") is None:  # quantisation runs on it, after the export
        print("crnn export: --int8 needs 'onnxruntime'; install the onnx extra: pip install 'crnn-ocr[onnx]'",
              file=sys.stderr)
        return 2
    try:
        if args.model is not None:  # a shipped model's checkpoint, by name
            from crnn.reading.backend import shipped_file

            check_model_choice(args.model, args.weights)
            args.weights = str(shipped_file(args.model, "torch"))
        # Every path is checked, and the calibration images read, before the model loads: a mistake costs no
        # export, and a failed export leaves the file at --output as it was (crnn.output_files).
        output = _check_output(args.output, args.weights)
        images = _calibration(args.weights, args.calibration, args.calibration_count) if args.int8 else None
        if images is None:
            path = export_onnx(args.weights, output, args.opset or OPSET)
        else:
            path = _export_int8(args.weights, output, args.opset or OPSET, images)
    except (CRNNError, OSError) as e:
        print(f"crnn export: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _check_output(output: str, weights: str | None) -> Path:
    """``--output`` as a Path when an ONNX model may be written there; OutputPathError otherwise."""
    path = check_output_file(output, option="--output")
    if not is_onnx_path(path):
        # `crnn ocr`, `serve` and `info` tell an ONNX model by its suffix: a model named otherwise is unusable.
        raise OutputPathError(f"--output {output}: an ONNX model's name must end in {ONNX_SUFFIX}")
    if weights is not None and path.exists() and os.path.exists(weights) and os.path.samefile(path, weights):
        raise OutputPathError(f"--output {output}: is the --weights file; write the export beside it")
    return path


def _calibration(weights: str | None, calibration: str, count: int) -> list[np.ndarray]:
    """The first ``count`` images under ``calibration``, prepared as the model to export reads them."""
    from itertools import islice

    from crnn.checkpoints.header import read_header
    from crnn.io.inputs import expand_inputs
    from crnn.io.preprocess import PreprocessConfig, prepare

    if not os.path.isdir(calibration):
        reason = "is a file, not a folder" if os.path.exists(calibration) else "no such folder"
        raise ExportError(f"--calibration {calibration}: {reason}")
    preprocess = PreprocessConfig.from_dict(read_header(weights or default_weights_path())["preprocess"])
    images: list[np.ndarray] = []
    skipped: list[str] = []
    for path, error in islice(expand_inputs([calibration]), count):
        if error is not None:  # a folder it cannot read
            skipped.append(f"{path}: {error}")
            continue
        try:
            images.append(prepare(path, preprocess))
        except InvalidImageError as e:  # its message names the file
            skipped.append(str(e))
    if skipped:
        print(f"crnn export: skipped {len(skipped)} of the calibration images (first: {skipped[0]})", file=sys.stderr)
    if not images:
        raise ExportError(f"--calibration {calibration}: no readable images found")
    return images


def _export_int8(weights: str | None, output: Path, opset: int, images: list[np.ndarray]) -> Path:
    """Export ``weights`` in fp32 to a private temporary folder, then write it quantised to int8 at ``output``."""
    import tempfile

    from crnn.kinds.export import export_onnx
    from crnn.checkpoints.onnx_quantize import quantize_int8

    with tempfile.TemporaryDirectory(prefix="crnn-export-") as tmp:
        fp32 = export_onnx(weights, Path(tmp) / "fp32.onnx", opset)
        return quantize_int8(fp32, output, images)
