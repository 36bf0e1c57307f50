"""A decoding flood against a real `crnn serve`: peak server RSS and a well-behaved client's latency.

Flood clients keep posting requests of large, cheap-to-send 16-bit PNGs (a 4000x4000 one is ~40 KB on the
wire and 16 M pixels to decode), while one well-behaved client posts a single word crop every 0.2 s and
records its status and latency. At the end the server's peak RSS (VmHWM) is read from /proc. Used for
docs/server.md ("Bounded decoding"), before and after issue 16's decode bounds:

    python benchmarks/bench_decode_flood.py                                  # this tree, default limits
    python benchmarks/bench_decode_flood.py --serve-args "--max-pixels 16000000"   # the old per-image limit
    python benchmarks/bench_decode_flood.py --src /tmp/before/src            # another tree (crnn/, crnn_server/)

``--src`` is a folder holding ``crnn`` and ``crnn_server`` (e.g. symlinks into an older checkout), put alone on
the server's PYTHONPATH. Without ``--weights`` a tiny untrained checkpoint is used: the model's cost is not
what is measured here.
"""

from __future__ import annotations

import argparse
import io
import json
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.server_process import ServerProcess  # noqa: E402
from tests.tiny_models import tiny_checkpoint  # noqa: E402
from tests.word_images import render_word  # noqa: E402


def big_png(side: int) -> bytes:
    """A 16-bit grayscale PNG of side x side pixels: a faint gradient, so it compresses to a few KB."""
    arr = (np.add.outer(np.arange(side), np.arange(side)) % 7).astype(np.uint16) * 3
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", compress_level=9)
    return buf.getvalue()


def vm_hwm_mb(pid: int) -> float:
    """Peak resident memory of a process in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", help="checkpoint (default: a tiny untrained one)")
    p.add_argument("--src", help="folder with crnn/ and crnn_server/ to run the server from (default: this tree)")
    p.add_argument("--serve-args", default="", help="extra `crnn serve` flags, one string")
    p.add_argument("--flood-clients", type=int, default=4)
    p.add_argument("--images", type=int, default=4, help="big images per flood request")
    p.add_argument("--side", type=int, default=4000, help="side of the big PNGs in pixels")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of flood")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()

    tmp = tempfile.TemporaryDirectory()
    weights = args.weights or str(tiny_checkpoint(Path(tmp.name) / "tiny.safetensors"))
    big = big_png(args.side)
    word = io.BytesIO()
    Image.fromarray(render_word("hello")).save(word, "PNG")
    server = ServerProcess(["--weights", weights, "--threads", "1", "--no-access-log", *shlex.split(args.serve_args)])
    if args.src:
        server.env["PYTHONPATH"] = args.src
    server.start()
    stop = time.monotonic() + args.duration
    flood: dict[int, int] = {}
    probes: list[tuple[int, float]] = []
    lock = threading.Lock()

    def flooder() -> None:
        parts = [("files", (f"big{i}.png", big, "image/png")) for i in range(args.images)]
        with httpx.Client(base_url=server.url, timeout=300) as c:
            while time.monotonic() < stop:
                try:
                    status = c.post("/v1/recognize", files=parts).status_code
                except httpx.HTTPError:
                    status = -1
                with lock:
                    flood[status] = flood.get(status, 0) + 1

    def prober() -> None:
        with httpx.Client(base_url=server.url, timeout=300) as c:
            while time.monotonic() < stop:
                started = time.monotonic()
                try:
                    status = c.post("/v1/recognize", files=[("files", ("w.png", word.getvalue(), "image/png"))]).status_code
                except httpx.HTTPError:
                    status = -1
                probes.append((status, time.monotonic() - started))
                time.sleep(max(0.0, 0.2 - (time.monotonic() - started)))

    try:
        threads = [threading.Thread(target=flooder) for _ in range(args.flood_clients)] + [threading.Thread(target=prober)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert server.proc is not None
        peak = vm_hwm_mb(server.proc.pid)
    finally:
        server.stop()
        tmp.cleanup()
    lat = np.array([s for _, s in probes]) * 1000
    codes: dict[int, int] = {}
    for status, _ in probes:
        codes[status] = codes.get(status, 0) + 1
    result = {
        "serve_args": args.serve_args, "src": args.src or "this tree", "flood_clients": args.flood_clients,
        "images": args.images, "side": args.side, "png_bytes": len(big), "duration_s": args.duration,
        "peak_rss_mb": round(peak, 1), "flood_statuses": flood, "probe_statuses": codes, "probes": len(probes),
        "probe_p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
        "probe_p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
        "probe_max_ms": round(float(lat.max()), 1) if len(lat) else None,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
