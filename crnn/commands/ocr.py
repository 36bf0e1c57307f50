"""`crnn ocr`: batch OCR of word images from the command line, streaming results as batches finish."""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from crnn.errors import CRNNError, LoaderError, OutputPathError
from crnn.output_files import check_output_file
from crnn.prediction import Prediction

if TYPE_CHECKING:
    import numpy as np

    from crnn.charset import Charset
    from crnn.decoding.ctc_decode import Lexicon
    from crnn.io.image_loader import Chunk, ChunkLoader
    from crnn.reading.orientation import OrientationClassifier
    from crnn.reading.text_recognizer import TextRecognizer

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm", ".pbm"})
FORMATS = ("tsv", "csv", "jsonl")
# Images per chunk = batch size x this. Big chunks fill the width buckets, so batches are full (on 2,000
# rendered words, whose widths spread over ~60 buckets, 32 batches a chunk instead of 2 doubled the mean
# batch, 10 -> 21 images); two chunks at most are held at a time.
CHUNK_BATCHES = 32


@dataclass
class Row:
    """One output record: a path and either a prediction or an error message."""

    path: str
    prediction: Prediction | None = None
    error: str | None = None


def expand_inputs(inputs: Sequence[str], stdin: IO[str] | None = None) -> Iterator[tuple[str, str | None]]:
    """Lazily yield (path, error) for files, folders (recursive, image files only), globs and '-' (stdin)."""
    for arg in inputs:
        if arg == "-":
            for line in stdin or sys.stdin:
                line = line.rstrip("\r\n")
                if line.strip():  # a blank or whitespace-only line is no path
                    yield line, None
        elif os.path.isdir(arg):
            yield from _walk_images(arg)
        elif os.path.exists(arg):
            yield arg, None
        else:
            matches = sorted(glob.iglob(arg, recursive=True)) if glob.has_magic(arg) else []
            if not matches:
                yield arg, "no such file, folder or matching pattern"
            for m in matches:
                if os.path.isdir(m):
                    yield from _walk_images(m)
                elif Path(m).suffix.lower() in IMAGE_EXTENSIONS:
                    yield m, None


def _walk_images(root: str) -> Iterator[tuple[str, str | None]]:
    """(path, None) for each image file under ``root``, and (folder, error) for each folder that cannot be read."""
    unreadable: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable.append):
        yield from _folder_errors(unreadable)  # os.walk reports a folder it cannot list before moving on
        dirnames.sort()
        for name in sorted(filenames):
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                yield os.path.join(dirpath, name), None
    yield from _folder_errors(unreadable)


def _folder_errors(errors: list[OSError]) -> Iterator[tuple[str, str | None]]:
    while errors:
        e = errors.pop(0)
        yield os.fsdecode(e.filename) if e.filename is not None else "?", f"cannot read folder ({e.strerror or e})"


