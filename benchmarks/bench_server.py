"""Load test of `crnn serve`: N concurrent clients for T seconds on loopback, batching on and off.

Starts the server as a subprocess and drives it from this process with a light keep-alive HTTP/1.1
client (raw asyncio streams, so that the load generator costs the shared cores as little as
possible). Every loop is bounded in time and count. Reports requests/s, images/s, p50/p95/p99
latency, errors and lost requests per mode, next to the offline Recognizer throughput at the
same batch size, and checks the targets of docs/server.md.

    python benchmarks/bench_server.py                       # 32 clients, 20 s per mode
    python benchmarks/bench_server.py --clients 8 --duration 10 --weights weights/crnn.safetensors
    python benchmarks/bench_server.py --photos 16 --clients 2  # POST /v1/read: rendered scenes (needs [detect])
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Benchmarks run from a clone: the repository root on the path makes tests/ (its server helpers) importable.
sys.path.insert(0, str(REPO))

WORDS = ("the of and to in is was for on are with they be at one have this from or had by word but what some we "
         "can out other were all there when up use your how said an each she which do their time if will way about "
         "many then them write would like so these her long make thing see him two has look more day could go come "
         "did number sound no most people my over know water than call first who may down side been now find "
         "Recognition CRNN OCR 2024 Hello World! scene-text throughput").split()

BOUNDARY = "crnnbenchboundary"


@dataclass
class Stats:
    """Counters and latencies of one measured run."""

    sent: int = 0
    ok: int = 0
    errors: int = 0
    lost: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)


def render_images(n: int, seed: int = 0) -> list[bytes]:
    """PNG bytes of ``n`` word crops of varied widths (plain rendering, as the tests use)."""
    from PIL import Image

    from tests.word_images import render_word

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(render_word(rng.choice(WORDS), size=rng.choice([20, 22, 24]))).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def render_photos(n: int, seed: int = 0) -> list[bytes]:
    """PNG bytes of ``n`` rendered scenes of 640x480 (crnn_synth_data.scene: words on a photographic background)."""
    from PIL import Image

    from crnn_synth_data.config import SynthConfig
    from crnn_synth_data.scene import SceneRenderer

    renderer = SceneRenderer(SynthConfig(), size=(640, 480))
    out = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(renderer.render(seed, i).image).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def multipart_request(images: list[bytes], port: int, path: str = "/v1/recognize") -> bytes:
    """A complete HTTP/1.1 POST to ``path`` with ``images`` as parts named 'files'."""
    body = b"".join(
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"w{i}.png\"\r\n"
        f"Content-Type: image/png\r\n\r\n".encode() + img + b"\r\n" for i, img in enumerate(images)
    ) + f"--{BOUNDARY}--\r\n".encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: bench_server\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    body = await reader.readexactly(int(match.group(1))) if match else b""
    return status, body


async def client(port: int, requests: list[bytes], stop_at: float, stats: Stats, max_requests: int,
                 timeout: float, n_images: int, seed: int) -> None:
    """One keep-alive connection sending requests back to back until ``stop_at``."""
    rng = random.Random(seed)
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while time.monotonic() < stop_at and stats.sent < max_requests:
        try:
            if conn is None:
                conn = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        except (OSError, asyncio.TimeoutError):
            stats.sent += 1
            stats.lost += 1
            await asyncio.sleep(0.05)
            continue
        reader, writer = conn
        stats.sent += 1
        started = time.perf_counter()
        try:
            writer.write(rng.choice(requests))
            status, body = await asyncio.wait_for(read_response(reader), timeout)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
            stats.lost += 1  # no answer at all: reset, timeout, or a garbled response
            writer.close()
            conn = None
            continue
        latency = time.perf_counter() - started
        stats.statuses[status] = stats.statuses.get(status, 0) + 1
        # A recognize answer has a "text" per image, a read answer a "words" per photo.
        if status == 200 and (body.count(b'"text"') == n_images or body.count(b'"words"') == n_images):
            stats.ok += 1
            stats.latencies.append(latency)
        else:
            stats.errors += 1
    if conn is not None:
        conn[1].close()


async def drive(port: int, requests: list[bytes], clients: int, seconds: float, max_requests: int,
                timeout: float, n_images: int) -> tuple[Stats, float]:
    """Run ``clients`` concurrent clients for ``seconds``; (stats, measured wall seconds)."""
    stats = Stats()
    started = time.monotonic()
    stop_at = started + seconds
    await asyncio.gather(*[client(port, requests, stop_at, stats, max_requests, timeout, n_images, seed=i)
                           for i in range(clients)])
    return stats, time.monotonic() - started


def scrape(url: str) -> dict[str, float]:
    """The batch-size sum and count from /metrics."""
    import urllib.request

    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    out = {}
    for name in ("crnn_batch_size_sum", "crnn_batch_size_count"):
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        out[name] = float(m.group(1)) if m else 0.0
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def offline_throughput(weights: Path, images: list[bytes], batch_size: int, threads: int, seconds: float) -> float:
    """Images/s of Recognizer.recognize on the same PNG bytes (decode + model), in chunks of ``batch_size``."""
    from crnn import Recognizer

    rec = Recognizer(weights, threads=threads)
    rec.recognize(images[:batch_size], batch_size=batch_size)  # warm-up
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for i in range(0, len(images), batch_size):
            chunk = images[i:i + batch_size]
            rec.recognize(chunk, batch_size=batch_size)
            n += len(chunk)
    return n / (time.perf_counter() - started)


def offline_photos(weights: Path, photos: list[bytes], threads: int, seconds: float) -> float:
    """Photos/s of PhotoReader.read on the same PNG bytes (decode + detect + recognize), one photo at a time."""
    from crnn import Recognizer
    from crnn.detection.photo_reader import PhotoReader
    from crnn.detection.registry import load_detector

    reader = PhotoReader(load_detector(threads=threads), Recognizer(weights, threads=threads))
    reader.read(photos[0])  # warm-up
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for photo in photos:
            reader.read(photo)
            n += 1
            if time.perf_counter() - started >= seconds:
                break
    return n / (time.perf_counter() - started)


def run_mode(name: str, weights: Path, server_args: list[str], images: list[bytes], args: argparse.Namespace,
             path: str = "/v1/recognize") -> dict[str, Any]:
    """Start a server with ``server_args``, warm it up, measure, stop it; the row of results."""
    from tests.server_process import ServerProcess

    with ServerProcess(["--weights", str(weights), "--threads", str(args.threads), "--no-access-log",
                        "--max-queue", "4096", *server_args]) as server:
        n = args.images_per_request
        requests = [multipart_request(images[i:i + n], server.port, path) for i in range(0, len(images) - n + 1, n)]
        if args.warmup > 0:
            asyncio.run(drive(server.port, requests, args.clients, args.warmup, args.max_requests, args.timeout, n))
        before = scrape(server.url)
        stats, wall = asyncio.run(drive(server.port, requests, args.clients, args.duration, args.max_requests,
                                        args.timeout, n))
        after = scrape(server.url)
    batches = after["crnn_batch_size_count"] - before["crnn_batch_size_count"]
    lat = stats.latencies
    return {
        "mode": name,
        "server_args": " ".join(server_args),
        "clients": args.clients,
        "seconds": round(wall, 2),
        "requests": stats.sent,
        "ok": stats.ok,
        "errors": stats.errors,
        "lost": stats.lost,
        "statuses": stats.statuses,
        "requests_per_s": round(stats.ok / wall, 1),
        "images_per_s": round(stats.ok * n / wall, 1),
        "p50_ms": round(percentile(lat, 50) * 1000, 1),
        "p95_ms": round(percentile(lat, 95) * 1000, 1),
        "p99_ms": round(percentile(lat, 99) * 1000, 1),
        "mean_ms": round(statistics.fmean(lat) * 1000, 1) if lat else float("nan"),
        "mean_batch": round((after["crnn_batch_size_sum"] - before["crnn_batch_size_sum"]) / batches, 2) if batches else 0,
    }


def main(argv: list[str] | None = None) -> int:
    from crnn.machine import cpu_cores

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", help="checkpoint (default: the shipped weights, else an untrained cpu-small model)")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients (default %(default)s)")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per mode (default %(default)s)")
    p.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each run (default %(default)s)")
    p.add_argument("--max-requests", type=int, default=200_000, help="cap on requests per run (default %(default)s)")
    p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in s; later = lost (default %(default)s)")
    p.add_argument("--images-per-request", type=int, default=1)
    p.add_argument("--threads", type=int, default=max(1, cpu_cores() - 1),
                   help="torch threads of the server and the offline run (default: `crnn serve`'s, cores - 1 = %(default)s)")
    p.add_argument("--max-batch", type=int, default=32, help="server batch size when batching is on (default %(default)s)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="server max wait when batching is on (default %(default)s)")
    p.add_argument("--modes", default="on,off", help="comma-separated: on (batching), off (max-batch 1)")
    p.add_argument("--photos", type=int, default=0, metavar="N",
                   help="instead of the batching modes, POST /v1/read with N rendered scenes of 640x480, one a request, "
                   "beside the offline PhotoReader on the same photos (needs the detect extra)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if args.clients < 1 or not 0 < args.duration <= 600 or args.max_requests < 1:
        p.error("need clients >= 1, 0 < duration <= 600 and max-requests >= 1")

    from crnn.checkpoints.header import default_weights_path
    from tests.tiny_models import tiny_checkpoint

    tmp = tempfile.TemporaryDirectory(prefix="bench-server-")
    weights = Path(args.weights) if args.weights else default_weights_path()
    model_note = str(weights)
    if not weights.exists():
        if args.weights:
            p.error(f"weights file not found: {weights}")
        # Same architecture as configs/cpu-small.yaml, so the timings match the shipped model's.
        weights = tiny_checkpoint(Path(tmp.name) / "untrained.safetensors", hidden_size=128)
        model_note = "untrained small backbone + 2-layer BiLSTM(128) (configs/cpu-small.yaml architecture)"
    if args.photos > 0:
        return photos_mode(weights, model_note, args)
    images = render_images(256)

    offline_s = min(10.0, max(3.0, args.duration / 2))
    offline: dict[int, float] = {}
    print(f"model: {model_note}", flush=True)

    modes = {"on": ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)],
             "off": ["--max-batch", "1", "--max-wait-ms", "0"]}
    rows = []
    for mode in args.modes.split(","):
        bs = args.max_batch if mode == "on" else 1
        # Measured right before its server run: the shared cores' load drifts over minutes.
        offline[bs] = round(offline_throughput(weights, images, bs, args.threads, offline_s), 1)
        print(f"offline Recognizer.recognize (PNG bytes -> text), batch {bs}, {args.threads} threads: "
              f"{offline[bs]} img/s", flush=True)
        row = run_mode(f"batching {mode}", weights, modes[mode], images, args)
        row["offline_images_per_s"] = offline[bs]
        row["vs_offline"] = round(row["images_per_s"] / offline[bs], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)

    print("\n| mode | clients | req/s | img/s | offline img/s (same batch) | ratio | p50 ms | p95 ms | p99 ms | mean batch | errors | lost |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} ({r['server_args']}) | {r['clients']} | {r['requests_per_s']} | {r['images_per_s']} | "
              f"{r['offline_images_per_s']} | {r['vs_offline']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | "
              f"{r['mean_batch']} | {r['errors']} | {r['lost']} |")
    ok = True
    on = next((r for r in rows if r["mode"] == "batching on"), None)
    if on is not None:
        checks = {
            "zero errors": on["errors"] == 0,
            "zero lost requests": on["lost"] == 0,
            "img/s >= 70% of offline at the same batch size": on["vs_offline"] >= 0.7,
            "p99 < 500 ms": on["p99_ms"] < 500,
        }
        off = next((r for r in rows if r["mode"] == "batching off"), None)
        if off is not None:
            checks["batching raises throughput"] = on["images_per_s"] > off["images_per_s"]
        print()
        for name, passed in checks.items():
            print(f"{'PASS' if passed else 'FAIL'}  {name}")
        ok = all(checks.values())
    if args.json:
        Path(args.json).write_text(json.dumps({"model": model_note, "offline": offline, "rows": rows}, indent=2))
    tmp.cleanup()
    return 0 if ok else 1


def photos_mode(weights: Path, model_note: str, args: argparse.Namespace) -> int:
    """POST /v1/read on rendered scenes against the offline PhotoReader; fails on any error or lost request."""
    photos = render_photos(args.photos)
    args.images_per_request = 1
    print(f"model: {model_note}; {len(photos)} rendered scenes of 640x480", flush=True)
    offline = round(offline_photos(weights, photos, args.threads, min(20.0, max(5.0, args.duration / 2))), 2)
    print(f"offline PhotoReader.read (PNG bytes -> words), {args.threads} threads: {offline} photos/s", flush=True)
    # The warm-up builds the server's detector (on its first photo): give it the time.
    args.warmup = max(args.warmup, 10.0)
    row = run_mode("photos", weights, [], photos, args, "/v1/read")
    row["offline_photos_per_s"] = offline
    row["vs_offline"] = round(row["requests_per_s"] / offline, 2) if offline else float("nan")
    print(json.dumps(row), flush=True)
    print("\n| clients | photos/s | offline photos/s | ratio | p50 ms | p95 ms | p99 ms | errors | lost |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {row['clients']} | {row['requests_per_s']} | {offline} | {row['vs_offline']} | {row['p50_ms']} | "
          f"{row['p95_ms']} | {row['p99_ms']} | {row['errors']} | {row['lost']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": model_note, "offline_photos_per_s": offline, "rows": [row]},
                                              indent=2))
    return 0 if row["errors"] == 0 and row["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
