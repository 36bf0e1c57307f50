"""`crnn ocr --detect`: whole photos in, every word with its polygon out (crnn.detection.PhotoReader), one photo at a
time on all the cores (the detector's ONNX Runtime threads), the next photos decoding ahead in a thread; `--draw DIR`
writes each photo with its words drawn. Imported only when `--detect` is given (and by `--ray`'s photo actors)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crnn.commands.ocr_output import _printable, open_output
from crnn.commands.photo_output import PhotoRow, PhotoWriter
from crnn.errors import CRNNError
from crnn.io.inputs import expand_inputs

import numpy as np

if TYPE_CHECKING:
    from crnn.detection.photo_reader import PhotoReader

PREFETCH = 4  # photos decoded ahead of the one being read (a few full-size photos: ~100 MB at most)


@dataclass
class PhotoOptions:
    """What a photo reader is built from: the detector's kind and threads, load_recognizer's keyword arguments, and
    PhotoReader's options (each `crnn ocr --ray` actor builds its own reader from these)."""

    detector: str
    detector_threads: int | None = None
    load: dict[str, Any] = field(default_factory=dict)
    reader: dict[str, Any] = field(default_factory=dict)
    lexicon: str | None = None  # a word list file (absolute: the actors may run elsewhere), read by each reader
    lexicon_case: str = "image"


def photo_options(args: argparse.Namespace, detector_threads: int | None, recognizer_threads: int | None) -> PhotoOptions:
    """The photo reader's options from a parsed `crnn ocr --detect` command line."""
    return PhotoOptions(
        detector=args.detector, detector_threads=detector_threads,
        load=dict(weights=args.weights, device=args.device, threads=recognizer_threads, precision=args.precision,
                  backend=args.backend),
        reader=dict(min_confidence=args.min_confidence, decoder=args.decoder, beam_width=args.beam_width,
                    batch_size=args.batch_size, orientation=args.orientation or "auto",
                    lm_weight=getattr(args, "lm_weight", None)),
        lexicon=os.path.abspath(args.lexicon) if getattr(args, "lexicon", None) else None,
        lexicon_case=getattr(args, "lexicon_case", "image"),
    )


def build_reader(options: PhotoOptions) -> PhotoReader:
    """The detector (BackendError when its extra is missing: checked first) and the recognizer, as a PhotoReader."""
    from crnn.decoding.lexicon import Lexicon
    from crnn.detection.photo_reader import PhotoReader
    from crnn.detection.registry import load_detector
    from crnn.kinds.loading import load_recognizer

    detector = load_detector(options.detector, threads=options.detector_threads)
    recognizer = load_recognizer(**options.load)
    # The words it drops are said once, by the command (run_photos; --ray's driver), not by each reader.
    lexicon = Lexicon.from_file(options.lexicon, recognizer.charset, options.lexicon_case) if options.lexicon else None
    return PhotoReader(detector, recognizer, lexicon=lexicon, **options.reader)


def _load(path: str, max_pixels: int) -> np.ndarray:
    from crnn.detection.photo_image import load_photo

    return load_photo(path, max_pixels)


def _error(path: str, e: Exception) -> str:
    if isinstance(e, CRNNError):
        return str(e)
    return f"{path}: {type(e).__name__}: {e}"  # an unexpected decoder failure must not end the run


def read_photos(reader: PhotoReader, items: Iterable[tuple[str, str | None]], prefetch: int = PREFETCH
                ) -> Iterator[tuple[PhotoRow, np.ndarray | None]]:
    """A PhotoRow per input in input order, with the decoded photo (RGB) when it was read; the next ``prefetch``
    photos decode in a thread meanwhile. Never raises for a bad photo: its row holds the error."""
    max_pixels = reader.preprocess.max_pixels
    it = iter(items)
    with ThreadPoolExecutor(1, thread_name_prefix="crnn-photo") as pool:
        def submit(batch: list[tuple[str, str | None]]) -> list[tuple[str, str | None, Future | None]]:
            return [(p, e, pool.submit(_load, p, max_pixels) if e is None else None) for p, e in batch]

        pending = submit(list(islice(it, prefetch)))
        while pending:
            path, err, future = pending.pop(0)
            pending += submit(list(islice(it, 1)))
            if future is None:
                yield PhotoRow(path, None, err), None
                continue
            try:
                rgb = future.result()
                yield PhotoRow(path, reader.read(rgb)), rgb
            except Exception as e:
                yield PhotoRow(path, None, _error(path, e)), None


