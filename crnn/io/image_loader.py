"""Decoding input images for `crnn ocr` in worker processes, chunk by chunk, ahead of the model.

The workers are forked before torch is imported: they hold no torch state, fork in milliseconds, and
decode the first images on the spare core while the main process spends ~1 s importing torch and
loading the model (with threads instead, the GIL made that import slower and gained nothing). Where a
fork is not safe (not Linux, or torch already imported, e.g. inside a test or a notebook), the same
work runs in threads.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from multiprocessing import get_context

import numpy as np

from crnn.errors import CRNNError, LoaderError
from crnn.io.oriented_crops import OrientedCrop, prepare_oriented
from crnn.io.preprocess import PreprocessConfig, prepare

# (model input, None) or (None, error message); the input is an OrientedCrop when the loader was made ``oriented``.
Loaded = tuple[np.ndarray | OrientedCrop | None, str | None]
Chunk = list[tuple[str, np.ndarray | OrientedCrop | None, str | None]]  # (path, model input or None, error or None)

TASK_SIZE = 32  # paths per task sent to a worker: few round trips, results still arrive early


def _init_process() -> None:
    # Ctrl-C is the parent's to handle (it shuts the pool down); a worker must not print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import cv2

    cv2.setNumThreads(1)


def load_paths(paths: list[str], config: PreprocessConfig, oriented: bool = False) -> list[Loaded]:
    """Model inputs (32, W') float32 (OrientedCrops when ``oriented``) or an error message for each path; never raises."""
    out: list[Loaded] = []
    for path in paths:
        try:
            out.append((prepare_oriented(path, config) if oriented else prepare(path, config), None))
        except CRNNError as e:
            out.append((None, str(e)))
        except Exception as e:  # an unexpected decoder failure must not end a million-file run
            out.append((None, f"{path}: {type(e).__name__}: {e}"))
    return out


def fork_is_safe() -> bool:
    """Whether worker processes can be forked from this process now (Linux, torch not imported yet)."""
    return sys.platform.startswith("linux") and "torch" not in sys.modules


def make_pool(workers: int, processes: bool | None = None) -> Executor:
    """A pool of ``workers`` image decoders: forked processes when ``processes`` (default: when safe), else threads."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if processes is None:
        processes = fork_is_safe()
    if processes:
        # With the fork context every worker starts at the first submit (none is forked later, after
        # torch has started threads in the parent): the caller submits before importing torch.
        return ProcessPoolExecutor(workers, mp_context=get_context("fork"), initializer=_init_process)
    return ThreadPoolExecutor(workers, thread_name_prefix="crnn-load")


class ChunkLoader:
    """Chunks of loaded images, in input order, the next chunk loading while the caller uses this one.

    ``items`` yields (path, error): an error (e.g. a glob with no match) is passed through unread.
    Loading starts when the loader is made, so that it overlaps whatever the caller does next. At
    most two chunks are held at a time, so memory stays flat however many paths there are. ``oriented``:
    each image comes as a :class:`~crnn.io.oriented_crops.OrientedCrop`, for the orientation step.
    """

    def __init__(
        self, items: Iterable[tuple[str, str | None]], config: PreprocessConfig, pool: Executor, chunk_size: int = 2048,
        oriented: bool = False,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self._items = iter(items)
        self._config = config
        self._pool = pool
        self._chunk_size = chunk_size
        self._oriented = oriented
        self._pending = self._submit()

    def _submit(self) -> list[tuple[list[tuple[str, str | None]], Future[list[Loaded]] | None]]:
        """Send the next chunk's readable paths to the pool, TASK_SIZE at a time."""
        chunk = list(islice(self._items, self._chunk_size))
        tasks: list[tuple[list[tuple[str, str | None]], Future[list[Loaded]] | None]] = []
        for start in range(0, len(chunk), TASK_SIZE):
            part = chunk[start : start + TASK_SIZE]
            paths = [path for path, err in part if err is None]
            extra = (True,) if self._oriented else ()  # load_paths(paths, config) exactly as before without it
            tasks.append((part, self._pool.submit(load_paths, paths, self._config, *extra) if paths else None))
        return tasks

    def __iter__(self) -> Iterator[Chunk]:
        while self._pending:
            current, self._pending = self._pending, self._submit()
            chunk: Chunk = []
            for part, future in current:
                try:
                    loaded = iter(future.result() if future else ())
                except BrokenProcessPool as e:
                    # Every pending task fails with the pool, so which image killed it is not known.
                    raise LoaderError(f"an image-decoding process died (a decoder crash?); the images from "
                                      f"{part[0][0]} on were not read ({e})") from None
                for path, err in part:
                    chunk.append((path, None, err) if err is not None else (path, *next(loaded)))
            yield chunk
