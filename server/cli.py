"""`crnn serve`: run the REST API with uvicorn (the model loads once per worker process at start-up)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from crnn.checkpoints.header import read_header
from crnn.checkpoints.shipped import model_help
from crnn.errors import BackendError, CheckpointError, ConfigError
from crnn.machine import cpu_cores
from crnn_server.settings import ENV_API_KEY, ENV_CORS_ORIGINS, ENV_SETTINGS, MiB, Settings, parse_origins

DEFAULTS = Settings()


def build_parser() -> argparse.ArgumentParser:
    """The options of `crnn serve`."""
    p = argparse.ArgumentParser(
        prog="crnn serve",
        description="Run the crnn-ocr REST API: POST /v1/recognize (word crops), POST /v1/read (whole photos), "
                    "GET /v1/model, /healthz, /readyz, /metrics, /docs and a web page at /.",
        epilog=f"Environment: {ENV_API_KEY} (require this key in X-API-Key on /v1/*), "
               f"{ENV_CORS_ORIGINS} (comma-separated origins), CRNN_WEIGHTS (default weights file).",
    )
    a = p.add_argument
    a("--host", default=DEFAULTS.host, help="address to bind (default %(default)s; 0.0.0.0 for every interface)")
    a("--port", type=int, default=DEFAULTS.port, help="port (default %(default)s)")
    a("--root-path", default=DEFAULTS.root_path, metavar="PREFIX",
      help="the path prefix a reverse proxy serves the API under, e.g. /ocr (default: none)")
    a("--weights", metavar="FILE", help="checkpoint file, .safetensors or .onnx (default: the shipped weights, or $CRNN_WEIGHTS)")
    a("--model", metavar="NAME", help=model_help())
    a("--backend", choices=("torch", "onnx", "auto"), default=DEFAULTS.backend,
      help="torch (default); onnx: ONNX Runtime on an .onnx file, torch never imported; auto: onnx where available")
    a("--workers", type=int, default=DEFAULTS.workers, help="worker processes, each with its own model (default %(default)s)")
    a("--threads", type=int, help="torch (or ONNX Runtime) threads per worker (default: the cores divided among workers, less one)")
    a("--batch-workers", type=int, help="width groups of a model batch run at once, each on --threads threads "
      "(default: the worker's share of the cores divided by --threads)")
    g = p.add_argument_group("batching")
    g.add_argument("--max-batch", type=int, default=DEFAULTS.max_batch,
                   help="most images per model batch, merged across requests; 1 turns batching off (default %(default)s)")
    g.add_argument("--max-wait-ms", type=float, default=DEFAULTS.max_wait_ms,
                   help="longest wait for more images before a batch starts (default %(default)s)")
    g.add_argument("--max-queue", type=int, default=DEFAULTS.max_queue,
                   help="most images waiting for the model; more get 503 (default %(default)s)")
    g.add_argument("--queue-timeout", type=float, default=DEFAULTS.queue_timeout_s, metavar="SECONDS",
                   help="a request whose images wait longer gets 503 + Retry-After (default %(default)s)")
    g = p.add_argument_group("limits")
    g.add_argument("--max-body-mb", type=float, default=DEFAULTS.max_body_bytes / MiB,
                   help="largest request body in MiB (default %(default)g)")
    g.add_argument("--body-timeout", type=float, default=DEFAULTS.body_timeout_s, metavar="SECONDS",
                   help="a request body must arrive within this time, else 408 (default %(default)s)")
    g.add_argument("--max-uploads", type=int, default=DEFAULTS.max_uploads,
                   help="most requests receiving their bodies at once per worker; more get 503 (default %(default)s)")
    g.add_argument("--max-images", type=int, default=DEFAULTS.max_images, help="most images per request (default %(default)s)")
    g.add_argument("--max-pixels", type=int, default=DEFAULTS.max_pixels,
                   help="largest image in pixels, checked from its header before decoding; word crops need far less "
                   "(default %(default)s)")
    g.add_argument("--decode-workers", type=int, default=DEFAULTS.decode_workers,
                   help="images decoded at once per worker (default %(default)s)")
    g.add_argument("--max-decode-pixels", type=int, default=DEFAULTS.max_decode_pixels,
                   help="most decoded pixels in flight per worker (memory); beyond it images wait, within "
                   "--queue-timeout (default %(default)s)")
    g.add_argument("--max-beam-width", type=int, default=DEFAULTS.max_beam_width, help="(default %(default)s)")
    g.add_argument("--max-photos", type=int, default=DEFAULTS.max_photos,
                   help="most photos per POST /v1/read request (default %(default)s)")
    g.add_argument("--max-photo-pixels", type=int, default=DEFAULTS.max_photo_pixels,
                   help="largest photo of POST /v1/read in pixels, checked from its header before decoding "
                   "(default %(default)s)")
    g.add_argument("--max-lexicon-words", type=int, default=DEFAULTS.max_lexicon_words,
                   help="most words of one lexicon, the request's or an image's (default %(default)s)")
    g.add_argument("--max-request-lexicon-words", type=int, default=DEFAULTS.max_request_lexicon_words,
                   help="most words of a request's lexicons in all (memory: ~210 bytes a word); more get 413 "
                   "(default %(default)s)")
    g.add_argument("--heavy-requests", type=int, default=DEFAULTS.heavy_requests,
                   help="JSON requests over 64 KiB parsed (and their lexicons built) at once per worker; more wait, "
                   "within --queue-timeout, then get 503 (default %(default)s)")
    g = p.add_argument_group("operations")
    g.add_argument("--cors-origins", metavar="ORIGINS",
                   help=f"comma-separated origins allowed by CORS, '*' for any (default: ${ENV_CORS_ORIGINS}, else none)")
    g.add_argument("--graceful-timeout", type=int, default=DEFAULTS.graceful_timeout_s, metavar="SECONDS",
                   help="on SIGTERM, how long in-flight requests may take to finish (default %(default)s)")
    g.add_argument("--log-level", default=DEFAULTS.log_level, choices=["debug", "info", "warning", "error"])
    g.add_argument("--no-access-log", action="store_true", help="do not log one JSON line per request")
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from parsed flags over the environment (raises ConfigError on bad values)."""
    threads = args.threads
    if threads is None:
        # Each worker has its own torch pool: share the cores among workers and leave one for the
        # event loop and image decoding, which otherwise stall behind the model's threads.
        threads = max(1, cpu_cores() // args.workers - 1)
    batch_workers = args.batch_workers
    if batch_workers is None:
        # A micro-batch of mixed widths runs as several small batches (one per width): with one torch
        # thread each, N of them at once use N cores better than one at a time on N threads. On this
        # 2-core host (32 clients): 348-357 -> 428-449 images/s, p50 87 -> 68 ms (docs/server.md).
        batch_workers = max(1, cpu_cores() // args.workers // max(1, threads))
    return Settings.from_env(
        host=args.host, port=args.port, root_path=args.root_path, weights=args.weights, model=args.model,
        backend=args.backend,
        workers=args.workers, threads=threads,
        batch_workers=batch_workers,
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
        queue_timeout_s=args.queue_timeout, max_body_bytes=int(args.max_body_mb * MiB), max_images=args.max_images,
        body_timeout_s=args.body_timeout, max_uploads=args.max_uploads,
        decode_workers=args.decode_workers, max_decode_pixels=args.max_decode_pixels,
        max_pixels=args.max_pixels, max_photos=args.max_photos, max_photo_pixels=args.max_photo_pixels,
        max_beam_width=args.max_beam_width, max_lexicon_words=args.max_lexicon_words,
        max_request_lexicon_words=args.max_request_lexicon_words, heavy_requests=args.heavy_requests,
        cors_origins=parse_origins(args.cors_origins) if args.cors_origins is not None else None,
        graceful_timeout_s=args.graceful_timeout, log_level=args.log_level, access_log=not args.no_access_log,
    )


def check_weights(path: object, backend: str = "torch") -> None:
    """Load the checkpoint once (torch imported here, not at module level); raises CheckpointError if it cannot be."""
    if backend == "onnx":  # ONNX Runtime reads the file (and refuses a bad one) without torch
        from crnn.reading.onnx_recognizer import OnnxRecognizer

        OnnxRecognizer(path, threads=1)  # type: ignore[arg-type]
        return
    from crnn.kinds.loading import load_checkpoint

    try:
        load_checkpoint(path)  # type: ignore[arg-type]
    except CheckpointError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError) as e:  # what torch / safetensors raise on a bad file
        raise CheckpointError(f"{path}: cannot load the weights ({type(e).__name__}: {e})") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Check the settings and the weights file, then run uvicorn until SIGINT/SIGTERM."""
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
        # Fail here with one clear line rather than in every worker's start-up traceback.
        backend, path = settings.model_source()
        read_header(path)
        # The header can read fine while the weights do not (a truncated file): load them once here, as
        # `crnn ocr` does, so that a bad file is one line and status 2, not a worker's traceback and 3.
        check_weights(path, backend)
    except (CheckpointError, BackendError) as e:
        hint = "" if args.weights or args.model else " (pass --weights FILE or set CRNN_WEIGHTS)"
        print(f"crnn serve: {e}{hint}", file=sys.stderr)
        return 2
    except ConfigError as e:
        print(f"crnn serve: {e}", file=sys.stderr)
        return 2

    import uvicorn

    from crnn_server.logs import log_config
    from crnn_server.protocols import protocol_name

    # Worker processes (and the single-process server alike) rebuild the app from this variable.
    os.environ[ENV_SETTINGS] = settings.to_json()
    uvicorn.run(
        "crnn_server.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=log_config(settings.log_level),
        http=protocol_name(),  # uvicorn's parser refusals answered as JSON too
        access_log=False,
        root_path=settings.root_path,
        timeout_graceful_shutdown=settings.graceful_timeout_s,
        # Keep-alive a little longer than typical client pools so connections are reused under load.
        timeout_keep_alive=15,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