# Lone surrogates: the bytes of a file name that is not valid UTF-8, as os.fsdecode gives them (PEP 383).
_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_surrogates(text: str) -> str:
    # Inside JSON text a raw surrogate can only sit in a string: written as \udcXX it is valid JSON (and
    # UTF-8), and os.fsencode(json.loads(line)["path"]) gives back the name's original bytes.
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _printable(text: str) -> str:
    """``text`` for a terminal: a file name's bytes that are not UTF-8 shown as \\xNN escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class Writer:
    """Writes rows as TSV (default), CSV or JSON lines; with ``lexicon``, TSV/CSV get an ``in_lexicon`` column,
    with ``orientation`` an ``orientation`` column (how each crop's text appeared, see crnn.reading.orientation)."""

    def __init__(self, out: IO[str], fmt: str = "tsv", lexicon: bool = False, orientation: bool = False) -> None:
        self.out, self.fmt, self.lexicon, self.orientation = out, fmt, lexicon, orientation
        if fmt in ("tsv", "csv"):
            self._csv = csv.writer(out, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
            # The columns only when a lexicon / the orientation step is used: the default output stays as it was.
            self._csv.writerow(["path", "text", "confidence", "error"] + (["in_lexicon"] if lexicon else [])
                               + (["orientation"] if orientation else []))

    def write(self, row: Row) -> None:
        """Write one row."""
        p = row.prediction
        if self.fmt == "jsonl":
            rec: dict[str, object] = {"path": row.path}
            if p is not None:
                rec.update(text=p.text, confidence=round(p.confidence, 6),
                           char_confidences=[round(c, 6) for c in p.char_confidences])
                if p.in_lexicon is not None:
                    rec["in_lexicon"] = p.in_lexicon
                if p.orientation is not None:
                    rec["orientation"] = p.orientation
            else:
                rec["error"] = row.error
            self.out.write(_escape_surrogates(json.dumps(rec, ensure_ascii=False)) + "\n")
        elif p is not None:
            flag = [] if not self.lexicon else ["" if p.in_lexicon is None else str(p.in_lexicon).lower()]
            turned = [] if not self.orientation else [p.orientation or ""]
            self._csv_row([row.path, p.text, f"{p.confidence:.4f}", ""] + flag + turned)
        else:
            self._csv_row([row.path, "", "", row.error] + ([""] if self.lexicon else []) + ([""] if self.orientation else []))

    def _csv_row(self, fields: list[str]) -> None:
        try:
            self._csv.writerow(fields)
        except UnicodeEncodeError:
            # Not on a stream that takes surrogateescape (see open_output): backslash escapes, so that
            # no file name can stop the run (csv writes a row in one call, so nothing was written).
            self._csv.writerow([f.encode("utf-8", "backslashreplace").decode("utf-8") for f in fields])


def open_output(path: str | None) -> IO[str]:
    """The output stream: the file ``path`` or stdout, both writing a file name that is not valid UTF-8
    back as its original bytes (surrogateescape), so that ``os.fsencode(row["path"])`` round-trips."""
    if path is not None:
        return open(path, "w", encoding="utf-8", errors="surrogateescape", newline="")
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="surrogateescape")
    return sys.stdout


def check_output(path: str) -> str | None:
    """Why ``-o path`` cannot be written (see crnn.output_files.check_output_file), or None."""
    try:
        check_output_file(path, option="-o")
    except OutputPathError as e:
        return str(e)
    return None


def load_lexicon(path: str, charset: Charset, case: str, prog: str = "crnn ocr") -> Lexicon:
    """``--lexicon path`` for ``charset``, saying on stderr which words it dropped (raises LexiconFileError when
    it cannot be read or keeps no word)."""
    from crnn.decoding.ctc_decode import Lexicon, dropped_report

    lexicon = Lexicon.from_file(path, charset, case)
    note = dropped_report([lexicon])
    if note:
        print(f"{prog}: warning: --lexicon {path}: {note}", file=sys.stderr)
    return lexicon


def run_ocr(
    recognizer: TextRecognizer,
    chunks: Iterable[Chunk],
    batch_size: int = 64,
    decoder: str | None = None,
    beam_width: int = 10,
    lexicon: Lexicon | None = None,
    workers: int = 1,
    lm_weight: float | None = None,
    orientation: OrientationClassifier | None = None,
) -> Iterator[Row]:
    """Yield one Row per input in input order, a chunk at a time (see :class:`crnn.io.image_loader.ChunkLoader`).

    With ``orientation`` the chunks hold OrientedCrops (an ``oriented`` loader): each is turned as the classifier
    says before it is read, and its prediction says how (``Prediction.orientation``). ``decoder`` None: the
    default (crnn.decoding.ctc_decode.DEFAULT_DECODER).
    """
    from dataclasses import replace

    from crnn.decoding.ctc_decode import DEFAULT_DECODER

    decoder = DEFAULT_DECODER if decoder is None else decoder

    for chunk in chunks:
        good = [i for i, (_, arr, _) in enumerate(chunk) if arr is not None]
        arrays = [chunk[i][1] for i in good]
        labels: list[str | None] = [None] * len(good)

        def read(inputs: list[np.ndarray]) -> list[Prediction]:
            return recognizer.recognize_prepared(inputs, batch_size, decoder, beam_width, lexicon, workers, lm_weight)  # type: ignore[arg-type]

        if orientation is not None:
            from crnn.reading.orientation import read_oriented

            preds, labels = read_oriented(read, arrays, orientation, recognizer.preprocess)  # type: ignore[arg-type,assignment]
        else:
            preds = read(arrays) if good else []
        preds = [p if o is None else replace(p, orientation=o) for p, o in zip(preds, labels)]
        by_index = dict(zip(good, preds))
        for i, (path, _, err) in enumerate(chunk):
            yield Row(path, by_index.get(i), None if i in by_index else err)


def _count(inputs: Sequence[str]) -> int | None:
    if "-" in inputs:
        return None
    return sum(1 for _ in expand_inputs(inputs))


def build_parser() -> argparse.ArgumentParser:
    from crnn.decoding.ctc_decode import DECODERS, DEFAULT_DECODER  # numpy only; `crnn ocr` needs it to decode anyway

    """The argument parser of `crnn ocr`."""
    from crnn.reading.precision import PRECISIONS

    p = argparse.ArgumentParser(prog="crnn ocr", description="Read the text of word images.")
    p.add_argument("paths", nargs="+", help="image files, folders (recursive), glob patterns, or - for paths on stdin")
    p.add_argument("--weights", help="checkpoint file, .safetensors or .onnx (default: the shipped model in weights/)")
    p.add_argument("--backend", choices=("torch", "onnx", "auto"), default="auto",
                   help="auto (default): onnx when onnxruntime is installed (pip install 'crnn-ocr[onnx]') and an .onnx "
                   "file is at hand (the shipped model has one), on the CPU in fp32, else torch; onnx: ONNX Runtime on "
                   "an .onnx file from `crnn export`, torch never imported (same texts as torch; docs/onnx.md)")
    p.add_argument("--format", choices=FORMATS, default="tsv", help="output format (default tsv)")
    p.add_argument("--output", "-o", help="write results to this file (default stdout)")
    p.add_argument("--decoder", choices=DECODERS, default=DEFAULT_DECODER,
                   help=f"lm (beam search with the shipped character language model: fewer misread words, see "
                   f"docs/language_model.md), greedy (fastest: 6-13%% faster than lm) or beam (prefix beam search "
                   f"alone); default {DEFAULT_DECODER}")
    p.add_argument("--beam-width", type=int, default=10)
    p.add_argument("--lm-weight", type=float, help="--decoder lm: weight of the language model (default: the tuned one)")
    p.add_argument("--lexicon", help="text file with one allowed word per line (matched case-insensitively; "
                   "see docs/lexicon.md)")
    p.add_argument("--lexicon-case", choices=("image", "keep"), default="image",
                   help="image (default): return a lexicon word in the case the image shows; keep: as the lexicon "
                   "spells it")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, help="CPU cores to use (default: all; on a CPU that many batches run at once)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto (default): bf16 on a CPU with native bf16 (AVX-512 BF16, AMX), else fp32; mixed: "
                   "bf16 convolutions, fp32 recurrence. Results never depend on the batch")
    p.add_argument("--orientation", choices=("auto", "none"), default="none",
                   help="none (default): read every crop as it comes; auto: a small classifier says whether a crop's "
                   "text is turned 90/180/270 degrees or stacked letters, and it is turned upright before reading "
                   "(TSV/CSV get an orientation column; see docs/orientation.md)")
    p.add_argument("--progress", action="store_true", help="show a progress bar even when stderr is not a terminal")
    ray = p.add_argument_group("Ray (many cores or machines; the ray extra; docs/scale-out.md)")
    ray.add_argument("--ray", action="store_true", help="read on Ray Data actors into resumable shards in "
                     "--output DIR; inputs may also be manifests (.csv or .parquet with a path column)")
    ray.add_argument("--ray-address", help="join this Ray cluster (default: start a local Ray instance)")
    ray.add_argument("--ray-actors", type=int, help="actors, one recognizer on one core each (default: one per CPU)")
    ray.add_argument("--ray-format", choices=("parquet", "jsonl"), default="parquet",
                     help="shard format (default parquet)")
    ray.add_argument("--ray-shard-size", type=int, default=10_000, help="paths per shard file (default 10000)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run `crnn ocr`; exit 0 when every image was read, 1 when some failed, 2 on usage errors."""
    args = build_parser().parse_args(argv)
    if args.batch_size < 1 or args.beam_width < 1 or (args.threads is not None and args.threads < 1):
        print("crnn ocr: --batch-size, --beam-width and --threads must be >= 1", file=sys.stderr)
        return 2
    if args.lm_weight is not None and (args.decoder != "lm" or not args.lm_weight >= 0):
        print("crnn ocr: --lm-weight needs --decoder lm and a value >= 0", file=sys.stderr)
        return 2
    if args.ray:
        # Loaded by name, as crnn/cli.py loads a subcommand: crnn.commands.ray_ocr builds on this module (its inputs,
        # rows and writer), and without --ray neither it nor Ray is imported.
        import importlib

        return int(importlib.import_module("crnn.commands.ray_ocr").run_ray(args))
    problem = check_output(args.output) if args.output else None
    if problem:  # before the model loads, not after
        print(f"crnn ocr: {problem}", file=sys.stderr)
        return 2
    import cv2

    from crnn.reading.backend import resolve_backend
    from crnn.checkpoints.header import default_weights_path, read_header
    from crnn.io.image_loader import ChunkLoader, make_pool
    from crnn.machine import cpu_cores
    from crnn.io.preprocess import PreprocessConfig

    # Images are decoded in loader processes (or threads); OpenCV's own thread pool on top of them (and
    # of torch's threads) only oversubscribes the cores.
    cv2.setNumThreads(1)
    try:
        args.backend, args.weights = resolve_backend(args.backend, args.weights, args.precision, args.device)
        header = read_header(args.weights or default_weights_path())
        preprocess = PreprocessConfig.from_dict(header["preprocess"])
    except CRNNError as e:
        print(f"crnn ocr: {e}", file=sys.stderr)
        return 2
    # The decoders start (forked: torch is not imported yet) and read the first chunk of images while
    # this process imports torch and loads the model, ~1 s on a CPU (see crnn/io/image_loader.py).
    pool = make_pool(args.threads or cpu_cores())
    try:
        chunks = ChunkLoader(expand_inputs(args.paths), preprocess, pool, chunk_size=args.batch_size * CHUNK_BATCHES,
                             oriented=args.orientation != "none")
        return _recognize(args, chunks)
    except KeyboardInterrupt:
        print("crnn ocr: interrupted", file=sys.stderr)
        return 130
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _recognize(args: argparse.Namespace, chunks: ChunkLoader) -> int:
    """Load the model and write a row per input; the exit status of `crnn ocr`."""
    from crnn.machine import cpu_cores
    from crnn.reading.text_recognizer import load_recognizer

    on_cpu = not args.device.startswith("cuda")
    if args.backend == "torch":  # the onnx backend never imports torch
        import torch

        if not on_cpu and not torch.cuda.is_available():
            print("crnn ocr: --device cuda asked for, but no CUDA GPU is available", file=sys.stderr)
            return 2
        cores = args.threads or torch.get_num_threads()
    else:
        cores = args.threads or cpu_cores()
    # On a CPU, N cores read more images as N batches at once, each single-threaded, than as one batch
    # on N intra-op threads: the recurrent matrices of one batch are too small to split well (both backends).
    torch_threads, workers = (1, cores) if on_cpu else (args.threads, 1)
    try:
        # The checkpoint's model_type picks the recognizer (crnn.kinds.registry: CRNN, baseline, ...).
        recognizer = load_recognizer(args.weights, device=args.device, threads=torch_threads, precision=args.precision,
                                     backend=args.backend)
        lexicon = load_lexicon(args.lexicon, recognizer.charset, args.lexicon_case) if args.lexicon else None
        orientation = None
        if args.orientation != "none":
            from crnn.reading.orientation import load_orientation

            orientation = load_orientation(args.orientation)
    except (CRNNError, OSError, ValueError) as e:
        print(f"crnn ocr: {e}", file=sys.stderr)
        return 2

    try:
        out = open_output(args.output)
    except OSError as e:
        print(f"crnn ocr: -o {args.output}: {e.strerror or e}", file=sys.stderr)
        return 2
    show = args.progress or sys.stderr.isatty()
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=_count(args.paths), unit="img", file=sys.stderr, dynamic_ncols=True)
    failed = 0
    try:
        writer = Writer(out, args.format, lexicon=lexicon is not None, orientation=orientation is not None)
        rows = run_ocr(recognizer, chunks, args.batch_size, args.decoder, args.beam_width, lexicon, workers=workers,
                       lm_weight=args.lm_weight, orientation=orientation)
        for row in rows:
            writer.write(row)
            if row.error is not None:
                failed += 1
                msg = row.error if row.error.startswith(row.path) else f"{row.path}: {row.error}"
                (bar.write if bar else lambda m: print(m, file=sys.stderr))(f"crnn ocr: error: {_printable(msg)}")
            if bar:
                bar.update(1)
        out.flush()
    except LoaderError as e:  # the rows written so far stand; the rest could not be read
        print(f"crnn ocr: {e}", file=sys.stderr)
        return 1
    except CRNNError as e:  # an option the model's kind cannot honour (e.g. a lexicon for the attention decoder)
        print(f"crnn ocr: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader (e.g. `head`) went away: stop quietly, as Unix tools do.
        sys.stderr.close()
        return 1
    finally:
        if bar:
            bar.close()
        if out is not sys.stdout:
            out.close()
    return 1 if failed else 0