class DrawFolder:
    """Writes each photo with its words drawn into a folder, as JPEG named after the photo (``shop.jpg`` ->
    ``shop.jpg``; ``shop.png`` -> ``shop.jpg``; a second ``shop`` of this run -> ``shop-2.jpg``)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._taken: set[str] = set()

    def name_for(self, path: str) -> Path:
        """Where the drawing of ``path`` goes (unique within the run)."""
        stem = Path(path).stem or "photo"
        name, k = f"{stem}.jpg", 1
        while name in self._taken:
            k += 1
            name = f"{stem}-{k}.jpg"
        self._taken.add(name)
        return self.folder / name

    def write(self, path: str, rgb: np.ndarray, row: PhotoRow) -> None:
        """Draw ``row``'s words on ``rgb`` and write it (raises OSError when it cannot be written)."""
        from crnn.detection.photo_draw import draw_words

        out = self.name_for(path)
        draw_words(rgb, row.reading.words if row.reading else []).save(out, "JPEG", quality=90)

    def write_record(self, record: dict[str, Any], max_pixels: int) -> None:
        """Draw a photo record's words (photo_record's, as `--ray` actors return them) on the photo at its path, read
        again here (raises CRNNError when it cannot be read here, OSError when the drawing cannot be written)."""
        from crnn.detection.photo_image import load_photo
        from crnn.detection.photo_reader import PhotoReading, PhotoWord

        words = [PhotoWord(w["text"], w["confidence"], np.asarray(w["polygon"], np.float32), w["line"])
                 for w in record.get("words") or ()]
        rgb = load_photo(record["path"], max_pixels)
        self.write(record["path"], rgb, PhotoRow(record["path"], PhotoReading(words, [], rgb.shape[1], rgb.shape[0])))


def run_photos(args: argparse.Namespace) -> int:
    """`crnn ocr --detect` without --ray: exit 0 when every photo was read, 1 when some failed, 2 on usage errors."""
    from crnn.machine import cpu_cores

    on_cpu = not args.device.startswith("cuda")
    cores = args.threads or cpu_cores()
    try:
        from crnn.checkpoints.shipped import photo_model
        from crnn.reading.backend import resolve_backend

        args.model = photo_model(args.model, args.weights)  # photos: the lines model unless one is chosen
        args.backend, args.weights = resolve_backend(args.backend, args.weights, args.precision, args.device,
                                                     args.model)
        # The detector takes every core, one photo at a time; the recognizer reads a photo's few crops on one
        # thread on a CPU (a 32x128 crop took 18 ms on 1 torch thread, 121 ms on 2, on a shared 2-core machine).
        reader = build_reader(photo_options(args, cores, 1 if on_cpu else args.threads))
        if reader.lexicon is not None:
            from crnn.decoding.lexicon import dropped_report

            note = dropped_report([reader.lexicon])
            if note:
                print(f"crnn ocr: warning: --lexicon {args.lexicon}: {note}", file=sys.stderr)
        draw = DrawFolder(args.draw) if args.draw else None
    except (CRNNError, OSError, ValueError) as e:
        print(f"crnn ocr: {e}", file=sys.stderr)
        return 2
    try:
        out = open_output(args.output)
    except OSError as e:
        print(f"crnn ocr: -o {args.output}: {e.strerror or e}", file=sys.stderr)
        return 2
    bar = None
    if args.progress or sys.stderr.isatty():
        from tqdm import tqdm

        total = None if "-" in args.paths else sum(1 for _ in expand_inputs(args.paths))
        bar = tqdm(total=total, unit="photo", file=sys.stderr, dynamic_ncols=True)
    say = (lambda m: bar.write(m)) if bar else (lambda m: print(m, file=sys.stderr))
    failed = 0
    try:
        writer = PhotoWriter(out, args.format, lexicon=reader.lexicon is not None)
        for row, rgb in read_photos(reader, expand_inputs(args.paths)):
            writer.write(row)
            if row.error is not None:
                failed += 1
                msg = row.error if row.error.startswith(row.path) else f"{row.path}: {row.error}"
                say(f"crnn ocr: error: {_printable(msg)}")
            elif draw is not None and rgb is not None:
                try:
                    draw.write(row.path, rgb, row)
                except OSError as e:  # the words stand (written above); the drawing is what failed
                    failed += 1
                    say(f"crnn ocr: error: {_printable(row.path)}: --draw: cannot write ({e.strerror or e})")
            if bar:
                bar.update(1)
        out.flush()
    except KeyboardInterrupt:
        print("crnn ocr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 1
    finally:
        if bar:
            bar.close()
        if out is not sys.stdout:
            out.close()
    return 1 if failed else 0
