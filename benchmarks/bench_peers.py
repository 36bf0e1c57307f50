"""Our reader and its peers (Tesseract, RapidOCR, EasyOCR) side by side on labeled word folders.

    python benchmarks/bench_peers.py [--folders DIR ...] [--limit N] [--readers NAME ...] [--out DIR]
                                     [--chart PNG] [--ocr-args '...']

Every reader, in each of its modes, runs in a process of its own on the same images (the first ``--limit`` lines
of each folder's labels.tsv, default all), so that each one's start-up, model loading and peak memory are its
own. Per reader and folder: word accuracy under the benchmark protocol (crnn.metrics: lowercase, keep 0-9a-z),
images/s of the whole process (start-up included) and of its reading alone (start-up excluded, timed inside),
and the peak RSS of the process (os.wait4: the largest process of its tree that it waited for, so Tesseract's
per-image processes and `crnn ocr`'s decoders count as themselves, not summed).

Readers (``--readers``, default all):
  crnn-ocr        the `crnn ocr` command, whole, paths on stdin, TSV out (``--ocr-args`` adds options)
  crnn-api        crnn.load_recognizer().recognize(paths) in one call (the library batches: 64 per batch)
  crnn-api-single crnn.load_recognizer().recognize(path), one call per image
  tesseract       pytesseract.image_to_string(image, config='--psm 8 --oem 1'), one call (one tesseract process)
                  per image: psm 8 is "treat the image as a single word", oem 1 the LSTM engine only
  tesseract-list  the tesseract command on a list file of images (its documented multi-image input: one process
                  reads many images, no start-up per image), same psm/oem, one such process per core
  rapidocr        RapidOCR()(image, use_det=False, use_cls=False, use_rec=True): recognition only, one crop a call
  rapidocr-batch  RapidOCR's recognizer on a list of crops, engine.text_rec(crops): its own batching
                  (Rec.rec_batch_num, 6 by default), recognition only
  easyocr         easyocr.Reader(['en'], gpu=False, download_enabled=False).recognize(gray), one crop a call;
                  EasyOCR downloads its models from the internet on first use, so without them it is skipped

A peer that is not installed (or cannot start, e.g. EasyOCR without its models) is reported as skipped with
the reason; the run goes on and exits 0. Peers install only through the optional step in docs/benchmarks.md
(``pip install -r benchmarks/requirements-peers.txt`` and ``apt-get install tesseract-ocr``).

Writes ``--out``/peers.json and peers.md (default benchmarks/results/) and prints the markdown table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# The shared benchmarks sit beside the clone (../shared/benchmarks), as in the README's commands.
DEFAULT_FOLDERS = [REPO.parent / "shared" / "benchmarks" / name for name in ("IIIT5K", "SVT")]
TESSERACT_CONFIG = "--psm 8 --oem 1"
# A worker that could not start its reader (a missing package, missing models) exits with this status and
# writes the reason to its result file: the reader is reported as skipped, not as failed.
SKIPPED = 3


@dataclass(frozen=True)
class Reader:
    """One way of reading: its name, the peer it belongs to, what it needs installed and what the mode is."""

    name: str
    peer: str
    modules: tuple[str, ...]  # Python modules it imports
    programs: tuple[str, ...]  # programs it runs
    mode: str


READERS = [
    Reader("crnn-ocr", "crnn", ("crnn",), (), "`crnn ocr` command, whole (start-up included), paths on stdin"),
    Reader("crnn-api", "crnn", ("crnn",), (), "Python API, recognize(all paths) in one call (batches of 64)"),
    Reader("crnn-api-single", "crnn", ("crnn",), (), "Python API, recognize(path), one call per image"),
    Reader("tesseract", "tesseract", ("pytesseract",), ("tesseract",),
           f"pytesseract.image_to_string, one call per image, {TESSERACT_CONFIG}"),
    Reader("tesseract-list", "tesseract", (), ("tesseract",),
           f"tesseract CLI on a list file (many images per process), one process per core, {TESSERACT_CONFIG}"),
    Reader("rapidocr", "rapidocr", ("rapidocr_onnxruntime",), (),
           "RapidOCR, recognition only (use_det=False, use_cls=False), one crop a call"),
    Reader("rapidocr-batch", "rapidocr", ("rapidocr_onnxruntime",), (),
           "RapidOCR's recognizer on a list of crops (its own batching, rec_batch_num 6)"),
    Reader("easyocr", "easyocr", ("easyocr",), (), "EasyOCR Reader.recognize, one crop a call, no download"),
]
BY_NAME = {r.name: r for r in READERS}


@dataclass
class Row:
    """One reader on one folder: what it read and how fast, or why it was skipped."""

    reader: str
    folder: str
    mode: str
    images: int = 0
    accuracy: float | None = None  # protocol word accuracy, 0-1
    correct: int = 0
    seconds: float | None = None  # wall time of the whole process
    images_per_s: float | None = None  # whole process, start-up included
    reading_images_per_s: float | None = None  # reading only, timed inside the process
    startup_s: float | None = None  # import + model load, timed inside the process
    peak_rss_mb: float | None = None
    skipped: str | None = None
    errors: int = 0  # images the reader failed on (counted as wrong)
    extra: dict[str, Any] = field(default_factory=dict)


def missing(reader: Reader) -> str | None:
    """Why ``reader`` cannot run here (a module or program not installed), or None."""
    for module in reader.modules:
        if importlib.util.find_spec(module) is None:
            return f"Python module {module!r} not installed (see docs/benchmarks.md: optional peers install)"
    for program in reader.programs:
        if shutil.which(program) is None:
            return f"program {program!r} not on PATH (see docs/benchmarks.md: apt-get install tesseract-ocr)"
    return None


def select(folder: Path, limit: int | None) -> list[tuple[str, str]]:
    """The (relative path, text) items of ``folder``'s labels.tsv, in file order, the first ``limit``."""
    from crnn.io.labeled_folder import LabeledFolder

    items = LabeledFolder.read(folder).items
    return items[:limit] if limit else items


