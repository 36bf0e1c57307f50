"""Full-photo OCR speed: `crnn ocr --detect`'s pipeline (PP-OCRv6 small's detector, our recognizer, the CTC word split)
beside rapidocr 3.10.0's own pipeline (the same detector, its angle classifier and PP-OCRv6 small's recognizer), on the
same photos: photos/s and words/s on the same threads, each pipeline in a process of its own, rounds alternating.

    python benchmarks/bench_photos.py FOLDER [FOLDER ...] [--limit N] [--threads 2] [--rounds 1] [--json OUT]
        [--rapidocr-python /work/venvs/rapidocr3/bin/python]

FOLDER: a folder of photos (recursive) or a photo folder with annotations.jsonl (its photos in its order; e.g.
../shared/realtrain/SVT_train_full, or `crnn synth --scenes`). Each worker loads its models and reads the first photo
once before the clock (start-up, reported apart). Words: ours are PhotoReading.words; rapidocr's are its line texts
split at spaces (it returns lines). rapidocr runs with its pipeline's defaults (config.yaml of 3.10.0) and the
threads given (EngineConfig.onnxruntime.intra_op_num_threads), network blocked (benchmarks/peer_worker.py's audit
hook: a model download would fail, not be timed). Ours: the detector on --threads ONNX Runtime threads and the
recognizer on one, as `crnn ocr --detect` runs them. Speed depends on the machine and its load: both are printed.
Standard library only at import time (the rapidocr worker may run in another venv).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
PIPELINES = ("crnn", "rapidocr")


def photos_of(folder: Path, limit: int | None) -> list[Path]:
    """A folder's photos: those of its annotations.jsonl in order, else every image file under it, sorted."""
    ann = folder / "annotations.jsonl"
    if ann.is_file():
        paths = [folder / json.loads(line)["image"] for line in ann.read_text().splitlines() if line.strip()]
    else:
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
    return paths[:limit]


def _crnn_worker(paths: list[str], threads: int) -> dict:
    from crnn.detection.registry import load_detector
    from crnn.detection.photo_reader import PhotoReader
    from crnn.kinds.loading import load_recognizer

    t0 = time.perf_counter()
    # backend "auto", as `crnn ocr --detect`: ONNX Runtime where installed (the detect extra installs it)
    reader = PhotoReader(load_detector(threads=threads), load_recognizer(threads=1, backend="auto"))
    reader.read(paths[0])
    startup = time.perf_counter() - t0
    lines = words = 0
    t0 = time.perf_counter()
    for p in paths:
        r = reader.read(p)
        lines += len(r.lines)
        words += len(r.words)
    return {"startup_s": startup, "seconds": time.perf_counter() - t0, "lines": lines, "words": words,
            "decoder": reader.decoder, "recognizer_backend": type(reader.recognizer).__name__}


def _rapidocr_worker(paths: list[str], threads: int) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from peer_worker import block_network  # noqa: E402  (stdlib only)

    block_network()
    from importlib import metadata

    from rapidocr import RapidOCR

    t0 = time.perf_counter()
    engine = RapidOCR(params={"Global.log_level": "warning", "EngineConfig.onnxruntime.intra_op_num_threads": threads})
    engine(paths[0])
    startup = time.perf_counter() - t0
    lines = words = 0
    t0 = time.perf_counter()
    for p in paths:
        out = engine(p)
        texts = list(out.txts or ())
        lines += len(texts)
        words += sum(len(t.split()) for t in texts)
    return {"startup_s": startup, "seconds": time.perf_counter() - t0, "lines": lines, "words": words,
            "rapidocr": metadata.version("rapidocr")}


def run_worker(pipeline: str, python: str, listing: Path, threads: int) -> dict:
    """One pipeline over the photos in ``listing`` in a fresh process; its JSON result, with the load around it."""
    load_before = os.getloadavg()[0]
    cmd = [python, __file__, "--worker", pipeline, str(listing), "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{pipeline} worker failed:\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return result


def cpu_model() -> str:
    """The CPU's model name (lscpu's 'Model name', from /proc/cpuinfo)."""
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--limit", type=int, help="first N photos of each folder")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads of each pipeline (default 2)")
    p.add_argument("--rounds", type=int, default=1, help="alternating rounds per pipeline and folder (median kept)")
    p.add_argument("--rapidocr-python", default=sys.executable,
                   help="python of a venv with rapidocr==3.10.0 (default: this one, where the detect extra has it)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--worker", choices=PIPELINES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:  # a child: folders[0] is the listing
        paths = args.folders[0].read_text().splitlines()
        fn = _crnn_worker if args.worker == "crnn" else _rapidocr_worker
        print(json.dumps(fn(paths, args.threads)))
        return 0
    pythons = {"crnn": sys.executable, "rapidocr": args.rapidocr_python}
    results = []
    print(f"{'folder':<24} {'pipeline':<9} {'photos':>6} {'lines':>6} {'words':>6} {'photos/s':>9} {'words/s':>8} "
          f"{'start s':>7} {'load':>11}")
    for folder in args.folders:
        paths = photos_of(folder, args.limit)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("\n".join(str(x.resolve()) for x in paths))
            listing = Path(f.name)
        runs: dict[str, list[dict]] = {k: [] for k in PIPELINES}
        try:
            for _ in range(args.rounds):
                for pipeline in PIPELINES:
                    runs[pipeline].append(run_worker(pipeline, pythons[pipeline], listing, args.threads))
        finally:
            listing.unlink()
        for pipeline, rs in runs.items():
            seconds = statistics.median(r["seconds"] for r in rs)
            r = rs[0]
            row = {"folder": str(folder), "pipeline": pipeline, "photos": len(paths), "lines": r["lines"],
                   "words": r["words"], "seconds": round(seconds, 2), "photos_per_s": round(len(paths) / seconds, 2),
                   "words_per_s": round(r["words"] / seconds, 1),
                   "startup_s": round(statistics.median(x["startup_s"] for x in rs), 2),
                   "load": [x["load"] for x in rs], "runs_s": [round(x["seconds"], 2) for x in rs],
                   **{k: v for k, v in r.items() if k in ("decoder", "recognizer_backend", "rapidocr")}}
            results.append(row)
            load = f"{min(min(x) for x in row['load']):.1f}-{max(max(x) for x in row['load']):.1f}"
            print(f"{folder.name:<24} {pipeline:<9} {row['photos']:>6} {row['lines']:>6} {row['words']:>6} "
                  f"{row['photos_per_s']:>9.2f} {row['words_per_s']:>8.1f} {row['startup_s']:>7.1f} {load:>11}",
                  flush=True)
    cpu = cpu_model()
    print(f"\nCPU: {cpu} ({os.cpu_count()} cores seen); {args.threads} threads per pipeline; load average (1 min) "
          f"before-after each run in the last column", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu, "threads": args.threads, "rounds": args.rounds,
                                         "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
