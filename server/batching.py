"""An asyncio micro-batcher: merges the images of concurrent requests into model batches.

Requests put their images on one bounded queue; a single worker task takes up to ``max_batch``
of them, waiting at most ``max_wait_s`` after the oldest arrived for more to come, and runs the
model in a worker thread so that the event loop keeps accepting and parsing requests meanwhile.
Images wait at most ``queue_timeout_s`` before their batch starts; past that (or when the queue is
full) the request is refused so that load sheds instead of piling up.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

R = TypeVar("R")

# infer(arrays, options) -> one result per array, in order; runs in the worker thread.
InferFn = Callable[[list[np.ndarray], Any], Sequence[R]]
# on_batch(size, model_seconds, queue_waits): metrics hook, called on the event loop.
BatchHook = Callable[[int, float, list[float]], None]


class QueueFull(Exception):
    """More images are waiting than the queue holds."""


class QueueTimeout(Exception):
    """The request's images waited longer than the queue timeout before the model read them."""


class BatcherClosed(Exception):
    """The batcher is draining or stopped and takes no new work."""


@dataclass(eq=False)
class _Item(Generic[R]):
    array: np.ndarray
    options: Any
    key: Hashable
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)
    taken: bool = False


class MicroBatcher(Generic[R]):
    """Batches single images from many coroutines into calls of ``infer`` in one worker thread."""

    def __init__(
        self,
        infer: InferFn,
        max_batch: int = 32,
        max_wait_s: float = 0.005,
        max_queue: int = 512,
        queue_timeout_s: float = 10.0,
        on_batch: BatchHook | None = None,
        on_depth: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0 or queue_timeout_s <= 0:
            raise ValueError("max_batch, max_queue >= 1, max_wait_s >= 0 and queue_timeout_s > 0 are required")
        self.infer = infer
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self._on_batch = on_batch
        self._on_depth = on_depth
        self._pending: deque[_Item[R]] = deque()
        self._depth = 0  # live (not cancelled, not taken) items in _pending
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # One model thread: torch already spreads one batch over all cores, and a second
        # concurrent forward pass would only compete with it.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crnn-infer")

    @property
    def depth(self) -> int:
        """Images waiting for the model."""
        return self._depth

    @property
    def running(self) -> bool:
        """Whether the worker task runs and new work is accepted."""
        return self._task is not None and not self._task.done() and not self._closing

    async def start(self) -> None:
        """Start the worker task on the running loop."""
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="crnn-batcher")

    async def close(self, timeout: float | None = None) -> None:
        """Refuse new work, finish every queued image (drain), then stop the worker."""
        self._closing = True
        if self._task is not None:
            assert self._wakeup is not None
            self._wakeup.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except asyncio.TimeoutError:
                self._task.cancel()
                self._fail_pending(BatcherClosed("server stopped before these images were read"))
        self._executor.shutdown(wait=True)

    async def submit(self, arrays: Sequence[np.ndarray], options: Any = None, key: Hashable = None,
                     timeout: float | None = None) -> list[R]:
        """Results of ``infer`` for each array, in order; images of one ``key`` may share batches.

        ``timeout`` (default: queue_timeout_s) is how long the images may wait for their batch: the part of
        the queue timeout that decoding left. Raises QueueFull, QueueTimeout or BatcherClosed, or the exception
        ``infer`` raised.
        """
        wait_s = self.queue_timeout_s if timeout is None else max(0.0, timeout)
        if not self.running:
            raise BatcherClosed("the server is shutting down")
        if not arrays:
            return []
        if self._depth + len(arrays) > self.max_queue:
            raise QueueFull(f"{self._depth} images are already waiting (queue holds {self.max_queue})")
        loop = asyncio.get_running_loop()
        items = [_Item[R](a, options, key, loop.create_future()) for a in arrays]
        self._pending.extend(items)
        self._set_depth(self._depth + len(items))
        assert self._wakeup is not None
        self._wakeup.set()
        futures = [it.future for it in items]
        try:
            _, not_done = await asyncio.wait(futures, timeout=wait_s)
            if not_done:
                if any(not it.taken for it in items):
                    self._cancel(items)
                    raise QueueTimeout(f"images waited over {self.queue_timeout_s:g} s for the model")
                # Every image is in a running batch, which ends in bounded time: wait for it.
                await asyncio.wait(not_done)
        except asyncio.CancelledError:
            self._cancel(items)  # the client went away: don't spend model time on its images
            raise
        return [f.result() for f in futures]

    def _cancel(self, items: list[_Item[R]]) -> None:
        n = 0
        for it in items:
            if not it.taken and not it.future.done():
                it.future.cancel()
                n += 1
        self._set_depth(self._depth - n)

    def _set_depth(self, depth: int) -> None:
        self._depth = depth
        if self._on_depth is not None:
            self._on_depth(depth)

    def _fail_pending(self, error: Exception) -> None:
        while self._pending:
            it = self._pending.popleft()
            if not it.future.done():
                it.future.set_exception(error)
        self._set_depth(0)

    def _take(self, limit: int) -> list[_Item[R]]:
        """Pop up to ``limit`` live items, dropping cancelled ones."""
        batch: list[_Item[R]] = []
        while self._pending and len(batch) < limit:
            it = self._pending.popleft()
            if it.future.cancelled():
                continue
            it.taken = True
            batch.append(it)
        self._set_depth(self._depth - len(batch))
        return batch

    def _oldest_live(self) -> _Item[R] | None:
        while self._pending and self._pending[0].future.cancelled():
            self._pending.popleft()
        return self._pending[0] if self._pending else None

    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            oldest = self._oldest_live()
            if oldest is None:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # Wait for more images only while the oldest has waited less than max_wait: after a
            # long batch the queue already holds what arrived meanwhile, and it goes at once.
            deadline = oldest.enqueued + self.max_wait_s
            while self._depth < self.max_batch and not self._closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            batch = self._take(self.max_batch)
            if batch:
                await self._process(batch, loop)

    async def _process(self, batch: list[_Item[R]], loop: asyncio.AbstractEventLoop) -> None:
        started = time.monotonic()
        waits = [started - it.enqueued for it in batch]
        groups: dict[Hashable, list[_Item[R]]] = {}
        for it in batch:
            groups.setdefault(it.key, []).append(it)
        try:
            outcomes = await loop.run_in_executor(self._executor, self._infer_groups, list(groups.values()))
        except BaseException as e:  # the executor itself failed (e.g. shut down): fail the batch
            outcomes = [e] * len(groups)
        for items, outcome in zip(groups.values(), outcomes):
            for i, it in enumerate(items):
                if it.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    it.future.set_exception(outcome)
                else:
                    it.future.set_result(outcome[i])
        if self._on_batch is not None:
            self._on_batch(len(batch), time.monotonic() - started, waits)

    def _infer_groups(self, groups: list[list[_Item[R]]]) -> list[Sequence[R] | BaseException]:
        """Run ``infer`` once per option group (in the worker thread); an exception fails its group only."""
        out: list[Sequence[R] | BaseException] = []
        for items in groups:
            try:
                results = self.infer([it.array for it in items], items[0].options)
                if len(results) != len(items):
                    raise RuntimeError(f"infer returned {len(results)} results for {len(items)} images")
                out.append(results)
            except Exception as e:
                out.append(e)
        return out


