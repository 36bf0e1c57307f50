"""A lexicon flood against a real `crnn serve` on loopback: /healthz latency, statuses and the server's memory.

``--requests`` JSON requests (default 40, all sent at once by fast loopback clients), each with ``--images`` word
crops (default 64) that each carry their own ``--words``-word lexicon (default 10,000 random lower-case words; every
image a different list): about 7.7 MB a request, inside every default limit. Meanwhile a process of its own GETs
/healthz every ``--probe-interval`` seconds and records the latency, during the flood and, for comparison on a shared
host, for ``--idle`` seconds before it; after the flood it goes on for ``--settle`` seconds, to see where memory
settles. The server's peak and final resident memory come from /proc (VmHWM, VmRSS), the CPU model from lscpu, the
host's load from os.getloadavg. With ``--retries`` a client retries a 503 after its Retry-After, as a well-behaved
client does. Everything is bounded: each request has ``--timeout`` seconds, the whole flood ``--max-seconds``; the
script stops the server and exits by itself. Issue 36 (item 5); docs/server.md ("Heavy requests") has the figures:

    python benchmarks/bench_server_lexicon_flood.py                        # this tree, default limits
    python benchmarks/bench_server_lexicon_flood.py --src /tmp/before/src  # another tree (crnn/, crnn_server/)
    python benchmarks/bench_server_lexicon_flood.py --retries 60           # clients retry 503s until served

``--src`` is a folder holding ``crnn`` and ``crnn_server`` (e.g. symlinks into an older checkout), put alone on the
server's PYTHONPATH. Without ``--weights`` a tiny untrained checkpoint is used: the model's cost is not measured here.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import multiprocessing as mp
import os
import random
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.server_process import ServerProcess  # noqa: E402
from tests.tiny_models import tiny_checkpoint  # noqa: E402
from tests.word_images import render_word  # noqa: E402

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def flood_body(images: int, words: int, seed: int = 0, decoder: str | None = None) -> bytes:
    """One flood request: ``images`` copies of a word crop, each with its own list of ``words`` random words."""
    rng = random.Random(seed)
    buf = io.BytesIO()
    Image.fromarray(render_word("hello")).save(buf, "PNG")
    data = base64.b64encode(buf.getvalue()).decode()
    items = [{"name": f"w{i}", "data": data,
              "lexicon": ["".join(rng.choices(LETTERS, k=rng.randint(4, 12))) for _ in range(words)]}
             for i in range(images)]
    body: dict[str, Any] = {"images": items}
    if decoder is not None:
        body["decoder"] = decoder
    return json.dumps(body).encode()


def cpu_model() -> str:
    """The host CPU's model name, as lscpu prints it."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "model name":
            return value.strip()
    return "unknown"


