"""`crnn ocr --ray`: the same batch OCR on Ray Data, over one machine's cores or a Ray cluster, into resumable shards.

The driver expands the inputs as `crnn ocr` does (plus manifests: CSV or Parquet files with a ``path``
column), cuts them into shards of ``--ray-shard-size`` paths in input order (``part-000000.parquet``, ...),
and skips the shards already in the output folder. The rest go through ``map_batches`` on a pool of actors,
each holding one recognizer on one thread, which decode and read their images exactly as `crnn ocr` does
(crnn.io.image_loader.load_paths, crnn.reading.batch_ocr.run_ocr). Results stream back to the driver, which writes each shard
when its last row arrives, to a temporary name renamed into place, so a killed run leaves only whole shards.
Ray is imported only here, and this module only when `crnn ocr --ray` runs (the `ray` extra).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from crnn.config import Config
from crnn.errors import CRNNError, ConfigError, ShardFolderError
from crnn.commands.ocr_output import Writer
from crnn.io.inputs import expand_inputs
from crnn.reading.batch_ocr import CHUNK_BATCHES, Row, run_ocr
from crnn.prediction import Prediction

if TYPE_CHECKING:
    import pyarrow as pa

    from crnn.commands.photo_ocr import PhotoOptions

MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")
# Photos per actor call: a photo takes ~0.5 s on one core, so a few spread a small folder over every actor.
PHOTOS_PER_CALL = 4
PHOTO_KEYS = ("path", "width", "height", "words", "lines", "error")  # a `--detect` shard's records
RUN_FILE = "_crnn_ocr_run.json"  # what the folder's shards were read with (RunRecord)
RUN_FILE_VERSION = 2  # 2: the weights and lexicon by content hash (1, unversioned: by path only)
# Paths per actor call (batch size x this). Smaller than `crnn ocr`'s chunks (x CHUNK_BATCHES) so that a few
# thousand images still spread over every actor; big enough that most width buckets fill a batch.
ACTOR_CHUNK_BATCHES = max(1, CHUNK_BATCHES // 4)


@dataclass
class OcrOptions:
    """What every actor needs to read like `crnn ocr`: load_recognizer's and run_ocr's keyword arguments.

    A new `crnn ocr` recognizer option is one more key in ``load`` or ``run`` (see :func:`options_from_args`) and,
    when it can change what is read, one more flag in :func:`run_record`.
    """

    load: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    lexicon: str | None = None
    lexicon_case: str = "image"


def options_from_args(args: argparse.Namespace) -> OcrOptions:
    """The recognizer options of a parsed `crnn ocr` command line (each actor runs on one thread)."""
    return OcrOptions(
        load=dict(weights=args.weights, device=args.device, threads=1, precision=args.precision,
                  backend=getattr(args, "backend", "torch")),
        run=dict(batch_size=args.batch_size, decoder=args.decoder, beam_width=args.beam_width,
                 lm_weight=getattr(args, "lm_weight", None)),
        lexicon=os.path.abspath(args.lexicon) if args.lexicon else None,
        lexicon_case=args.lexicon_case,
    )


class HashedFile(Config):
    """A file a run read, by content: a resume must read the same bytes, wherever they are now."""

    kind: ClassVar[str] = "run file"
    path: str
    sha256: str


class RunRecord(Config):
    """What an output folder's shards were read with (``_crnn_ocr_run.json``): a resume must match it.

    ``options`` holds, by the flag that sets it, each option that can change a shard's contents (an option that
    does not apply, e.g. --beam-width with --decoder greedy, is left out). Options that only change how fast the
    shards are read (--batch-size, --ray-actors, --ray-address, --threads, --progress) are not recorded: a resume
    may change them.
    """

    kind: ClassVar[str] = "run file"
    version: Literal[2] = RUN_FILE_VERSION
    options: dict[str, str | int | float]
    weights: HashedFile
    lexicon: HashedFile | None = None
    language_model: HashedFile | None = None  # with --decoder lm: the character language model it reads with


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's contents, hex (read once per run, on the driver: a few ms for the shipped model)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _hashed(path: str | os.PathLike[str]) -> HashedFile:
    return HashedFile(path=os.path.abspath(path), sha256=file_sha256(path))


def run_record(options: OcrOptions, fmt: str, shard_size: int, photo: PhotoOptions | None = None) -> RunRecord:
    """The record of a run with these options: the weights, lexicon and language model hashed (raises OSError
    when one cannot be read); with ``photo`` (`--detect`), the detector and the photo reader's options too."""
    from crnn.decoding.char_lm import default_lm_path
    from crnn.checkpoints.header import default_weights_path
    from crnn.decoding.lm_decode import LM_WEIGHT

    load, run = options.load, options.run
    decoder = run["decoder"]
    flags: dict[str, Any] = {
        "--ray-format": fmt, "--ray-shard-size": shard_size, "--backend": load["backend"], "--device": load["device"],
        "--precision": load["precision"], "--decoder": decoder,
        "--beam-width": run["beam_width"] if decoder != "greedy" else None,
        # The default weight is the tuned one: no --lm-weight and --lm-weight 0.35 read the same.
        "--lm-weight": (LM_WEIGHT if run["lm_weight"] is None else run["lm_weight"]) if decoder == "lm" else None,
        "--lexicon-case": options.lexicon_case if options.lexicon else None,
    }
    if photo is not None:  # only then: the records of crop runs stay as they were
        flags.update({"--detect": photo.detector, "--min-confidence": photo.reader["min_confidence"],
                      "--orientation": photo.reader["orientation"],
                      # Not an option: the reader's rule for putting back dropped spaces (PhotoReader.space_prob), so
                      # that a run begun before a change of the rule is not resumed with mixed outputs.
                      # ("auto": the model's own, which its weights' hash above pins).
                      "space_prob": photo.reader.get("space_prob", "auto")})
    return RunRecord(
        options={k: v for k, v in flags.items() if v is not None},
        weights=_hashed(load["weights"] or default_weights_path()),
        lexicon=_hashed(options.lexicon) if options.lexicon else None,
        language_model=_hashed(default_lm_path()) if decoder == "lm" else None,
    )


