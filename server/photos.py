"""Whole photos for POST /v1/read: one PhotoReader per process (the text detector beside the server's recognizer),
built on the first photo, reading one request's photos at a time in a thread of its own."""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crnn.detection.detector import DEFAULT_DETECTOR, TextDetector
from crnn.detection.photo_image import load_photo
from crnn.detection.photo_reader import PhotoReader
from crnn.detection.registry import load_detector
from crnn.detection.word_lexicon import Lexicon, check_recognizer
from crnn.errors import BackendError, InvalidImageError
from crnn.reading.orientation import OrientationClassifier
from crnn_server.batching import BatcherClosed, SlotGate
from crnn_server.engine import Engine
from crnn_server.metrics import Metrics
from crnn_server.parsing import ReadOptions
from crnn_server.request_types import ImageInput
from crnn_server.settings import Settings

if TYPE_CHECKING:
    from crnn.io.preprocess import PreprocessConfig
    from crnn.reading.text_recognizer import TextRecognizer

log = logging.getLogger("crnn.server")


class PhotoService:
    """Reads the photos of /v1/read requests, one request at a time per process, in arrival order.

    The PhotoReader (the detector, a view of the engine's recognizer under the photo pixel limit, and the engine's
    orientation classifier) is built once, by the first request that needs it, in the photo thread; a missing
    ``detect`` extra is remembered and raised (BackendError) to every request after. The detector runs on the
    server's ``threads``. A request waits for the photo thread within ``queue_timeout_s`` (QueueTimeout past it).
    """

    def __init__(self, settings: Settings, metrics: Metrics, engine: Engine, detector: TextDetector | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.engine = engine
        self._detector = detector
        self._reader: PhotoReader | None = None
        # The shipped model photos are read with when it is not the served one (the photo model), once the reader is
        # built; None: the served model reads photos too.
        self.model_name: str | None = None
        self._error: BackendError | None = None
        self._lock = threading.Lock()
        # One photo thread: the detector and the recognizer use the worker's cores themselves, and photos are the
        # largest images the server decodes (memory: one at a time).
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crnn-photo")
        self.gate = SlotGate(1)
        self._closed = False

    @property
    def loaded(self) -> bool:
        """Whether the photo reader (and so its detector) is built."""
        return self._reader is not None

    def reader(self) -> PhotoReader:
        """The process's PhotoReader, built on first use; BackendError when the detector cannot be built."""
        with self._lock:
            if self._reader is not None:
                return self._reader
            if self._error is not None:
                raise self._error
            started = time.perf_counter()
            try:
                detector = self._detector or load_detector(DEFAULT_DETECTOR, threads=self.settings.threads)
            except BackendError as e:
                self._error = e
                log.warning("text detector unavailable", extra={"error": str(e)})
                raise
            rec, preprocess = self._recognizer()
            # Crops keep the checkpoint's preprocessing; the photo itself is bounded by max_photo_pixels (tighter only).
            rec.preprocess = preprocess.replace(max_pixels=min(preprocess.max_pixels, self.settings.max_photo_pixels))
            orientation: OrientationClassifier | str
            try:
                orientation = self.engine.orientation()  # shared with /v1/recognize's orientation=auto (~20 ms)
            except Exception:  # no torch (the onnx backend) or no weights: tall lines get the fixed quarter turn
                orientation = "none"
            self._reader = PhotoReader(detector, rec, orientation=orientation)
            log.info("photo reader ready", extra={"detector": detector.name,
                                                  "seconds": round(time.perf_counter() - started, 3)})
            return self._reader

    def _recognizer(self) -> tuple[TextRecognizer, PreprocessConfig]:
        """The recognizer photos are read with and its checkpoint's preprocessing: the photo model
        (crnn.checkpoints.shipped.PHOTO_MODEL, taught multi-word lines) when the server serves the default model it
        loaded itself, as `crnn ocr --detect` does; else the served model (a chosen model reads crops and photos)."""
        from crnn.checkpoints.shipped import DEFAULT_MODEL, photo_model

        served_default = self.engine.shipped_name == DEFAULT_MODEL and self.settings.model is None
        name = photo_model(None, None) if served_default else None
        if name is not None:
            from crnn.kinds.loading import load_recognizer

            rec = load_recognizer(None, "cpu", self.settings.threads, "auto", self.settings.backend, model=name)
            self.model_name = name
            return rec, rec.preprocess
        rec = copy.copy(self.engine.recognizer)
        assert rec is not None and self.engine.model_preprocess is not None
        return rec, self.engine.model_preprocess

    def describe(self) -> dict[str, Any]:
        """The photo route's detector and limits, for /v1/model (no server paths)."""
        out: dict[str, Any] = {"detector": DEFAULT_DETECTOR if self._detector is None else self._detector.name,
                               "loaded": self.loaded, "max_photos": self.settings.max_photos,
                               "max_photo_pixels": self.settings.max_photo_pixels}
        if self._reader is not None:
            out["model"] = self.model_name  # the photo model (None: the served model reads photos)
            d = dict(self._reader.detector.describe())
            if "model" in d:
                d["model"] = Path(str(d["model"])).name
            out["describe"] = d
        if self._error is not None:
            out["error"] = str(self._error)
        return out

    async def read(self, photos: list[ImageInput], options: ReadOptions, lexicon: Lexicon | None = None
                   ) -> list[dict[str, Any]]:
        """One result dict per photo, in order: the reading, or the error that kept it from being read; ``lexicon``
        (built from ``options.lexicon``) constrains each word.

        Raises DecoderOptionError (a lexicon for a kind without per-frame outputs), BackendError (no detector), QueueTimeout (the photo thread stayed busy past the queue timeout) or
        BatcherClosed (the server is stopping)."""
        if self._closed:
            raise BatcherClosed("the server is shutting down")
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        await self.gate.acquire(0, arrived + self.settings.queue_timeout_s)
        try:
            return await loop.run_in_executor(self._pool, self._read_sync, photos, options, time.perf_counter(),
                                              loop.time() - arrived, lexicon)
        finally:
            self.gate.release(0)

    def _read_sync(self, photos: list[ImageInput], options: ReadOptions, entered: float,
                   waited: float, lexicon: Lexicon | None = None) -> list[dict[str, Any]]:
        base = self.reader()
        reader = base.with_split(options.split)  # a copy: the options below are this request's only
        reader.decoder, reader.beam_width, reader.min_confidence = options.decoder, options.beam_width, options.min_confidence
        reader.lm_weight = options.lm_weight
        if lexicon is not None:
            check_recognizer(reader.recognizer)
            reader.lexicon = lexicon
        results: list[dict[str, Any]] = []
        for photo in photos:
            wait = waited + time.perf_counter() - entered  # for the gate, and for this request's earlier photos
            if photo.error is not None:
                results.append(self._failed(photo.name, photo.error))
                continue
            t0 = time.perf_counter()
            try:
                rgb = load_photo(photo.data or b"", reader.preprocess.max_pixels)
            except InvalidImageError as e:
                results.append(self._failed(photo.name, str(e)))
                continue
            except Exception as e:
                # A decoder bug on a hostile file costs that photo, not the request (as on /v1/recognize).
                log.warning("image decoder failed", exc_info=True, extra={"image": photo.name})
                results.append(self._failed(photo.name, f"could not decode the image ({type(e).__name__})"))
                continue
            decoded = time.perf_counter() - t0
            try:
                reading = reader.read(rgb)  # a failure here (not the photo's) is the server's: a 500
            except InvalidImageError as e:
                results.append(self._failed(photo.name, str(e)))
                continue
            timings = {"wait": wait, "load": decoded + reading.timings.get("load", 0.0),
                       "detect": reading.timings.get("detect", 0.0), "recognize": reading.timings.get("recognize", 0.0)}
            for stage in ("load", "detect", "recognize"):
                self.metrics.photo_seconds.labels(stage).observe(timings[stage])
            body = reading.to_dict()
            del body["timings"]
            results.append({"name": photo.name, **body, "timings_ms": {k: round(v * 1000, 2) for k, v in timings.items()}})
            self.metrics.photos.labels("ok").inc()
        return results

    def _failed(self, name: str, error: str) -> dict[str, Any]:
        self.metrics.photos.labels("error").inc()
        return {"name": name, "error": error, "code": "invalid_image"}

    def stop(self) -> None:
        """Refuse new photos and wait for the one being read."""
        self._closed = True
        self._pool.shutdown(wait=True)
