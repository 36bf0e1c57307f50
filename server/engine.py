"""The model side of the server: one recognizer (of any registered kind) per process, a micro-batcher and image preparation."""

from __future__ import annotations

import asyncio
import copy
import io
import logging
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from crnn.decoding.lexicon import Lexicon
from crnn.errors import InvalidImageError
from crnn.io.oriented_crops import OrientedCrop, prepare_oriented
from crnn.io.preprocess import PreprocessConfig
from crnn.reading.orientation import OrientationClassifier, keep_confirmed_turns, load_orientation, orient_crops
from crnn.prediction import Prediction
from crnn.reading.text_recognizer import TextRecognizer
from crnn.kinds.loading import load_recognizer
from crnn_server.batching import DecodeGate, MicroBatcher, SlotGate
from crnn_server.errors import ModelNotLoaded
from crnn_server.metrics import Metrics
from crnn_server.request_types import DecodeOptions, ImageInput
from crnn_server.settings import Settings

log = logging.getLogger("crnn.server")

# Images up to this many pixels (a 1024x256 crop) decode in a few milliseconds: their own lane (see Engine).
SMALL_PIXELS = 262_144

T = TypeVar("T")


def _image_error(e: InvalidImageError) -> str:
    # The library's messages name only paths (never given here); the result carries the image's name.
    return str(e)