def _file_change(what: str, before: HashedFile | None, now: HashedFile | None) -> str | None:
    """How a file a run reads differs from the one its shards were read with, or None."""
    if before is None and now is None or before and now and before.sha256 == now.sha256:
        return None  # the same bytes, wherever they are now
    if before is None or now is None:
        then, later = (f"no {what}" if f is None else f"{what} {f.path}" for f in (before, now))
        return f"{then} then, {later} now"
    if before.path == now.path:
        return f"{what} {now.path} has changed since (sha256 {before.sha256[:12]} then, {now.sha256[:12]} now)"
    return (f"other {what} ({before.path}, sha256 {before.sha256[:12]} then; {now.path}, sha256 {now.sha256[:12]} "
            f"now)")


def run_changes(before: RunRecord, now: RunRecord) -> list[str]:
    """What differs between the run an output folder holds and this one, each as a phrase naming it."""
    changes = [c for c in (_file_change("weights", before.weights, now.weights),
                           _file_change("lexicon", before.lexicon, now.lexicon)) if c]
    if before.language_model and now.language_model:  # else --decoder differs, and says it
        changes += [c for c in [_file_change("language model", before.language_model, now.language_model)] if c]
    if before.options.get("--detect") != now.options.get("--detect"):  # photos then and crops now, or the reverse
        then, later = (f"--detect {o['--detect']}" if "--detect" in o else "word crops (no --detect)"
                       for o in (before.options, now.options))
        changes.append(f"{then} then, {later} now")
    if "--detect" in before.options and "--detect" in now.options and \
            before.options.get("space_prob") != now.options.get("space_prob"):  # absent: a run from before the rule
        then, later = (o.get("space_prob", "none") for o in (before.options, now.options))
        changes.append(f"the photo reader's inferred spaces (space_prob {then} then, {later} now)")
    for flag in dict.fromkeys([*before.options, *now.options]):
        if flag == "space_prob":
            continue
        old, new = before.options.get(flag), now.options.get(flag)
        # An option used on one side only (--beam-width, --lm-weight, --lexicon-case) follows from a change that
        # is said (--decoder, the lexicon).
        if old is not None and new is not None and old != new:
            changes.append(f"{flag} {old} then, {new} now")
    return changes


# --- inputs -------------------------------------------------------------------------------------------------


def is_manifest(arg: str) -> bool:
    """Whether a `crnn ocr --ray` input is a manifest (CSV or Parquet with a ``path`` column)."""
    return arg.lower().endswith(MANIFEST_SUFFIXES) and os.path.isfile(arg)


