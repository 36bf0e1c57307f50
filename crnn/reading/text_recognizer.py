"""The contract every model kind's recognizer keeps (TextRecognizer) and the base implementing its shared part
(load_recognizer, in crnn/kinds/loading.py, loads a checkpoint of any kind on either backend).

Imports no torch at module level: the ONNX Runtime backend (crnn/reading/onnx_recognizer.py) shares this base and
``load_recognizer(backend="onnx")`` must run where torch is not installed."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, overload, runtime_checkable

import numpy as np

from crnn.charset import Charset
from crnn.decoding.ctc_decode import DEFAULT_DECODER, decode
from crnn.decoding.lexicon import Lexicon, as_lexicon, as_lexicons
from crnn.errors import CheckpointError, InvalidImageError
from crnn.io.oriented_crops import OrientedCrop, prepare_oriented
from crnn.prediction import Prediction
from crnn.io.preprocess import ImageSource, PreprocessConfig, prepare, width_batches

if TYPE_CHECKING:
    import torch
    from torch import nn

    from crnn.checkpoints.checkpoint import Checkpoint
    from crnn.checkpoints.kind import ModelKind
    from crnn.reading.orientation import OrientationClassifier


@dataclass(frozen=True)
class FailedImage:
    """The result, with ``recognize(..., errors="return")``, of an input that is not a readable image.

    Prediction-like (empty ``text``, ``confidence`` 0, no ``char_confidences``), so that code which only
    reads texts keeps working; ``error`` says why (the InvalidImageError's message) and ``index`` is the
    input's position in the call. Tell results apart with ``isinstance(result, FailedImage)``.
    """

    index: int
    error: str
    text: str = ""
    confidence: float = 0.0
    char_confidences: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """A JSON-able dict (``index``, ``error``)."""
        return {"index": self.index, "error": self.error}


Errors = Literal["raise", "return"]


@runtime_checkable
class TextRecognizer(Protocol):
    """Reads the text of word images with a loaded model of some kind (see crnn.kinds.registry).

    Constructed as ``cls(weights, device, threads, precision)``, ``weights`` a checkpoint path, a loaded
    :class:`~crnn.checkpoints.checkpoint.Checkpoint` or None (the shipped model). Every command (ocr, eval, info, compare,
    serve) uses only what this protocol names.
    """

    kind: ClassVar[str]
    preprocess: PreprocessConfig  # settable: the server tightens its pixel limit on its own copy

    # Read-only in the contract, so that a kind may narrow them (the CRNN's model is a CRNN).
    @property
    def model(self) -> nn.Module:
        """The network, in eval mode (on the onnx backend, its onnxruntime.InferenceSession)."""
        ...

    @property
    def charset(self) -> Charset:
        """The characters the model reads."""
        ...

    @property
    def metadata(self) -> dict[str, Any]:
        """The checkpoint's metadata (name, metrics, training facts)."""
        ...

    @property
    def precision(self) -> str:
        """The numeric precision it runs in (fp32, mixed, bf16)."""
        ...

    def prepare(self, source: ImageSource) -> np.ndarray:
        """Model input (32, W') float32 of one image; raises InvalidImageError on bad input."""
        ...

    def recognize_prepared(
        self,
        arrays: Sequence[np.ndarray],
        batch_size: int = 64,
        decoder: str = DEFAULT_DECODER,
        beam_width: int = 10,
        lexicon: Lexicon | Iterable[str] | Sequence[Lexicon | None] | None = None,
        workers: int = 1,
        lm_weight: float | None = None,
    ) -> list[Prediction]:
        """Predictions for prepared images, in input order; ``lexicon`` is one word list for all, or one per image."""
        ...

    @overload
    def recognize(
        self, images: Sequence[ImageSource] | ImageSource, batch_size: int = ..., decoder: str = ...,
        beam_width: int = ..., lexicon: Lexicon | Iterable[str] | None = ..., errors: Literal["raise"] = ...,
        lm_weight: float | None = ...,
    ) -> list[Prediction]: ...

    @overload
    def recognize(
        self, images: Sequence[ImageSource] | ImageSource, batch_size: int = ..., decoder: str = ...,
        beam_width: int = ..., lexicon: Lexicon | Iterable[str] | None = ..., *, errors: Literal["return"],
        lm_weight: float | None = ...,
    ) -> list[Prediction | FailedImage]: ...

    def recognize(
        self,
        images: Sequence[ImageSource] | ImageSource,
        batch_size: int = 64,
        decoder: str = DEFAULT_DECODER,
        beam_width: int = 10,
        lexicon: Lexicon | Iterable[str] | None = None,
        errors: Errors = "raise",
        lm_weight: float | None = None,
    ) -> list[Prediction] | list[Prediction | FailedImage]:
        """Read the text of each image (paths, bytes, PIL images or arrays), in input order.

        ``errors="raise"``: an unreadable input raises InvalidImageError (naming its index in a list);
        ``errors="return"``: it comes back as a :class:`FailedImage` in its place, the others are read.
        """
        ...

    def describe(self, width: int = 128) -> dict[str, Any]:
        """Architecture and parameters (and what else the kind can tell) for a 32 x ``width`` input."""
        ...


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op threads (None: leave torch's default, one per core)."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)


class RecognizerBase:
    """What every kind's recognizer shares: loading a checkpoint of its kind, threads, prepare, recognize.

    A subclass sets ``kind`` (its registry name) and ``model_kind`` (its ModelKind, which names the subclass as its
    recognizer: set after the class), implements ``recognize_prepared`` and may extend ``__init__`` (e.g. to build a
    faster inference copy of the network).
    """

    kind: ClassVar[str]
    model_kind: ClassVar[ModelKind]
    # The orientation step (issue 18): None (default) reads every crop as it comes; see use_orientation.
    orientation: OrientationClassifier | None = None

    def __init__(
        self,
        weights: str | os.PathLike | Checkpoint | None = None,
        device: str | torch.device = "cpu",
        threads: int | None = None,
        precision: str = "auto",
    ) -> None:
        """Load ``weights`` (a path, a loaded Checkpoint, or None for the shipped model) onto ``device``."""
        import torch

        from crnn.checkpoints.checkpoint import Checkpoint, read_checkpoint

        set_threads(threads)
        ckpt = weights if isinstance(weights, Checkpoint) else read_checkpoint(weights, self.model_kind)
        if ckpt.model_type != self.kind:
            raise CheckpointError(f"the checkpoint holds model type {ckpt.model_type!r}, not {self.model_kind.title}")
        num_classes = ckpt.model.config.num_classes  # type: ignore[union-attr]  # every kind's config has it
        if num_classes != ckpt.charset.num_classes:
            raise ValueError(f"model has {num_classes} classes, charset needs {ckpt.charset.num_classes}")
        self.device = torch.device(device)
        self.model = ckpt.model.to(self.device).eval()
        self.charset = ckpt.charset
        self.preprocess = ckpt.preprocess
        self.metadata = ckpt.metadata

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        threads: int | None = None,
        precision: str = "auto",
    ) -> Any:
        """Load a checkpoint file of this kind (default: the shipped weights) into a ready recognizer."""
        return cls(path, device, threads, precision)

    def prepare(self, source: ImageSource) -> np.ndarray:
        """Model input (32, W') float32 of one image; raises InvalidImageError on bad input."""
        return prepare(source, self.preprocess)

    def use_orientation(self, mode: str | OrientationClassifier | None) -> Any:
        """Read crops in any orientation in :meth:`recognize`: ``"auto"`` (the shipped classifier) or a classifier;
        ``"none"`` or None reads them as they come (the default). Returns self; predictions then carry ``orientation``."""
        from crnn.reading.orientation import OrientationClassifier, load_orientation  # only a run that turns crops

        self.orientation = mode if isinstance(mode, OrientationClassifier) else load_orientation(mode)
        return self

    def recognize_prepared(
        self,
        arrays: Sequence[np.ndarray],
        batch_size: int = 64,
        decoder: str = DEFAULT_DECODER,
        beam_width: int = 10,
        lexicon: Lexicon | Iterable[str] | Sequence[Lexicon | None] | None = None,
        workers: int = 1,
        lm_weight: float | None = None,
    ) -> list[Prediction]:
        """Predictions for prepared images, in input order (each kind implements this)."""
        raise NotImplementedError

    @overload
    def recognize(
        self, images: Sequence[ImageSource] | ImageSource, batch_size: int = ..., decoder: str = ...,
        beam_width: int = ..., lexicon: Lexicon | Iterable[str] | None = ..., errors: Literal["raise"] = ...,
        lm_weight: float | None = ...,
    ) -> list[Prediction]: ...

    @overload
    def recognize(
        self, images: Sequence[ImageSource] | ImageSource, batch_size: int = ..., decoder: str = ...,
        beam_width: int = ..., lexicon: Lexicon | Iterable[str] | None = ..., *, errors: Literal["return"],
        lm_weight: float | None = ...,
    ) -> list[Prediction | FailedImage]: ...

    def recognize(
        self,
        images: Sequence[ImageSource] | ImageSource,
        batch_size: int = 64,
        decoder: str = DEFAULT_DECODER,
        beam_width: int = 10,
        lexicon: Lexicon | Iterable[str] | None = None,
        errors: Errors = "raise",
        lm_weight: float | None = None,
    ) -> list[Prediction] | list[Prediction | FailedImage]:
        """Read the text of each image (paths, bytes, PIL images or arrays), in input order.

        ``errors="raise"`` (default): raises InvalidImageError for the first input that is not a readable
        image; for a list or tuple the message starts with its index (``image 3: ...``).
        ``errors="return"``: such an input gives a :class:`FailedImage` in its place, the rest are read.
        """
        if errors not in ("raise", "return"):
            raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")
        many = isinstance(images, (list, tuple))
        items: Sequence[ImageSource] = images if many else [images]  # type: ignore[list-item,assignment]
        prepared: list[np.ndarray | OrientedCrop | FailedImage] = []
        for i, img in enumerate(items):
            try:
                prepared.append(self.prepare(img) if self.orientation is None else prepare_oriented(img, self.preprocess))
            except InvalidImageError as e:
                message = f"image {i}: {e}" if many else str(e)
                if errors == "raise":
                    raise InvalidImageError(message) from None
                prepared.append(FailedImage(i, str(e)))
        good = [i for i, p in enumerate(prepared) if not isinstance(p, FailedImage)]
        arrays: list[np.ndarray] = [prepared[i] for i in good]  # type: ignore[misc]
        orientations: list[str | None] = [None] * len(good)
        if self.orientation is not None:  # read() may run twice: build a word list (or stream) into one Lexicon once
            lexicon = as_lexicon(lexicon, self.charset)

        def read(inputs: list[np.ndarray]) -> list[Prediction]:
            return self.recognize_prepared(inputs, batch_size, decoder, beam_width, lexicon, lm_weight=lm_weight)

        if self.orientation is not None:
            from crnn.reading.orientation import read_oriented

            preds, orientations = read_oriented(read, arrays, self.orientation, self.preprocess)  # type: ignore[arg-type,assignment]
        else:
            preds = read(arrays) if good else []
        out: list[Prediction | FailedImage] = list(prepared)  # type: ignore[arg-type]
        for i, p, o in zip(good, preds, orientations):
            out[i] = p if o is None else replace(p, orientation=o)
        return out

    def describe(self, width: int = 128) -> dict[str, Any]:
        """Architecture and parameters (and what else the kind can tell) for a 32 x ``width`` input."""
        return self.model_kind.describe(self.model, width)

    def batches(self, arrays: Sequence[np.ndarray], batch_size: int) -> Iterator[list[int]]:
        """Indices of ``arrays`` grouped into batches of one width bucket each, sorted by width."""
        return width_batches([a.shape[1] for a in arrays], batch_size, self.preprocess)


class CTCRecognizer(RecognizerBase):
    """The shared part of the recognizers whose network reads per-frame log-probabilities (the CRNN on torch, any
    exported model on ONNX Runtime): sort by width, batch by width bucket, run, decode (crnn.decoding.ctc_decode, numpy),
    restore the input order. A subclass implements :meth:`batch_log_probs`.
    """

    def batch_log_probs(self, arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame log-probabilities (B, T, C) float32 and valid frame counts (B,) of one batch of prepared images."""
        raise NotImplementedError

    def recognize_prepared(
        self,
        arrays: Sequence[np.ndarray],
        batch_size: int = 64,
        decoder: str = DEFAULT_DECODER,
        beam_width: int = 10,
        lexicon: Lexicon | Iterable[str] | Sequence[Lexicon | None] | None = None,
        workers: int = 1,
        lm_weight: float | None = None,
    ) -> list[Prediction]:
        """Predictions for already prepared images (see :meth:`prepare`), in input order.

        ``lexicon``: one word list for every image, or a sequence of Lexicon/None, one per image.

        ``workers`` > 1 runs that many batches at once in threads. With the network at one thread (see
        ``threads``) this uses N cores better than N intra-op threads do on one batch of small matrices
        (measured here with torch: 848 vs 693 images/s on 2 cores); results do not depend on it.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        lexicons = as_lexicons(lexicon, self.charset, len(arrays))
        # One lexicon (or none) for all: passed as is; per-image ones are sliced for each batch.
        one = not lexicons or all(x is lexicons[0] for x in lexicons)

        def read(idx: list[int]) -> tuple[np.ndarray, np.ndarray]:
            return self.batch_log_probs([arrays[i] for i in idx])

        def decode_group(idx: list[int], lp: np.ndarray, lengths: np.ndarray) -> list[Prediction]:
            lex = (lexicons[0] if lexicons else None) if one else [lexicons[i] for i in idx]
            return decode(lp, lengths, self.charset, decoder=decoder, beam_width=beam_width, lexicon=lex,
                          lm_weight=lm_weight)

        # Widest first: the last outputs of a call are decoded after the network is done, on one core, and the
        # narrowest images' are the cheapest to decode (fewer frames, so fewer steps of the beam search).
        return read_and_decode(read, decode_group, list(self.batches(arrays, batch_size))[::-1], len(arrays), workers)


# The network's outputs are decoded together, at least this many images at a time: the beam search costs a fixed
# overhead per frame and call (numpy calls on small arrays) besides its cost per image, and the width buckets make
# many batches small (IIIT5K: 80 batches of 37 images on average at --batch-size 64). Decode-only on IIIT5K's
# outputs, CPU per image with the language model (benchmarks/bench_decode.py --group): about 1.6x a group of 128's
# cost a batch at a time; 0.227 ms in groups of 128, 0.21 of 256, 0.205 of 384 (bigger groups pad more frames and
# hold more outputs). Results never depend on it.
DECODE_GROUP = 256


def read_and_decode(
    read: Callable[[list[int]], tuple[np.ndarray, np.ndarray]],
    decode_group: Callable[[list[int], np.ndarray, np.ndarray], list[Prediction]],
    batches: list[list[int]],
    count: int,
    workers: int = 1,
    group: int = DECODE_GROUP,
) -> list[Prediction]:
    """Run the network on each batch of input indices (``read``: log_probs, lengths; ``workers`` > 1: that many
    batches at once, in threads) and decode its outputs ``group`` images or more at a time (``decode_group``), the
    predictions put back in input order (``count`` inputs).

    The network's unit of work stays one batch, so that the threads finish together; whichever thread brings the
    waiting outputs to ``group`` images decodes them, while the others go on reading. Once every batch has been
    started, a thread decodes what waits as soon as its batch is read, while the others still read theirs: left to
    the end, those outputs were decoded on one core while the others had nothing to do."""
    results: list[Prediction | None] = [None] * count
    waiting: list[tuple[list[int], tuple[np.ndarray, np.ndarray]]] = []
    lock = threading.Lock()
    started = 0

    def flush(items: list[tuple[list[int], tuple[np.ndarray, np.ndarray]]]) -> None:
        idx = [i for batch, _ in items for i in batch]
        lp, lengths = stack_outputs([output for _, output in items])
        for i, p in zip(idx, decode_group(idx, lp, lengths)):
            results[i] = p

    def work(batch: list[int]) -> None:
        nonlocal started
        with lock:
            started += 1
        output = read(batch)
        with lock:
            waiting.append((batch, output))
            full = started == len(batches) or sum(len(b) for b, _ in waiting) >= group
            items = waiting[:] if full else []
            if full:
                waiting.clear()
        if items:
            flush(items)

    if workers > 1 and len(batches) > 1:
        with ThreadPoolExecutor(max_workers=min(workers, len(batches))) as pool:
            list(pool.map(work, batches))
    else:
        for batch in batches:
            work(batch)
    if waiting:
        flush(waiting)
    return results  # type: ignore[return-value]


def stack_outputs(outputs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Several batches' (log_probs (B_i, T_i, C), lengths (B_i,)) as one batch, the frames padded (never read)."""
    if len(outputs) == 1:
        return outputs[0]
    frames = max(lp.shape[1] for lp, _ in outputs)
    stacked = np.zeros((sum(len(n) for _, n in outputs), frames, outputs[0][0].shape[2]), dtype=outputs[0][0].dtype)
    start = 0
    for lp, lengths in outputs:
        stacked[start:start + len(lp), : lp.shape[1]] = lp
        start += len(lp)
    return stacked, np.concatenate([np.asarray(n) for _, n in outputs])


def run_batches(run: Callable[[list[int]], list[Prediction]], batches: list[list[int]], count: int,
                workers: int = 1) -> list[Prediction]:
    """``run`` on each batch of input indices (``workers`` > 1: that many at once, in threads), the predictions
    put back in input order (``count`` inputs)."""
    if workers > 1 and len(batches) > 1:
        with ThreadPoolExecutor(max_workers=min(workers, len(batches))) as pool:
            outputs = list(pool.map(run, batches))
    else:
        outputs = [run(idx) for idx in batches]
    results: list[Prediction | None] = [None] * count
    for idx, preds in zip(batches, outputs):
        for i, p in zip(idx, preds):
            results[i] = p
    return results  # type: ignore[return-value]


# How a kind's recognizer is built: cls(weights, device, threads, precision), weights a path, a loaded
# Checkpoint or None (the shipped model).
RecognizerFactory = Callable[[
    "str | os.PathLike | Checkpoint | None", "str | torch.device", "int | None", str], TextRecognizer]