def proc_status_mb(pid: int, field: str) -> float:
    """A memory line of /proc/<pid>/status (VmRSS, VmHWM) in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def probe(url: str, interval: float, flood_t0: Any, flood_done: Any, stop: Any, out: Any) -> None:
    """GET /healthz every ``interval`` seconds until ``stop``; sends back the latencies (ms) of the probes made before
    the flood (``flood_t0``, its wall-clock start, still 0: the idle server, on this host now), those made during it
    with their start times (seconds into the flood), and the failures."""
    idle: list[float] = []
    latencies: list[float] = []
    times: list[float] = []
    errors: list[str] = []
    with httpx.Client(base_url=url, timeout=30) as c:
        while not stop.is_set():
            started, t0, done = time.monotonic(), flood_t0.value, flood_done.is_set()
            try:
                r = c.get("/healthz")
                if r.status_code != 200:
                    errors.append(str(r.status_code))
            except httpx.HTTPError as e:
                errors.append(type(e).__name__)
            ms = (time.monotonic() - started) * 1000
            if not t0:
                idle.append(ms)
            elif not done:
                latencies.append(ms)
                times.append(time.time() - t0)
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    out.send((idle, latencies, times, errors))


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", help="checkpoint (default: a tiny untrained one)")
    p.add_argument("--src", help="folder with crnn/ and crnn_server/ to run the server from (default: this tree)")
    p.add_argument("--serve-args", default="", help="extra `crnn serve` flags, one string")
    p.add_argument("--requests", type=int, default=40, help="flood requests, all sent at once")
    p.add_argument("--images", type=int, default=64, help="images per request")
    p.add_argument("--words", type=int, default=10_000, help="words of each image's lexicon")
    p.add_argument("--decoder", help="the requests' decoder (default: none given, the server's default)")
    p.add_argument("--probe-interval", type=float, default=0.02, help="seconds between /healthz probes")
    p.add_argument("--idle", type=float, default=3.0,
                   help="seconds of probing before the flood: the idle server's latency on this host now")
    p.add_argument("--settle", type=float, default=3.0, help="seconds of probing after the flood")
    p.add_argument("--retries", type=int, default=0,
                   help="times a client retries a 503 after its Retry-After, as a well-behaved client does (default 0)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds each request may take")
    p.add_argument("--max-seconds", type=float, default=240.0, help="the whole flood's limit")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()

    body = flood_body(args.images, args.words, decoder=args.decoder)
    tmp = tempfile.TemporaryDirectory()
    weights = args.weights or str(tiny_checkpoint(Path(tmp.name) / "tiny.safetensors"))
    server = ServerProcess(["--weights", weights, "--threads", "1", "--no-access-log", *shlex.split(args.serve_args)])
    if args.src:
        # PYTHONSAFEPATH: `python -m` would otherwise put the working directory (this tree) first on sys.path.
        server.env.update(PYTHONPATH=args.src, PYTHONSAFEPATH="1")
    server.start()
    assert server.proc is not None
    pid = server.proc.pid
    rss_start = proc_status_mb(pid, "VmRSS")
    statuses: dict[str, int] = {}  # each request's last answer
    attempts: list[str] = []  # every answer, retries included
    lock = threading.Lock()
    deadline = time.monotonic() + args.max_seconds
    go = threading.Barrier(args.requests)

    def flooder() -> None:
        with httpx.Client(base_url=server.url, timeout=min(args.timeout, max(1.0, deadline - time.monotonic()))) as c:
            go.wait()
            for _ in range(args.retries + 1):
                retry_after = None
                try:
                    r = c.post("/v1/recognize", content=body, headers={"Content-Type": "application/json"})
                    key = str(r.status_code) if r.status_code == 200 else f"{r.status_code} {r.json()['error']['code']}"
                    retry_after = r.headers.get("retry-after") if r.status_code == 503 else None
                except httpx.HTTPError as e:
                    key = type(e).__name__
                with lock:
                    attempts.append(key)
                if retry_after is None or time.monotonic() + float(retry_after) >= deadline:
                    break
                time.sleep(float(retry_after))
            with lock:
                statuses[key] = statuses.get(key, 0) + 1

    # The probe runs in a process of its own (forked before the flood's threads start), so that what it measures
    # is the server, not this process's GIL shared with 40 uploading threads.
    ctx = mp.get_context("fork")
    flood_t0, flood_done, stop_probing = ctx.Value("d", 0.0), ctx.Event(), ctx.Event()
    receiver, sender = ctx.Pipe(duplex=False)
    prober = ctx.Process(target=probe, args=(server.url, args.probe_interval, flood_t0, flood_done, stop_probing, sender))
    try:
        prober.start()
        time.sleep(args.idle)
        load = os.getloadavg()[0]
        started = time.monotonic()
        flood_t0.value = time.time()
        flood = [threading.Thread(target=flooder) for _ in range(args.requests)]
        for t in flood:
            t.start()
        for t in flood:
            t.join(max(0.0, deadline - time.monotonic()))
        flood_done.set()
        flood_s = time.monotonic() - started
        time.sleep(args.settle)
        stop_probing.set()
        idle, probes, probe_times, probe_errors = receiver.recv() if receiver.poll(60) else ([], [], [], ["no answer"])
        prober.join(10)
        peak = proc_status_mb(pid, "VmHWM")
        rss_end = proc_status_mb(pid, "VmRSS")
    finally:
        if prober.is_alive():
            prober.kill()
        server.stop()
        tmp.cleanup()
    result = {
        "cpu": cpu_model(), "cores": os.cpu_count(), "load_1min_before": round(load, 2),
        "src": args.src or "this tree", "serve_args": args.serve_args,
        "requests": args.requests, "images": args.images, "words": args.words, "decoder": args.decoder,
        "body_mb": round(len(body) / 1e6, 2), "flood_s": round(flood_s, 1),
        "retries": args.retries, "attempts": len(attempts), "statuses": dict(sorted(statuses.items())),
        "timeouts_408": sum(1 for k in attempts if k.startswith("408")),
        "healthz_idle_p50_ms": percentile(idle, 50), "healthz_idle_p99_ms": percentile(idle, 99),
        "healthz_probes": len(probes), "healthz_errors": len(probe_errors),
        "healthz_p50_ms": percentile(probes, 50), "healthz_p99_ms": percentile(probes, 99),
        "healthz_max_ms": round(max(probes), 1) if probes else None,
        "healthz_slowest": [f"{probes[i]:.1f} ms at {probe_times[i]:.1f} s"  # seconds into the flood
                            for i in sorted(range(len(probes)), key=probes.__getitem__)[-5:]],
        "rss_start_mb": round(rss_start, 1), "peak_rss_mb": round(peak, 1), "rss_after_mb": round(rss_end, 1),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