# ---------------------------------------------------------------------------------------------------------------
# Workers: each runs in its own process (python bench_peers.py --worker NAME LIST OUT), reads the images named in
# LIST (absolute paths, one a line) and writes {"texts": [...], "startup_s": s, "reading_s": s, "versions": {}}.


def _read_crnn_api(paths: list[str], single: bool) -> tuple[list[str], dict[str, str]]:
    start = time.perf_counter()
    import crnn

    rec = crnn.load_recognizer()
    _mark_startup(start)
    if single:
        texts = [_text_or_empty(rec.recognize(p, errors="return")[0]) for p in paths]
    else:
        texts = [_text_or_empty(r) for r in rec.recognize(paths, errors="return")]
    return texts, {}


def _text_or_empty(result: Any) -> str:
    # A FailedImage has text "" and an error: it counts as wrong, and is counted.
    if getattr(result, "error", None) is not None:
        _ERRORS.append(str(result.error))
    return result.text


def _read_tesseract(paths: list[str]) -> tuple[list[str], dict[str, str]]:
    start = time.perf_counter()
    import pytesseract
    from PIL import Image

    version = str(pytesseract.get_tesseract_version())
    _mark_startup(start)
    texts = []
    for p in paths:
        with Image.open(p) as img:
            texts.append(pytesseract.image_to_string(img, config=TESSERACT_CONFIG).strip())
    return texts, {"tesseract": version, "pytesseract": metadata.version("pytesseract")}


