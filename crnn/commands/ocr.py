"""`crnn ocr`: batch OCR of word images from the command line, streaming results as batches finish."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from crnn.commands.ocr_output import Writer, _printable, check_output, load_lexicon, open_output
from crnn.errors import CRNNError, LoaderError
from crnn.io.inputs import expand_inputs
from crnn.reading.batch_ocr import CHUNK_BATCHES, run_ocr

if TYPE_CHECKING:
    from crnn.io.image_loader import ChunkLoader

FORMATS = ("tsv", "csv", "jsonl")


def _count(inputs: Sequence[str]) -> int | None:
    if "-" in inputs:
        return None
    return sum(1 for _ in expand_inputs(inputs))


def build_parser() -> argparse.ArgumentParser:
    from crnn.decoding.ctc_decode import DECODERS, DEFAULT_DECODER  # numpy only; `crnn ocr` needs it to decode anyway

    """The argument parser of `crnn ocr`."""
    from crnn.checkpoints.shipped import model_help
    from crnn.reading.precision import PRECISIONS

    p = argparse.ArgumentParser(prog="crnn ocr", description="Read the text of word images (with --detect: of whole photos, word by word).")
    p.add_argument("paths", nargs="+", help="image files, folders (recursive), glob patterns, or - for paths on stdin")
    p.add_argument("--weights", help="checkpoint file, .safetensors or .onnx (default: the shipped model in weights/)")
    p.add_argument("--model", metavar="NAME", help=model_help())
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
    p.add_argument("--orientation", choices=("auto", "none"), default=None,
                   help="none (default without --detect): read every crop as it comes; auto (default with --detect, "
                   "for tall lines): a small classifier says whether a crop's text is turned 90/180/270 degrees or "
                   "stacked letters, and it is turned upright before reading (TSV/CSV get an orientation column; "
                   "see docs/orientation.md)")
    p.add_argument("--progress", action="store_true", help="show a progress bar even when stderr is not a terminal")
    photo = p.add_argument_group("Whole photos (the detect extra: pip install 'crnn-ocr[detect]'; docs/photos.md)")
    photo.add_argument("--detect", action="store_true",
                       help="the inputs are photos: find their text lines, read them and split them into words; one "
                       "JSON line per photo (its words with polygons, in reading order; \"words\": [] for a photo "
                       "without text) or one TSV/CSV row per word (path, line, text, confidence, x1..y4)")
    photo.add_argument("--detector", default="ppocr-v6-small",
                       help="--detect: the text detector's kind (default ppocr-v6-small: PP-OCRv6 small from rapidocr)")
    photo.add_argument("--min-confidence", type=float, default=None,
                       help="--detect: drop lines whose mean character confidence is below this (default 0.5, "
                       "rapidocr's rule)")
    photo.add_argument("--draw", metavar="DIR", help="--detect: also write each photo with its word boxes and texts "
                       "drawn into DIR (JPEG, named after the photo; with --ray the driver draws them, so it must "
                       "be able to read the photos' paths)")
    ray = p.add_argument_group("Ray (many cores or machines; the ray extra; docs/scale-out.md)")
    ray.add_argument("--ray", action="store_true", help="read on Ray Data actors into resumable shards in "
                     "--output DIR; inputs may also be manifests (.csv or .parquet with a path column)")
    ray.add_argument("--ray-address", help="join this Ray cluster (default: start a local Ray instance)")
    ray.add_argument("--ray-actors", type=int, help="actors, one recognizer on one core each (default: one per CPU)")
    ray.add_argument("--ray-format", choices=("parquet", "jsonl"), default="parquet",
                     help="shard format (default parquet)")
    ray.add_argument("--ray-shard-size", type=int, default=10_000, help="paths per shard file (default 10000)")
    return p


def _detect_problem(args: argparse.Namespace) -> str | None:
    """Why these `crnn ocr --detect` options cannot run together (a usage error), or None; fills in the defaults."""
    if args.min_confidence is None:
        from crnn.detection.photo_reader import MIN_LINE_CONFIDENCE

        args.min_confidence = MIN_LINE_CONFIDENCE
    elif not 0.0 <= args.min_confidence <= 1.0:
        return f"--min-confidence {args.min_confidence}: must be in [0, 1]"
    args.orientation = args.orientation or "auto"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run `crnn ocr`; exit 0 when every image was read, 1 when some failed, 2 on usage errors."""
    args = build_parser().parse_args(argv)
    if args.batch_size < 1 or args.beam_width < 1 or (args.threads is not None and args.threads < 1):
        print("crnn ocr: --batch-size, --beam-width and --threads must be >= 1", file=sys.stderr)
        return 2
    if args.lm_weight is not None and (args.decoder != "lm" or not args.lm_weight >= 0):
        print("crnn ocr: --lm-weight needs --decoder lm and a value >= 0", file=sys.stderr)
        return 2
    if not args.detect and (args.draw or args.min_confidence is not None):
        print("crnn ocr: --draw and --min-confidence are options of --detect (whole photos)", file=sys.stderr)
        return 2
    if args.detect:
        problem = _detect_problem(args)
        if problem:
            print(f"crnn ocr: {problem}", file=sys.stderr)
            return 2
    else:
        args.orientation = args.orientation or "none"
    if args.ray:
        # Imported only now: without --ray neither it nor Ray is imported. It shares this command's inputs, rows,
        # writer and options (crnn.io.inputs, crnn.reading.batch_ocr, crnn.commands.ocr_output), not this module.
        from crnn.commands.ray_ocr import run_ray

        return int(run_ray(args))
    problem = check_output(args.output) if args.output else None
    if problem:  # before the model loads, not after
        print(f"crnn ocr: {problem}", file=sys.stderr)
        return 2
    if args.detect:  # imported only now: crop reading never imports the photo pipeline
        from crnn.commands.photo_ocr import run_photos

        return run_photos(args)
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
        args.backend, args.weights = resolve_backend(args.backend, args.weights, args.precision, args.device,
                                                     args.model)
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
    from crnn.kinds.loading import load_recognizer

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