def read_manifest(path: str, batch_rows: int = 65_536) -> Iterator[str]:
    """The ``path`` column of a CSV or Parquet manifest, streamed; blank entries are skipped."""
    if path.lower().endswith(".csv"):
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
            reader = csv.DictReader(f)
            if "path" not in (reader.fieldnames or ()):
                columns = ", ".join(reader.fieldnames or [])
                raise ShardFolderError(f"manifest {path}: no 'path' column (columns: {columns})")
            for rec in reader:
                if (rec["path"] or "").strip():
                    yield rec["path"]
        return
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ... for a file that is no Parquet
        raise ShardFolderError(f"manifest {path}: cannot read as Parquet ({e})") from None
    if "path" not in pf.schema_arrow.names:
        raise ShardFolderError(f"manifest {path}: no 'path' column (columns: {', '.join(pf.schema_arrow.names)})")
    for batch in pf.iter_batches(batch_size=batch_rows, columns=["path"]):
        for p in batch.column(0).to_pylist():
            if isinstance(p, bytes):  # a binary column: file names as bytes
                p = os.fsdecode(p)
            if p is not None and p.strip():
                yield p


def iter_inputs(inputs: Sequence[str]) -> Iterator[tuple[str, str | None]]:
    """(path, error) for every input in order: `crnn ocr`'s inputs (crnn.io.inputs.expand_inputs) and manifests."""
    for arg in inputs:
        if is_manifest(arg):
            for p in read_manifest(arg):
                yield p, None
        else:
            yield from expand_inputs([arg])


def shards(items: Iterable[tuple[str, str | None]], size: int) -> Iterator[list[tuple[str, str | None]]]:
    """The inputs cut into consecutive shards of ``size`` (the last may be shorter)."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def shard_name(index: int, fmt: str) -> str:
    """The file name of shard ``index``: fixed by input order, so a rerun finds what is done."""
    return f"part-{index:06d}.{fmt}"


# --- the actor ----------------------------------------------------------------------------------------------

_BYTES = "utf-8", "surrogateescape"  # file names that are not UTF-8 travel as their own bytes


def _result_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([("shard", pa.int64()), ("index", pa.int64()), ("path", pa.binary()), ("text", pa.string()),
                      ("confidence", pa.float64()), ("char_confidences", pa.list_(pa.float64())),
                      ("in_lexicon", pa.bool_()), ("error", pa.binary())])


class OcrActor:
    """One Ray actor: one recognizer on one thread, reading a batch of paths into result rows."""

    def __init__(self, options: OcrOptions, cwd: str) -> None:
        import cv2
        import torch

        from crnn.decoding.lexicon import Lexicon
        from crnn.kinds.loading import load_recognizer

        # Relative inputs mean what they meant to the driver (on a cluster: the same folder on a shared disk);
        # the paths stay as given, so rows and error messages are those of `crnn ocr`.
        if os.path.isdir(cwd):
            os.chdir(cwd)
        cv2.setNumThreads(1)
        torch.set_num_threads(1)
        self.recognizer = load_recognizer(**options.load)
        self.lexicon = (Lexicon.from_file(options.lexicon, self.recognizer.charset, options.lexicon_case)
                        if options.lexicon else None)
        self.run = options.run

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Rows (shard, index, path, error) -> result rows in the same order (an unreadable image: an error row)."""
        import pyarrow as pa

        from crnn.io.image_loader import load_paths

        cols = batch.to_pydict()
        paths = [p.decode(*_BYTES) for p in cols["path"]]
        errors = [e.decode(*_BYTES) if e is not None else None for e in cols["error"]]
        readable = [p for p, e in zip(paths, errors) if e is None]
        loaded = iter(load_paths(readable, self.recognizer.preprocess))
        chunk = [(p, None, e) if e is not None else (p, *next(loaded)) for p, e in zip(paths, errors)]
        rows = list(run_ocr(self.recognizer, [chunk], lexicon=self.lexicon, workers=1, **self.run))
        preds = [r.prediction for r in rows]
        return pa.table({
            "shard": cols["shard"], "index": cols["index"], "path": cols["path"],
            "text": [p.text if p else None for p in preds],
            "confidence": [p.confidence if p else None for p in preds],
            "char_confidences": [list(p.char_confidences) if p else None for p in preds],
            "in_lexicon": [p.in_lexicon if p else None for p in preds],
            "error": [r.error.encode(*_BYTES) if r.error is not None else None for r in rows],
        }, schema=_result_schema())