class Engine:
    """Loads the model once per process and reads batches of images through the micro-batcher."""

    def __init__(self, settings: Settings, metrics: Metrics, recognizer: TextRecognizer | None = None,
                 model_name: str | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.recognizer = recognizer
        self._model_name = model_name
        # The shipped model's name served (`crnn serve --model`; "default" without weights), which a request may name.
        self.shipped_name = settings.shipped_name() if recognizer is None else settings.model
        self._weights: Path | None = None
        self.model_preprocess: PreprocessConfig | None = None
        self.info: dict[str, Any] = {}
        self.batcher: MicroBatcher[Prediction] | None = None
        # Decoding and resizing run here, beside the model thread (PIL and OpenCV release the GIL). The gate
        # admits as many decodes as there are threads, within a budget of decoded pixels (memory), in order.
        self._prep = ThreadPoolExecutor(max_workers=settings.decode_workers, thread_name_prefix="crnn-prep")
        self.decode_gate = DecodeGate(settings.decode_workers, settings.max_decode_pixels)
        # A lane of its own for requests of word-crop-sized images (all at most SMALL_PIXELS): they cost
        # milliseconds, so they should not queue behind a flood of large images in the gate above.
        self._small_prep = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crnn-prep-small")
        self.small_gate = DecodeGate(1, max(1, SMALL_PIXELS))
        # Heavy requests (crnn_server.parsing.is_heavy) are parsed and have their lexicons built in these threads, never
        # on the event loop; the gate admits heavy_requests of them at once (memory), in order. The thread more serves
        # the lexicons of light requests, so they do not wait behind a heavy one's.
        self.heavy_gate = SlotGate(settings.heavy_requests)
        self._lexicon_pool = ThreadPoolExecutor(max_workers=settings.heavy_requests + 1,
                                                thread_name_prefix="crnn-lexicon")
        # The orientation classifier, loaded by the first request that asks for orientation=auto.
        self._orientation: OrientationClassifier | None = None
        self._orientation_lock = threading.Lock()

    def orientation(self) -> OrientationClassifier:
        """The shipped orientation classifier (loaded once, on first use)."""
        with self._orientation_lock:
            if self._orientation is None:
                self._orientation = load_orientation("auto")
            return self._orientation

    @property
    def ready(self) -> bool:
        """Whether the model is loaded and the batcher takes work."""
        return self.recognizer is not None and self.batcher is not None and self.batcher.running

    @property
    def name(self) -> str:
        """The model's name in responses."""
        return str(self.info.get("name", "crnn"))

    async def start(self) -> None:
        """Load the model (unless given), describe it and start the batcher."""
        if self.recognizer is None:
            backend, path = self.settings.model_source()
            log.info("loading model", extra={"weights": str(path), "backend": backend})
            self.recognizer = await asyncio.to_thread(
                load_recognizer, path, "cpu", self.settings.threads, "auto", backend)
            self._weights = path
            self._model_name = self._model_name or self.recognizer.metadata.get("name") or path.stem
        elif self.settings.threads is not None:
            import torch

            torch.set_num_threads(self.settings.threads)
        # A shallow copy shares the model but lets the server tighten the pixel limit (never
        # loosen it) without touching a Recognizer the caller may still use.
        rec = self.recognizer = copy.copy(self.recognizer)
        # The checkpoint's own preprocessing, before the crop limits: whole photos (POST /v1/read) have their own.
        self.model_preprocess = rec.preprocess
        rec.preprocess = rec.preprocess.replace(
            max_pixels=min(rec.preprocess.max_pixels, self.settings.max_pixels), jpeg_draft=True)
        self.info = await asyncio.to_thread(self._describe)
        self.batcher = MicroBatcher(
            self._infer,
            max_batch=self.settings.max_batch,
            max_wait_s=self.settings.max_wait_ms / 1000.0,
            max_queue=self.settings.max_queue,
            queue_timeout_s=self.settings.queue_timeout_s,
            on_batch=self.metrics.observe_batch,
            on_depth=self.metrics.queue_depth.set,
        )
        await self.batcher.start()
        self.metrics.model_loaded.set(1)
        log.info("model ready", extra={"model": self.name, "parameters": self.info["parameters"]})

    async def stop(self) -> None:
        """Finish queued images (drain), then stop the batcher and the threads."""
        self.metrics.model_loaded.set(0)
        if self.batcher is not None:
            await self.batcher.close(timeout=self.settings.graceful_timeout_s or None)
        self._prep.shutdown(wait=True)
        self._small_prep.shutdown(wait=True)
        self._lexicon_pool.shutdown(wait=True)

    def _describe(self) -> dict[str, Any]:
        rec = self.recognizer
        assert rec is not None
        meta = rec.metadata or {}
        d = rec.describe()
        return {
            "name": self._model_name or meta.get("name") or "crnn",
            "shipped_model": self.shipped_name,  # the name a request's `model` may give (None: other weights)
            "weights": self._weights.name if self._weights else None,  # the file name: no server paths in answers
            "architecture": d["architecture"],
            "parameters": d["parameters"],
            # None for kinds without a per-width cost (the baseline runs per segment, not per frame).
            "multiply_adds": d.get("multiply_adds"),
            "multiply_adds_input": d.get("input"),
            "charset": rec.charset.chars,
            "num_classes": rec.charset.num_classes,
            "preprocess": rec.preprocess.to_dict(),
            "metrics": meta.get("metrics", {}),
            "training": {k: meta[k] for k in ("step", "images_seen", "wall_time_s", "git_commit", "hardware") if k in meta},
        }

    def check_model(self, name: str | None) -> None:
        """ModelNotLoaded unless ``name`` (a request's ``model``; None: any) is the shipped model this server serves."""
        if name is None or name == self.shipped_name:
            return
        from crnn.checkpoints.shipped import model_names

        served = f"the shipped model {self.shipped_name!r}" if self.shipped_name else "weights of its own, no shipped model"
        known = "" if name in model_names() else f" (the shipped models are: {', '.join(model_names())})"
        raise ModelNotLoaded(f"model {name!r} is not loaded by this server{known}; it serves {served} (a server "
                             f"serves one model: start one for {name!r} with `crnn serve --model {name}`)",
                             {"model": name, "served": self.shipped_name})

    def lexicon(self, words: Sequence[str]) -> Lexicon:
        """A Lexicon over the model's charset; raises ValueError naming the first word it could not keep (characters
        outside the charset, a tab): the API refuses what the CLI drops and reports, never drops it silently."""
        assert self.recognizer is not None
        charset = self.recognizer.charset
        # The distinct characters first (C loops: ~1 ms for 10,000 words); word by word only to name the bad one.
        if charset.unsupported("".join(set("".join(words)))):
            for word in words:
                bad = charset.unsupported(word)
                if bad:
                    raise ValueError(f"word {word!r} has characters the model cannot read: {''.join(bad)!r}")
        lexicon = Lexicon(words, charset)
        if lexicon.dropped:
            raise ValueError(f"unusable words: {lexicon.dropped.describe()}")
        return lexicon

    def image_lexicon(self, words: Sequence[str]) -> Lexicon:
        """One image's Lexicon; raises ValueError naming the first word with characters outside the charset."""
        return self.lexicon(words)

    def build_lexicons(self, words: list[str] | None, images: Sequence[ImageInput]
                       ) -> tuple[Lexicon | None, list[Lexicon | None] | None]:
        """The request-wide Lexicon of ``words`` and each image's own (None where it has none, or None for all when no
        image has one); equal lists share one Lexicon, so their images batch together. Raises ValueError naming the
        lexicon. CPU-heavy (64 lists of 10,000 words: 0.6-0.9 s): run it through :meth:`offload`."""
        lexicon = None
        if words is not None:
            try:
                lexicon = self.lexicon(words)
            except ValueError as e:
                raise ValueError(f"invalid lexicon: {e}") from None
        if all(img.lexicon is None for img in images):
            return lexicon, None
        built: dict[tuple[str, ...], Lexicon] = {}
        own: list[Lexicon | None] = []
        for i, img in enumerate(images):
            if img.lexicon is None:
                own.append(None)
                continue
            key = tuple(img.lexicon)  # the same tuple, not a copy
            if key not in built:
                try:
                    built[key] = self.image_lexicon(img.lexicon)
                except ValueError as e:
                    raise ValueError(f"invalid images.{i}.lexicon: {e}") from None
            own.append(built[key])
        return lexicon, own

    async def offload(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a lexicon thread: parsing heavy bodies and building lexicons never run on the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._lexicon_pool, fn, *args)

    def _infer(self, arrays: list[np.ndarray], options: DecodeOptions) -> list[Prediction]:
        assert self.recognizer is not None
        return self.recognizer.recognize_prepared(
            arrays, batch_size=self.settings.max_batch, decoder=options.decoder,
            beam_width=options.beam_width, lexicon=options.lexicon, workers=self.settings.batch_workers,
            lm_weight=options.lm_weight)

    def _prepare_one(self, img: ImageInput, oriented: bool = False) -> np.ndarray | OrientedCrop | str:
        assert self.recognizer is not None
        try:
            data = img.data or b""
            return prepare_oriented(data, self.recognizer.preprocess) if oriented else self.recognizer.prepare(data)
        except InvalidImageError as e:
            return _image_error(e)
        except Exception as e:
            # A decoder bug on a hostile file must cost that image, not the whole request.
            log.warning("image decoder failed", exc_info=True, extra={"image": img.name})
            return f"could not decode the image ({type(e).__name__})"

    def _decoded_pixels(self, data: bytes) -> int:
        """Pixels the image will decode to, from its header (0 when it will be refused before decoding)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                w, h = Image.open(io.BytesIO(data)).size  # the header only: microseconds
        except Exception:
            return 0  # not an image: refused at once by prepare
        assert self.recognizer is not None
        return w * h if w * h <= self.recognizer.preprocess.max_pixels else 0

    def _prepare_sync(self, images: list[ImageInput], oriented: bool = False
                      ) -> tuple[list[np.ndarray | str], list[str | None], dict[int, np.ndarray]]:
        """Model inputs (or error messages) of the images, each one's orientation (None when not ``oriented``), and
        the upright input of each crop the classifier turned (read too, to confirm the turn: crnn.reading.orientation)."""
        prepared = [img.error if img.error is not None else self._prepare_one(img, oriented) for img in images]
        labels: list[str | None] = [None] * len(images)
        uprights: dict[int, np.ndarray] = {}
        crops = [i for i, p in enumerate(prepared) if isinstance(p, OrientedCrop)]
        if crops:
            assert self.recognizer is not None
            arrays, found = orient_crops([prepared[i] for i in crops], self.orientation(), self.recognizer.preprocess)  # type: ignore[misc]
            for i, a, o in zip(crops, arrays, found):
                if o != "0":
                    uprights[i] = prepared[i].upright  # type: ignore[union-attr]
                prepared[i], labels[i] = a, o
        return prepared, labels, uprights  # type: ignore[return-value]

    async def _prepare_all(self, images: list[ImageInput], deadline: float, oriented: bool = False
                           ) -> tuple[list[np.ndarray | str], list[str | None], dict[int, np.ndarray]]:
        """Decode a request's images, one after the other in one decode slot, once the gate admits it.

        A request holds one slot for all its images (they decode in turn, so the largest one's pixels are
        what it has in flight), and requests start in arrival order: under a flood the early ones finish
        and the late ones get QueueTimeout at ``deadline``, instead of every request slowing down together.
        """
        pixels = max((self._decoded_pixels(img.data or b"") for img in images if img.error is None), default=0)
        gate, pool = (self.small_gate, self._small_prep) if pixels <= SMALL_PIXELS else (self.decode_gate, self._prep)
        await gate.acquire(pixels, deadline)
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, self._prepare_sync, images, oriented)
        finally:
            gate.release(pixels)

    async def _read(self, arrays: Sequence[np.ndarray | str] | dict[int, np.ndarray], indices: list[int],
                    options: DecodeOptions, lexicons: list[Lexicon | None] | None, deadline: float) -> dict[int, Prediction]:
        """Predictions of ``arrays[i]`` for each i of ``indices``, through the batcher."""
        assert self.batcher is not None
        loop = asyncio.get_running_loop()
        # Images that share options (one lexicon object) go to the batcher together; an image with its own
        # lexicon is a group of its own (the batcher never mixes lexicons in one batch).
        groups: dict[int, tuple[DecodeOptions, list[int]]] = {}
        for i in indices:
            own = lexicons[i] if lexicons is not None else None
            opts = options if own is None else replace(options, lexicon=own)
            groups.setdefault(id(opts.lexicon), (opts, []))[1].append(i)
        outputs = await asyncio.gather(*(
            self.batcher.submit([arrays[i] for i in idx], opts, opts.key, timeout=deadline - loop.time())
            for opts, idx in groups.values()))
        return {i: p for (_, idx), preds in zip(groups.values(), outputs) for i, p in zip(idx, preds)}

    async def recognize(self, images: list[ImageInput], options: DecodeOptions,
                        lexicons: list[Lexicon | None] | None = None) -> list[dict[str, Any]]:
        """One result dict per image, in order: the prediction, or the error that kept it from being read.

        ``lexicons`` (one per image, None where the image has none) override ``options.lexicon``.
        Raises the batcher's QueueFull, QueueTimeout or BatcherClosed when the model cannot take the work; the
        queue timeout covers the wait to be decoded and the wait for the model together.
        """
        assert self.batcher is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.queue_timeout_s
        prepared, orientations, uprights = await self._prepare_all(images, deadline, options.orientation == "auto")
        good = [i for i, p in enumerate(prepared) if isinstance(p, np.ndarray)]
        by_index = await self._read(prepared, good, options, lexicons, deadline)
        if uprights:  # the crops the classifier turned, read as they came too: keep the turn only if confirmed
            keep_confirmed_turns(by_index, orientations, await self._read(uprights, list(uprights), options, lexicons, deadline))
        results: list[dict[str, Any]] = []
        for i, (img, p) in enumerate(zip(images, prepared)):
            if i in by_index:
                pred = by_index[i] if orientations[i] is None else replace(by_index[i], orientation=orientations[i])
                results.append({"name": img.name, **pred.to_dict()})
            else:
                results.append({"name": img.name, "error": p, "code": "invalid_image"})
        self.metrics.images.labels("ok").inc(len(good))
        self.metrics.images.labels("error").inc(len(images) - len(good))
        return results
