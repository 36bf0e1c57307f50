"""`crnn info`: describe a model of any registered kind (architecture, charset, parameters, multiply-adds)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from torch import nn

from crnn.charset import Charset
from crnn.checkpoints.checkpoint import default_weights_path
from crnn.kinds.loading import load_checkpoint
from crnn.checkpoints.header import read_header
from crnn.errors import CRNNError
from crnn.models.crnn import BACKBONES, CELLS, build_model
from crnn.checkpoints.onnx_header import is_onnx_path
from crnn.checkpoints.shipped import check_model_choice, model_help, shipped_model
from crnn.reading.backend import shipped_file
from crnn.kinds.registry import get_kind, kind_of


def main(argv: Sequence[str] | None = None) -> int:
    """Print a description of the shipped weights, a checkpoint or an untrained architecture."""
    p = argparse.ArgumentParser(prog="crnn info", description=__doc__)
    p.add_argument("--weights", help="checkpoint or exported .onnx file (default: the shipped weights)")
    p.add_argument("--model", metavar="NAME", help=model_help() + "; its .safetensors file, or its .onnx file when it "
                   "has no other")
    p.add_argument("--backbone", choices=BACKBONES, help="describe an untrained CRNN architecture instead")
    p.add_argument("--cell", choices=CELLS, default="lstm")
    p.add_argument("--hidden-size", type=int, default=256, help="recurrent units (with --backbone)")
    p.add_argument("--mixer-layers", type=int, default=0, help="global mixing blocks (with --backbone)")
    p.add_argument("--height", type=int, choices=(32, 48), default=32, help="input height (with --backbone)")
    p.add_argument("--width", type=int, default=128, help="input width for multiply-adds (default 128)")
    p.add_argument("--json", action="store_true", help="print JSON")
    args = p.parse_args(argv)
    model: nn.Module
    try:
        if args.model is not None:
            check_model_choice(args.model, args.weights)
            has_torch = shipped_model(args.model).torch is not None
            args.weights = str(shipped_file(args.model, "torch" if has_torch else "onnx"))
        if args.backbone:
            model, info = build_model(args.backbone, args.cell, hidden_size=args.hidden_size,
                                      mixer_layers=args.mixer_layers, height=args.height), {}
            kind = kind_of(model)
        elif args.weights and is_onnx_path(args.weights):
            from crnn.reading.onnx_recognizer import OnnxRecognizer

            # Described only if it runs: the graph loads in ONNX Runtime and outputs the classes of the charset
            # in its header (`crnn ocr` and `crnn serve` refuse it otherwise, so info must not describe it).
            OnnxRecognizer(args.weights, threads=1)
            # An exported model: its header has the architecture; parameters and multiply-adds are the same
            # for the network rebuilt (untrained) from it.
            header = read_header(args.weights)
            kind = get_kind(header["model_type"])
            model = kind.model_class(kind.config_class.from_dict(header["model_config"]))
            info = {"weights": str(args.weights), "model_type": header["model_type"],
                    "charset": Charset.from_dict(header["charset"]).chars,
                    "metadata": {k: v for k, v in header["metadata"].items() if k != "config"}}
        else:
            weights = args.weights or default_weights_path()
            ckpt = load_checkpoint(weights)
            model, kind = ckpt.model, get_kind(ckpt.model_type)
            info = {"weights": str(weights), "model_type": ckpt.model_type, "charset": ckpt.charset.chars,
                    "metadata": {k: v for k, v in ckpt.metadata.items() if k != "config"}}
    except CRNNError as e:
        print(f"crnn info: {e}", file=sys.stderr)
        return 2
    d = {**info, **kind.describe(model, args.width)}
    if args.json:
        print(json.dumps(d, indent=2, default=str))
        return 0
    if "weights" in d:
        print(f"weights:       {d['weights']}")
    for line in kind.describe_lines(d):
        print(line)
    return 0