class PhotoActor:
    """One Ray actor for `--detect`: one photo reader (detector and recognizer on one thread each), reading a batch of
    photo paths into one JSON record per photo (crnn.commands.photo_output.photo_record)."""

    def __init__(self, options: PhotoOptions, cwd: str) -> None:
        import cv2

        from crnn.commands.photo_ocr import build_reader

        if os.path.isdir(cwd):
            os.chdir(cwd)
        cv2.setNumThreads(1)
        self.reader = build_reader(options)

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Rows (shard, index, path, error) -> (shard, index, path, record as JSON, error) in the same order."""
        import pyarrow as pa

        from crnn.commands.photo_ocr import read_photos
        from crnn.commands.photo_output import photo_record

        cols = batch.to_pydict()
        items = [(p.decode(*_BYTES), e.decode(*_BYTES) if e is not None else None)
                 for p, e in zip(cols["path"], cols["error"])]
        rows = [row for row, _ in read_photos(self.reader, items, prefetch=1)]
        return pa.table({
            "shard": cols["shard"], "index": cols["index"], "path": cols["path"],
            # ASCII JSON: a file name's bytes that are not UTF-8 travel as \udcXX escapes inside the record
            "record": [json.dumps(photo_record(r)) for r in rows],
            "error": [r.error.encode(*_BYTES) if r.error is not None else None for r in rows],
        }, schema=pa.schema([("shard", pa.int64()), ("index", pa.int64()), ("path", pa.binary()),
                             ("record", pa.string()), ("error", pa.binary())]))


# --- shards -------------------------------------------------------------------------------------------------


def rows_of(table: pa.Table) -> list[Row]:
    """The actor's result rows, sorted by input index, back as `crnn ocr`'s Rows."""
    d = table.sort_by("index").to_pydict()
    out = []
    for i, raw in enumerate(d["path"]):
        path = raw.decode(*_BYTES)
        if d["error"][i] is not None:
            out.append(Row(path, None, d["error"][i].decode(*_BYTES)))
        else:
            out.append(Row(path, Prediction(d["text"][i], d["confidence"][i], tuple(d["char_confidences"][i]),
                                            d["in_lexicon"][i])))
    return out


def _utf8(text: str) -> str:
    # Parquet strings must be UTF-8: a file name's bytes that are not UTF-8 are written as \xNN escapes.
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def shard_bytes(rows: Sequence[Row], fmt: str, lexicon: bool) -> bytes:
    """A shard file's contents: `crnn ocr --format jsonl`'s lines, or the same records as a Parquet table."""
    buf = io.StringIO()
    writer = Writer(buf, "jsonl", lexicon=lexicon)
    for row in rows:
        writer.write(row)
    text = buf.getvalue()
    if fmt == "jsonl":
        return text.encode("utf-8")
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields = [("path", pa.string()), ("text", pa.string()), ("confidence", pa.float64()),
              ("char_confidences", pa.list_(pa.float64())), ("error", pa.string())]
    if lexicon:
        fields.append(("in_lexicon", pa.bool_()))
    recs = [json.loads(line) for line in text.splitlines()]
    for rec in recs:
        rec["path"] = _utf8(rec["path"])
        if rec.get("error") is not None:
            rec["error"] = _utf8(rec["error"])
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(recs, schema=pa.schema(fields)), sink)
    return sink.getvalue().to_pybytes()


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` under a temporary name, then rename it: a reader (or a rerun) never sees half a shard."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_shard(path: Path, fmt: str) -> list[dict[str, Any]]:
    """The records of a finished shard (path, text, confidence, error, ...)."""
    if fmt == "jsonl":  # absent keys as None, so that both formats read to the same records
        recs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        if any("words" in r for r in recs):  # a `--detect` shard: one record per photo
            return [{k: r.get(k) for k in PHOTO_KEYS} for r in recs]
        keys = ["path", "text", "confidence", "char_confidences", "error"]
        keys += ["in_lexicon"] if any("in_lexicon" in r for r in recs) else []
        return [{k: r.get(k) for k in keys} for r in recs]
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def read_results(folder: str | os.PathLike, fmt: str = "parquet") -> list[dict[str, Any]]:
    """Every record of an output folder, in input order (shard by shard)."""
    return [rec for f in sorted(Path(folder).glob(f"part-*.{fmt}")) for rec in read_shard(f, fmt)]


def _read_done_shard(path: Path, fmt: str) -> list[dict[str, Any]]:
    """The records of a shard a resume skips; ShardFolderError naming it when it cannot be read as one."""
    try:
        records = read_shard(path, fmt)
        if any("path" not in r for r in records):
            raise KeyError("no 'path' column")
    except Exception as e:  # whatever the file holds (pyarrow, json, a missing column...), it is no shard we wrote
        why = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0][:160]
        raise ShardFolderError(f"--output {path.parent}: {path.name} is damaged, not a {fmt} shard ({why}); delete it "
                               f"and run the command again to read that shard anew") from None
    return records


def _expected_paths(items: list[tuple[str, str | None]], fmt: str) -> list[str]:
    return [p if fmt == "jsonl" else _utf8(p) for p, _ in items]


# --- the driver ---------------------------------------------------------------------------------------------


def prepare_output(folder: Path, record: RunRecord) -> None:
    """Create the output folder, or check that the run it holds read the same weights, lexicon and options; drop
    stale temporaries. Raises ShardFolderError (one line: what changed, how to start over)."""
    if folder.exists() and not folder.is_dir():
        raise ShardFolderError(f"--output {folder}: is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    run_file = folder / RUN_FILE
    start_over = "start over in a new --output folder (or empty this one)"
    if run_file.exists():
        before = read_run_file(run_file, start_over)
        changes = run_changes(before, record)
        if changes:
            raise ShardFolderError(f"--output {folder}: its shards were read otherwise: {'; '.join(changes)}; resume "
                                   f"as they were read, or {start_over}")
    else:
        write_atomically(run_file, json.dumps(record.to_dict(), indent=1).encode())
    for stale in folder.glob(".part-*.tmp-*"):  # left by a killed run; its shard is redone
        stale.unlink()


def read_run_file(path: Path, start_over: str = "start over in a new --output folder") -> RunRecord:
    """The RunRecord in ``path``; ShardFolderError (naming the file) for one that is damaged or too old to check."""
    where = f"--output {path.parent}: {path.name}"
    try:
        data = json.loads(path.read_bytes())
    except ValueError as e:  # not UTF-8 or not JSON
        raise ShardFolderError(f"{where} is damaged, not a run file ({e}); {start_over}, or delete it to resume if "
                               f"its shards were read with these weights and options") from None
    if isinstance(data, dict) and "version" not in data and "load" in data:
        raise ShardFolderError(f"{where} was written by an older crnn-ocr, which did not record the weights' hash, so "
                               f"its shards cannot be checked against these weights; {start_over}, or delete it "
                               f"to resume if these are the weights that read them")
    try:
        return RunRecord.from_dict(data)
    except ConfigError as e:
        raise ShardFolderError(f"{where} is damaged, not a run file ({e}); {start_over}, or delete it to resume if "
                               f"its shards were read with these weights and options") from None


def _init_ray(address: str | None, show_progress: bool) -> Any:
    import logging

    import ray

    if not ray.is_initialized():
        # Without an address: a local Ray instance on this machine's cores (ray.init's default).
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    if not show_progress:  # the progress bars and Ray Data's log lines about them go together
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = show_progress
    ctx.verbose_progress = False
    return ray


def run_ray(args: argparse.Namespace) -> int:
    """`crnn ocr --ray`: exit 0 when every image was read, 1 when some failed, 2 on usage errors."""
    if not args.output:
        print("crnn ocr: --ray writes shards to a folder: give --output DIR", file=sys.stderr)
        return 2
    if args.ray_actors is not None and args.ray_actors < 1 or args.ray_shard_size < 1:
        print("crnn ocr: --ray-actors and --ray-shard-size must be >= 1", file=sys.stderr)
        return 2
    detect = getattr(args, "detect", False)
    if not detect and getattr(args, "orientation", "none") != "none":
        print("crnn ocr: --orientation auto does not run with --ray yet (docs/scale-out.md)", file=sys.stderr)
        return 2
    try:
        import ray  # noqa: F401  # only to say which extra is missing
    except ModuleNotFoundError:
        print("crnn ocr: --ray needs Ray Data: pip install 'crnn-ocr[ray]'", file=sys.stderr)
        return 2
    try:  # on the driver, once: every actor then loads the same file on the same backend
        from crnn.checkpoints.shipped import photo_model
        from crnn.reading.backend import resolve_backend

        if detect:  # photos: the lines model unless one is chosen (as without --ray)
            args.model = photo_model(args.model, args.weights)
        backend, weights = resolve_backend(args.backend, args.weights, args.precision, args.device, args.model)
        args.backend, args.weights = backend, (None if weights is None else str(weights))
    except CRNNError as e:
        print(f"crnn ocr: {e}", file=sys.stderr)
        return 2
    fmt, folder, options = args.ray_format, Path(args.output), options_from_args(args)
    photo = None
    if detect:  # each actor: a detector and a recognizer on one thread each
        from crnn.commands.photo_ocr import photo_options
        from crnn.detection.registry import load_detector

        photo = photo_options(args, 1, 1)
        try:  # the missing extra or an unknown kind: one line now, not in N actors
            load_detector(photo.detector, threads=1)
        except (CRNNError, ValueError) as e:
            print(f"crnn ocr: {e}", file=sys.stderr)
            return 2
    try:
        from crnn.charset import Charset
        from crnn.checkpoints.header import default_weights_path, read_header
        from crnn.commands.ocr_output import load_lexicon

        # A bad weights file: one line now, not in N actors.
        header = read_header(args.weights or default_weights_path())
        if args.lexicon:  # read here once, to say what it drops (and refuse one that keeps nothing), not by N actors
            load_lexicon(args.lexicon, Charset.from_dict(header["charset"]), args.lexicon_case)
        draw = None
        if detect and getattr(args, "draw", None):
            # The driver draws: it has every photo's path and receives its record (the actors may be on other
            # machines, with no way to hand back a file); a photo it cannot read here is that photo's --draw error.
            from crnn.commands.photo_ocr import DrawFolder
            from crnn.io.preprocess import PreprocessConfig

            draw = Drawer(DrawFolder(args.draw), PreprocessConfig.from_dict(header["preprocess"]).max_pixels)
        # Hashed once, here: a resume must read with the very same weights and lexicon (docs/scale-out.md).
        prepare_output(folder, run_record(options, fmt, args.ray_shard_size, photo))
        # Which shards are still to do (a shard file exists only when complete: written, then renamed); they are
        # kept as Arrow tables of paths (compact, and what Ray Data takes), with their sizes.
        blocks: list[pa.Table] = []
        todo: dict[int, int] = {}
        done = failed_before = 0
        for k, items in enumerate(shards(iter_inputs(args.paths), args.ray_shard_size)):
            final = folder / shard_name(k, fmt)
            if final.exists():
                records = _read_done_shard(final, fmt)
                if [r["path"] for r in records] != _expected_paths(items, fmt):
                    raise ShardFolderError(f"--output {folder}: {final.name} holds other paths than these inputs' "
                                      f"shard {k}; the inputs changed since it was written: use a new folder")
                done += 1
                failed_before += sum(1 for r in records if r.get("error") is not None)
            else:
                blocks += _input_blocks(k, items, _block_rows(args, photo))
                todo[k] = len(items)
    except (CRNNError, OSError) as e:
        print(f"crnn ocr: {e}", file=sys.stderr)
        return 2
    total_shards = done + len(todo)
    if done:
        print(f"crnn ocr: {done} of {total_shards} shards already in {folder}; reading the other {len(todo)}",
              file=sys.stderr)
    if not todo:
        return 1 if failed_before else 0
    show = args.progress or sys.stderr.isatty()
    try:
        failed = _run_shards(args, options, blocks, todo, folder, fmt, show, photo, draw)
    except KeyboardInterrupt:
        print("crnn ocr: interrupted; the shards written so far stand: rerun the same command to finish",
              file=sys.stderr)
        return 130
    except Exception as e:  # a Ray failure (an actor that cannot start, a lost node past its retries): one line
        last = [line for line in str(e).splitlines() if line.strip()][-1:] or [type(e).__name__]
        print(f"crnn ocr: the Ray job failed ({type(e).__name__}: {last[0].strip()}); the shards written so far "
              f"stand: rerun the same command to finish", file=sys.stderr)
        return 1
    bad = failed + failed_before
    print(f"crnn ocr: done: {len(todo)} shard{'s' * (len(todo) != 1)} written to {folder}; {bad} "
          f"image{'s' * (bad != 1)} could not be read", file=sys.stderr)
    return 1 if failed or failed_before else 0


@dataclass
class Drawer:
    """`--detect --ray --draw DIR` on the driver: draws each read photo of a shard from its record."""

    folder: Any  # crnn.commands.photo_ocr.DrawFolder (imported only by a run that draws)
    max_pixels: int

    def __call__(self, records: Sequence[dict[str, Any]]) -> int:
        """Draw each read photo of ``records``; how many could not be drawn (each said on stderr, as without --ray)."""
        failed = 0
        for rec in records:
            if rec.get("error") is not None:
                continue
            try:
                self.folder.write_record(rec, self.max_pixels)
            except (CRNNError, OSError) as e:  # the words stand (in the shard); the drawing is what failed
                failed += 1
                why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                print(f"crnn ocr: error: {_utf8(rec['path'])}: --draw: {_utf8(why)}", file=sys.stderr)
        return failed


def _block_rows(args: argparse.Namespace, photo: PhotoOptions | None) -> int:
    """Inputs per actor call: a few chunks of crops, or PHOTOS_PER_CALL photos."""
    return args.batch_size * ACTOR_CHUNK_BATCHES if photo is None else PHOTOS_PER_CALL


def _input_blocks(k: int, items: list[tuple[str, str | None]], block_rows: int) -> list[pa.Table]:
    """Shard ``k``'s inputs as tables of ``block_rows`` rows (shard, index, path, error): one actor call each."""
    import pyarrow as pa

    schema = pa.schema([("shard", pa.int64()), ("index", pa.int64()), ("path", pa.binary()), ("error", pa.binary())])
    blocks = []
    for start in range(0, len(items), block_rows):
        part = items[start : start + block_rows]
        blocks.append(pa.table({
            "shard": [k] * len(part), "index": list(range(start, start + len(part))),
            "path": [p.encode(*_BYTES) for p, _ in part],
            "error": [e.encode(*_BYTES) if e is not None else None for _, e in part],
        }, schema=schema))
    return blocks


