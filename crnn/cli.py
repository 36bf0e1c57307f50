"""The `crnn` command: a dispatcher that imports each subcommand's code only when it runs."""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Sequence

# subcommand -> (module, one-line help). Modules outside crnn/ are imported lazily so that
# `crnn ocr` starts fast and needs no training or server dependencies.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "ocr": ("crnn.commands.ocr", "read the text of word images (files, folders, globs, stdin)"),
    "info": ("crnn.commands.info", "print a model's architecture, parameters and multiply-adds"),
    "export": ("crnn.commands.export", "export weights to ONNX (for `--backend onnx`, inference without torch)"),
    "synth": ("crnn_synth_data.cli", "render synthetic word images (datasets, previews, font list)"),
    "train": ("crnn_training.train", "train a model from a YAML config"),
    "train-cache": ("crnn_training.cache", "render a training config's sample cache (LMDB) with every core"),
    "train-orientation": ("crnn_training.train_orientation", "train the orientation classifier on rendered words"),
    "eval": ("crnn_training.evaluate", "evaluate weights on labeled folders"),
    "self-label": ("crnn_training.self_label", "label unlabeled word crops with a model's confident readings (self-training)"),
    "compare": ("crnn_training.compare", "compare two models (e.g. CRNN vs the segmented-character baseline) in a report"),
    "plot": ("crnn_training.plot", "plot the training curves of a run folder"),
    "lm": ("crnn_training.char_lm", "train the character language model of `--decoder lm` on the renderer's text"),
    "serve": ("crnn_server.cli", "run the REST API (FastAPI + uvicorn)"),
}

USAGE = "usage: crnn <command> [options]\n\ncommands:\n" + "\n".join(
    f"  {name:<8} {help_}" for name, (_, help_) in SUBCOMMANDS.items()
) + "\n\nRun `crnn <command> --help` for a command's options."


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `crnn` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if args[0] in ("-V", "--version"):
        from crnn import __version__

        print(f"crnn-ocr {__version__}")
        return 0
    name = args[0]
    if name not in SUBCOMMANDS:
        print(f"crnn: unknown command {name!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    module_name = SUBCOMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        print(
            f"crnn {name}: missing dependency {e.name!r}; install the extras, e.g. pip install -e '.[dev]'",
            file=sys.stderr,
        )
        return 2
    status = int(module.main(args[1:]) or 0)
    if argv is None:
        # Run as the program, which exits next: the interpreter's last cycle collections would walk every object of
        # numpy, ONNX Runtime, OpenCV, ... only to free them at exit. Frozen, they are skipped (`crnn ocr` ends
        # ~0.05 s sooner, docs/benchmarks.md, issue 33). Not for in-process callers, who pass their argv.
        gc.freeze()
    return status


if __name__ == "__main__":
    sys.exit(main())