def _read_tesseract_list(paths: list[str]) -> tuple[list[str], dict[str, str]]:
    from crnn.machine import cpu_cores

    # No start-up of its own to time: every tesseract process loads its model as it starts reading.
    jobs = max(1, min(cpu_cores(), len(paths)))
    shards = [paths[i::jobs] for i in range(jobs)]
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for i, shard in enumerate(shards):
            listing = Path(tmp) / f"list{i}.txt"
            listing.write_text("".join(p + "\n" for p in shard), encoding="utf-8")
            # stdout as output base: one text page per image, pages separated by form feeds.
            procs.append(subprocess.Popen(["tesseract", str(listing), "stdout", *TESSERACT_CONFIG.split()],
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
        outputs = [p.communicate()[0].decode("utf-8", errors="replace") for p in procs]
    texts: list[str] = [""] * len(paths)
    for i, (shard, out) in enumerate(zip(shards, outputs)):
        pages = out.split("\f")
        if len(pages) < len(shard):
            raise RuntimeError(f"tesseract returned {len(pages)} pages for {len(shard)} images")
        for j, page in enumerate(pages[: len(shard)]):
            texts[i + j * jobs] = page.strip()
    version = subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return texts, {"tesseract": version.split()[-1]}


def _read_rapidocr(paths: list[str], batch: bool) -> tuple[list[str], dict[str, str]]:
    start = time.perf_counter()
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR()
    _mark_startup(start)
    texts = []
    if batch:
        # The recognizer sorts the crops by aspect ratio and runs them rec_batch_num at a time.
        crops = [engine.load_img(p) for p in paths]  # as a single call reads them: BGR, 3 channels
        results, _ = engine.text_rec(crops)
        texts = [text for text, _score in results]
    else:
        for p in paths:
            result, _ = engine(p, use_det=False, use_cls=False, use_rec=True)
            texts.append(result[0][0] if result else "")
    import onnxruntime

    return texts, {"rapidocr-onnxruntime": metadata.version("rapidocr-onnxruntime"),
                   "onnxruntime": onnxruntime.__version__}


def _read_easyocr(paths: list[str]) -> tuple[list[str], dict[str, str]]:
    start = time.perf_counter()
    import cv2
    import easyocr

    try:
        reader = easyocr.Reader(["en"], gpu=False, download_enabled=False, verbose=False)
    except Exception as e:  # noqa: BLE001 - EasyOCR raises plain exceptions for missing models
        raise _Skip(f"EasyOCR cannot start offline: {e}") from e
    _mark_startup(start)
    texts = []
    for p in paths:
        result = reader.recognize(cv2.imread(p, cv2.IMREAD_GRAYSCALE), detail=0)
        texts.append(" ".join(result))
    return texts, {"easyocr": metadata.version("easyocr")}


class _Skip(Exception):
    """The worker's reader cannot run here; the message says why."""


_STARTUP: list[float] = []
_ERRORS: list[str] = []


def _mark_startup(start: float) -> None:
    _STARTUP.append(time.perf_counter() - start)


WORKERS: dict[str, Callable[[list[str]], tuple[list[str], dict[str, str]]]] = {
    "crnn-api": lambda paths: _read_crnn_api(paths, single=False),
    "crnn-api-single": lambda paths: _read_crnn_api(paths, single=True),
    "tesseract": _read_tesseract,
    "tesseract-list": _read_tesseract_list,
    "rapidocr": lambda paths: _read_rapidocr(paths, batch=False),
    "rapidocr-batch": lambda paths: _read_rapidocr(paths, batch=True),
    "easyocr": _read_easyocr,
}


def worker(name: str, listing: Path, out: Path) -> int:
    """Read the images listed in ``listing`` with reader ``name``; write texts and timings to ``out``."""
    paths = listing.read_text(encoding="utf-8").splitlines()
    start = time.perf_counter()
    try:
        texts, versions = WORKERS[name](paths)
    except (ImportError, _Skip) as e:
        out.write_text(json.dumps({"skipped": f"{type(e).__name__}: {e}"}), encoding="utf-8")
        return SKIPPED
    total = time.perf_counter() - start
    startup = _STARTUP[0] if _STARTUP else None
    out.write_text(json.dumps({"texts": texts, "startup_s": startup, "reading_s": total - (startup or 0.0),
                               "errors": _ERRORS, "versions": versions}), encoding="utf-8")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# The parent: one process per (reader, folder), timed and measured from outside.


def run_measured(cmd: list[str], stdin: bytes | None = None) -> tuple[int, float, float, bytes, bytes]:
    """(exit status, seconds, peak RSS in MB, stdout, stderr) of ``cmd``; RSS from wait4 (its largest process)."""
    import threading

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    chunks: dict[str, bytes] = {}

    def drain(name: str, stream: Any) -> None:
        chunks[name] = stream.read()

    threads = [threading.Thread(target=drain, args=(n, s)) for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for t in threads:
        t.start()
    if stdin is not None:
        proc.stdin.write(stdin)  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not try to reap it again
    for t in threads:
        t.join()
    return proc.returncode, seconds, usage.ru_maxrss / 1024, chunks["out"], chunks["err"]


def crnn_versions() -> dict[str, str]:
    """Versions of our reader's pieces, read without importing torch into this process."""
    out = {"crnn-ocr": metadata.version("crnn-ocr")}
    for dist in ("torch", "onnxruntime"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def run_crnn_ocr(paths: list[str], ocr_args: list[str], startup_s: float | None) -> tuple[list[str], Row]:
    """`crnn ocr` over ``paths`` (on stdin, JSONL out): texts in order and a Row with its timings."""
    cmd = [sys.executable, "-m", "crnn.cli", "ocr", "-", "--format", "jsonl", *ocr_args]
    status, seconds, rss, out, err = run_measured(cmd, "".join(p + "\n" for p in paths).encode())
    if status not in (0, 1):
        raise SystemExit(f"crnn ocr failed ({status}): {shlex.join(cmd)}\n{err.decode(errors='replace')}")
    by_path: dict[str, dict[str, Any]] = {}
    for line in out.decode("utf-8").splitlines():
        record = json.loads(line)
        by_path[record["path"]] = record
    texts = [by_path[p]["text"] for p in paths]
    row = Row("crnn-ocr", "", BY_NAME["crnn-ocr"].mode, seconds=seconds, peak_rss_mb=rss,
              errors=sum(1 for p in paths if by_path[p].get("error")), startup_s=startup_s,
              extra={"command": shlex.join(["crnn", "ocr", "-", "--format", "jsonl", *ocr_args])})
    if startup_s is not None and seconds > startup_s:
        row.reading_images_per_s = len(paths) / (seconds - startup_s)
    return texts, row


def run_worker(name: str, paths: list[str], tmp: Path) -> tuple[list[str] | None, Row, dict[str, str]]:
    """Reader ``name`` over ``paths`` in a worker process: texts (None when skipped), a Row, versions."""
    listing, result = tmp / f"{name}.list", tmp / f"{name}.json"
    listing.write_text("".join(p + "\n" for p in paths), encoding="utf-8")
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, str(listing), str(result)]
    status, seconds, rss, _out, err = run_measured(cmd)
    row = Row(name, "", BY_NAME[name].mode, seconds=seconds, peak_rss_mb=rss)
    data = json.loads(result.read_text(encoding="utf-8")) if result.is_file() else {}
    if status == SKIPPED:
        row.skipped = data.get("skipped", "could not start")
        return None, row, {}
    if status != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        row.skipped = f"failed (exit {status}): {tail[0]}"
        return None, row, {}
    row.startup_s = data["startup_s"]
    row.errors = len(data["errors"])
    if data["reading_s"] > 0:
        row.reading_images_per_s = len(paths) / data["reading_s"]
    return data["texts"], row, data["versions"]


def measure_startup(ocr_args: list[str], image: Path) -> float:
    """Seconds of `crnn ocr` on one image (start-up: imports, model loading), the best of two."""
    return min(run_crnn_ocr([str(image)], ocr_args, None)[1].seconds or 0.0 for _ in range(2))


def compare(folders: Sequence[Path], readers: Sequence[str], limit: int | None, ocr_args: list[str],
            measure_ocr_startup: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every reader on every folder; the report: rows, versions, machine, commands."""
    from crnn.machine import cpu_cores
    from crnn.metrics import normalize_protocol

    rows: list[Row] = []
    versions: dict[str, dict[str, str]] = {}
    selections = {folder: select(folder, limit) for folder in folders}
    startup = None
    if "crnn-ocr" in readers and measure_ocr_startup:
        first = next(iter(selections.items()))
        startup = measure_startup(ocr_args, first[0] / first[1][0][0])
        log(f"crnn ocr start-up (one image): {startup:.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        for name in readers:
            reader = BY_NAME[name]
            reason = missing(reader)
            if reason is not None:
                log(f"{name}: skipped: {reason}")
                rows.append(Row(name, "*", reader.mode, skipped=reason))
                continue
            for folder, items in selections.items():
                paths = [str((folder / rel).resolve()) for rel, _ in items]
                if name == "crnn-ocr":
                    texts, row = run_crnn_ocr(paths, ocr_args, startup)
                    found = crnn_versions()
                else:
                    texts, row, found = run_worker(name, paths, Path(tmp))
                row.folder = folder.name
                if texts is None:
                    log(f"{name}: skipped: {row.skipped}")
                    row.folder = "*"
                    rows.append(row)
                    break  # a reader that cannot start on one folder cannot on the next
                if name.startswith("crnn"):
                    found = crnn_versions()
                versions[reader.peer] = found
                row.images = len(items)
                row.correct = sum(normalize_protocol(t) == normalize_protocol(truth)
                                  for t, (_, truth) in zip(texts, items))
                row.accuracy = row.correct / len(items) if items else 0.0
                row.images_per_s = len(items) / row.seconds if row.seconds else None
                rows.append(row)
                log(f"{name} on {folder.name}: {100 * row.accuracy:.2f}% ({row.correct}/{row.images}), "
                    f"{row.images_per_s:.1f} images/s whole process, peak RSS {row.peak_rss_mb:.0f} MB")
    return {
        "rows": [asdict(r) for r in rows],
        "versions": versions,
        "machine": {"cpu_cores": cpu_cores(), "processor": _processor(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "limit": limit,
        "folders": [str(f) for f in folders],
        "ocr_args": ocr_args,
        "tesseract_config": TESSERACT_CONFIG,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _processor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(report: dict[str, Any]) -> str:
    """The report as a markdown table, one line per reader and folder, then the skipped readers."""
    lines = ["| reader | mode | folder | images | word accuracy | images/s (whole process) | "
             "images/s (reading only) | start-up s | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    skipped = []
    for r in report["rows"]:
        if r["skipped"]:
            skipped.append(f"- {r['reader']}: skipped: {r['skipped']}")
            continue
        acc = f"{100 * r['accuracy']:.2f}%" if r["accuracy"] is not None else "-"
        lines.append(f"| {r['reader']} | {r['mode']} | {r['folder']} | {r['images']} | {acc} | "
                     f"{_fmt(r['images_per_s'], '.1f')} | {_fmt(r['reading_images_per_s'], '.1f')} | "
                     f"{_fmt(r['startup_s'], '.2f')} | {_fmt(r['peak_rss_mb'], '.0f')} |")
    flat = {k: v for peer in report["versions"].values() for k, v in peer.items()}
    versions = ", ".join(f"{k} {v}" for k, v in flat.items())
    out = "\n".join(lines) + "\n"
    if skipped:
        out += "\n" + "\n".join(skipped) + "\n"
    out += f"\nVersions: {versions or '-'}. Machine: {report['machine']['cpu_cores']} cores, " \
           f"{report['machine']['processor']}, Python {report['machine']['python']}. {report['date']}.\n"
    return out


def merge(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several runs' reports as one (a later run's row replaces an earlier one of the same reader and folder)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    versions: dict[str, dict[str, str]] = {}
    for report in reports:
        for row in report["rows"]:
            rows[(row["reader"], row["folder"])] = row
        versions.update(report["versions"])
    order = {name: i for i, name in enumerate(BY_NAME)}
    merged = dict(reports[-1])
    merged["rows"] = sorted(rows.values(), key=lambda r: (order.get(r["reader"], len(order)), r["folder"]))
    merged["versions"] = versions
    merged["folders"] = list(dict.fromkeys(f for r in reports for f in r["folders"]))
    merged["commands"] = [r.get("command", "") for r in reports]
    return merged


def chart(report: dict[str, Any], path: Path) -> None:
    """A small PNG: word accuracy and images/s (whole process) per reader, one bar group per folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["rows"] if not r["skipped"]]
    folders = list(dict.fromkeys(r["folder"] for r in rows))
    names = list(dict.fromkeys(r["reader"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=100)
    width = 0.8 / max(len(folders), 1)
    for k, folder in enumerate(folders):
        by_name = {r["reader"]: r for r in rows if r["folder"] == folder}
        xs = [i + (k - (len(folders) - 1) / 2) * width for i in range(len(names))]
        axes[0].bar(xs, [100 * (by_name[n]["accuracy"] or 0) if n in by_name else 0 for n in names], width,
                    label=folder)
        axes[1].bar(xs, [by_name[n]["images_per_s"] or 0 if n in by_name else 0 for n in names], width, label=folder)
    axes[0].set_ylabel("word accuracy (%)")
    axes[1].set_ylabel("images/s, whole process")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Compare the readers; print the table, write peers.json and peers.md (and a chart with --chart)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--worker", nargs=3, metavar=("READER", "LIST", "OUT"), help=argparse.SUPPRESS)
    p.add_argument("--folders", nargs="+", type=Path, default=DEFAULT_FOLDERS,
                   help="labeled folders (labels.tsv beside the images); default ../shared/benchmarks/IIIT5K and SVT")
    p.add_argument("--limit", type=int, help="read only the first N images of each folder (a quick run)")
    p.add_argument("--readers", nargs="+", choices=list(BY_NAME), default=list(BY_NAME), metavar="READER",
                   help=f"which readers (default all: {' '.join(BY_NAME)})")
    p.add_argument("--ocr-args", default="", help="extra options for `crnn ocr`, one string (e.g. '--precision fp32')")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results",
                   help="folder for peers.json and peers.md (default benchmarks/results)")
    p.add_argument("--no-startup", action="store_true",
                   help="skip timing `crnn ocr` on one image (its start-up; no 'reading only' rate for crnn-ocr)")
    p.add_argument("--merge", nargs="+", type=Path, metavar="JSON",
                   help="combine earlier runs' peers.json files (e.g. one reader rerun) instead of running readers")
    p.add_argument("--chart", type=Path, help="also draw a PNG chart (matplotlib) here")
    args = p.parse_args(argv)
    if args.worker:
        name, listing, out = args.worker
        return worker(name, Path(listing), Path(out))
    command = shlex.join(["python", "benchmarks/bench_peers.py", *(argv if argv is not None else sys.argv[1:])])
    if args.merge:
        report = merge([json.loads(f.read_text(encoding="utf-8")) for f in args.merge])
    else:
        for folder in args.folders:
            if not (folder / "labels.tsv").is_file():
                p.error(f"{folder}: not a labeled folder (no labels.tsv)")
        report = compare(args.folders, args.readers, args.limit, shlex.split(args.ocr_args),
                         measure_ocr_startup=not args.no_startup, log=lambda m: print(m, file=sys.stderr, flush=True))
    report["command"] = command
    table = markdown(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "peers.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (args.out / "peers.md").write_text(table, encoding="utf-8")
    if args.chart:
        chart(report, args.chart)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