def _run_shards(args: argparse.Namespace, options: OcrOptions, blocks: list[pa.Table], expected: dict[int, int],
                folder: Path, fmt: str, show: bool, photo: PhotoOptions | None = None, draw: Drawer | None = None) -> int:
    """Read the shards still to do on the actor pool (photo actors with ``photo``) and write each one as its last row
    comes back (``draw``: and draw its photos); the errors."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from crnn.commands.photo_output import photo_shard_bytes

    ray = _init_ray(args.ray_address, show)
    on_gpu = args.device.startswith("cuda")
    available = ray.cluster_resources().get("GPU" if on_gpu else "CPU", 1)
    actors = args.ray_actors or max(1, int(available))
    block_rows = _block_rows(args, photo)
    actor: type = OcrActor if photo is None else PhotoActor
    ds = ray.data.from_arrow(blocks).map_batches(
        actor, fn_constructor_kwargs={"options": options if photo is None else photo, "cwd": os.getcwd()},
        batch_size=block_rows,
        batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1,
        num_gpus=1 if on_gpu else 0)
    print(f"crnn ocr: {sum(expected.values())} {'photos' if photo else 'images'} in {len(expected)} shards on {actors} Ray actors "
          f"-> {folder}", file=sys.stderr)
    pending: dict[int, list[pa.Table]] = {}
    failed = 0
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        for k in set(batch.column("shard").to_pylist()):
            part = batch.filter(pc.equal(batch.column("shard"), k))
            pending.setdefault(k, []).append(part)
            if sum(t.num_rows for t in pending[k]) < expected[k]:
                continue
            table = pa.concat_tables(pending.pop(k))
            if photo is not None:
                rows = [Row(p.decode(*_BYTES), None, e.decode(*_BYTES) if e is not None else None)
                        for p, e in zip(*table.sort_by("index").select(["path", "error"]).to_pydict().values())]
                records = [json.loads(r) for r in table.sort_by("index").column("record").to_pylist()]
                write_atomically(folder / shard_name(k, fmt), photo_shard_bytes(records, fmt))
                if draw is not None:
                    failed += draw(records)
            else:
                rows = rows_of(table)
                write_atomically(folder / shard_name(k, fmt), shard_bytes(rows, fmt, options.lexicon is not None))
            for row in rows:
                if row.error is not None:
                    failed += 1
                    msg = row.error if row.error.startswith(row.path) else f"{row.path}: {row.error}"
                    print(f"crnn ocr: error: {_utf8(msg)}", file=sys.stderr)
    return failed