class DecodeGate:
    """Bounds image decoding as the queue bounds the model: at most ``max_decodes`` images decode at once and
    at most ``max_pixels`` decoded pixels (from the images' headers) are in flight, so memory stays bounded
    however many requests arrive. A waiter that cannot start before its deadline gets QueueTimeout, like an
    image that waits too long for the model. Waiters are served in arrival order (no starvation of big images).
    """

    def __init__(self, max_decodes: int, max_pixels: int) -> None:
        if max_decodes < 1 or max_pixels < 1:
            raise ValueError("max_decodes and max_pixels must be >= 1")
        self.max_decodes = max_decodes
        self.max_pixels = max_pixels
        self.decodes = 0
        self.pixels = 0
        self.peak_decodes = 0  # for tests and metrics: the most ever in flight
        self.peak_pixels = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def _fits(self, pixels: int) -> bool:
        # An image alone may use the whole budget (one over it would otherwise never start; the per-image
        # limit, checked from the header before this, keeps it bounded).
        return self.decodes < self.max_decodes and (self.pixels + pixels <= self.max_pixels or self.decodes == 0)

    def _start(self, pixels: int) -> None:
        self.decodes += 1
        self.pixels += pixels
        self.peak_decodes = max(self.peak_decodes, self.decodes)
        self.peak_pixels = max(self.peak_pixels, self.pixels)

    async def acquire(self, pixels: int, deadline: float) -> None:
        """Wait for a slot and ``pixels`` of budget until ``deadline`` (loop time); QueueTimeout past it."""
        loop = asyncio.get_running_loop()
        if not self._waiters and self._fits(pixels):
            self._start(pixels)
            return
        future: asyncio.Future[None] = loop.create_future()
        entry = (pixels, future)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(future), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            if future.done() and not future.cancelled():  # granted just as the time ran out: give it back
                self.release(pixels)
            else:
                future.cancel()
                self._remove(entry)
            raise QueueTimeout("images waited too long to be decoded (the server is busy)") from None
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(pixels)
            else:
                future.cancel()
                self._remove(entry)
            raise

    def _remove(self, entry: tuple[int, asyncio.Future[None]]) -> None:
        try:
            self._waiters.remove(entry)
        except ValueError:
            pass
        self._wake()

    def release(self, pixels: int) -> None:
        """Give back a slot and its pixels; start the next waiters that fit, in order."""
        self.decodes -= 1
        self.pixels -= pixels
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            pixels, future = self._waiters[0]
            if future.cancelled():
                self._waiters.popleft()
                continue
            if not self._fits(pixels):
                return
            self._waiters.popleft()
            self._start(pixels)
            future.set_result(None)


class SlotGate(DecodeGate):
    """At most ``slots`` holders at once, served in arrival order, with a deadline (QueueTimeout past it): a DecodeGate
    that counts slots only. The server's gate for heavy requests (docs/server.md, "Heavy requests")."""

    def __init__(self, slots: int) -> None:
        super().__init__(slots, 1)

    async def enter(self, deadline: float) -> Slot:
        """A slot, once one is free before ``deadline`` (loop time); QueueTimeout past it."""
        await self.acquire(0, deadline)
        return Slot(self)


class Slot:
    """A slot of a SlotGate; leave() gives it back (to the next waiter, in order), once however often it is called."""

    def __init__(self, gate: SlotGate) -> None:
        self._gate: SlotGate | None = gate

    def leave(self) -> None:
        """Give the slot back (only the first call does)."""
        if self._gate is not None:
            self._gate.release(0)
            self._gate = None
