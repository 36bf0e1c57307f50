"""The micro-batcher: merging across requests, limits, back-pressure (503) and draining."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
import httpx

from crnn_server import Settings, create_app
from crnn_server.batching import BatcherClosed, MicroBatcher, QueueFull, QueueTimeout
from tests.test_server_api import LIMITS, files, png, tiny_recognizer
from tests.word_images import render_word


class FakeModel:
    """Records every batch; each result is (value of the array, options)."""

    def __init__(self, delay: float = 0.0, fail_on: Any = "never") -> None:
        self.batches: list[tuple[list[float], Any]] = []
        self.delay = delay
        self.fail_on = fail_on
        self.gate: threading.Event | None = None

    def __call__(self, arrays: list[np.ndarray], options: Any) -> list[tuple[float, Any]]:
        if self.gate is not None:
            self.gate.wait(5)
        time.sleep(self.delay)
        values = [float(a[0]) for a in arrays]
        self.batches.append((values, options))
        if options == self.fail_on:
            raise RuntimeError("bad options")
        return [(v, options) for v in values]


def arr(v: float) -> np.ndarray:
    return np.array([v], dtype=np.float32)


def run(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(coro_fn())


def test_concurrent_requests_are_merged_and_results_go_back_in_order() -> None:
    model = FakeModel()

    async def main() -> list[list[tuple[float, Any]]]:
        b = MicroBatcher(model, max_batch=16, max_wait_s=0.2)
        await b.start()
        out = await asyncio.gather(*[b.submit([arr(10 * i + j) for j in range(i + 1)], "greedy") for i in range(4)])
        await b.close()
        return out

    out = run(main)
    for i, res in enumerate(out):
        assert [v for v, _ in res] == [10 * i + j for j in range(i + 1)]
    assert len(model.batches) == 1 and len(model.batches[0][0]) == 10


def test_batches_hold_at_most_max_batch() -> None:
    model = FakeModel()

    async def main() -> list[tuple[float, Any]]:
        b = MicroBatcher(model, max_batch=4, max_wait_s=0.05)
        await b.start()
        res = await b.submit([arr(i) for i in range(10)])
        await b.close()
        return res

    assert [v for v, _ in run(main)] == list(range(10))
    assert [len(v) for v, _ in model.batches] == [4, 4, 2]


def test_no_wait_when_batching_is_off() -> None:
    model = FakeModel()

    async def main() -> float:
        b = MicroBatcher(model, max_batch=1, max_wait_s=10.0)
        await b.start()
        t = time.perf_counter()
        await asyncio.gather(*[b.submit([arr(i)]) for i in range(3)])
        await b.close()
        return time.perf_counter() - t

    assert run(main) < 2.0  # a full batch (of 1) never waits for max_wait
    assert [len(v) for v, _ in model.batches] == [1, 1, 1]


def test_options_split_a_batch_and_a_failure_stays_in_its_group() -> None:
    model = FakeModel(fail_on="beam")

    async def main() -> tuple[Any, Any]:
        b = MicroBatcher(model, max_batch=8, max_wait_s=0.2)
        await b.start()
        good, bad = await asyncio.gather(b.submit([arr(1), arr(2)], "greedy", key="greedy"),
                                         b.submit([arr(3)], "beam", key="beam"), return_exceptions=True)
        await b.close()
        return good, bad

    good, bad = run(main)
    assert good == [(1.0, "greedy"), (2.0, "greedy")]
    assert isinstance(bad, RuntimeError)
    assert sorted(opts for _, opts in model.batches) == ["beam", "greedy"]


def test_full_queue_refuses_at_once() -> None:
    model = FakeModel()
    model.gate = threading.Event()

    async def main() -> None:
        b = MicroBatcher(model, max_batch=2, max_wait_s=0.0, max_queue=3, queue_timeout_s=5)
        await b.start()
        with pytest.raises(QueueFull):
            await b.submit([arr(i) for i in range(4)])  # more than the queue holds
        first = asyncio.ensure_future(b.submit([arr(0), arr(1)]))  # taken by the model, which blocks
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(b.submit([arr(2), arr(3), arr(4)]))  # fills the queue
        await asyncio.sleep(0.01)
        assert b.depth == 3
        with pytest.raises(QueueFull):
            await b.submit([arr(5)])
        model.gate.set()
        assert len(await first) == 2 and len(await waiting) == 3
        await b.close()

    run(main)


def test_images_that_wait_too_long_time_out_and_are_dropped() -> None:
    model = FakeModel()
    depths: list[int] = []

    async def main() -> None:
        b = MicroBatcher(model, max_batch=8, max_wait_s=5.0, queue_timeout_s=0.05, on_depth=depths.append)
        await b.start()
        with pytest.raises(QueueTimeout):
            await b.submit([arr(1), arr(2)])
        assert b.depth == 0
        await b.close()

    run(main)
    assert model.batches == [] and depths[-1] == 0


def test_close_drains_queued_work_then_refuses() -> None:
    model = FakeModel(delay=0.02)

    async def main() -> None:
        b = MicroBatcher(model, max_batch=2, max_wait_s=1.0)
        await b.start()
        pending = [asyncio.ensure_future(b.submit([arr(i)])) for i in range(5)]
        await asyncio.sleep(0)  # let every request enqueue
        await b.close(timeout=10)
        assert [(await p)[0][0] for p in pending] == [0, 1, 2, 3, 4]
        with pytest.raises(BatcherClosed):
            await b.submit([arr(9)])

    run(main)


def test_cancelled_requests_do_not_reach_the_model() -> None:
    model = FakeModel()

    async def main() -> None:
        b = MicroBatcher(model, max_batch=8, max_wait_s=0.1)
        await b.start()
        gone = asyncio.ensure_future(b.submit([arr(1)]))
        await asyncio.sleep(0.01)
        gone.cancel()
        kept = await b.submit([arr(2)])
        assert kept[0][0] == 2.0
        await b.close()

    run(main)
    assert [v for v, _ in model.batches] == [[2.0]]


# ---- through the app ----------------------------------------------------------------------------------


async def _post_concurrently(settings: dict[str, Any], bodies: list[list[tuple[str, bytes]]]) -> tuple[list[httpx.Response], str]:
    app = create_app(Settings(**{**LIMITS, **settings}), tiny_recognizer(), model_name="tiny")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            responses = await asyncio.gather(*[c.post("/v1/recognize", files=files(b)) for b in bodies])
            metrics = (await c.get("/metrics")).text
    return list(responses), metrics


def sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)


def test_concurrent_http_requests_share_model_batches() -> None:
    words = ["one", "two", "three", "four", "five", "six"]
    images = [png(render_word(w)) for w in words]
    expected = [p.text for p in tiny_recognizer().recognize(images)]
    responses, metrics = asyncio.run(_post_concurrently(
        {"max_batch": 16, "max_wait_ms": 300}, [[(w, img)] for w, img in zip(words, images)]))
    assert [r.status_code for r in responses] == [200] * 6
    assert [r.json()["results"][0]["text"] for r in responses] == expected
    batches = sample(metrics, "crnn_batch_size_count")
    assert sample(metrics, "crnn_batch_size_sum") == 6
    assert batches < 6, "no two requests shared a batch"
    assert sample(metrics, 'crnn_batch_size_bucket{le="1.0"}') < batches or batches == 1


@pytest.mark.parametrize("settings,sizes,reason", [
    # The first request waits in the queue (max_wait) and fills it; the second does not fit.
    ({"max_queue": 4, "max_wait_ms": 500, "max_batch": 8}, [3, 2], "full"),
    ({"max_wait_ms": 5000, "queue_timeout_s": 0.1, "max_batch": 8}, [1], "timeout"),
])
def test_overload_gets_503_with_retry_after(settings: dict[str, Any], sizes: list[int], reason: str) -> None:
    img = png(render_word("busy"))
    responses, metrics = asyncio.run(_post_concurrently({**settings, "retry_after_s": 2}, [[("x", img)] * n for n in sizes]))
    refused = [r for r in responses if r.status_code == 503]
    assert len(refused) == 1 and all(r.status_code == 200 for r in responses if r not in refused)
    r = refused[0]
    assert r.headers["retry-after"] == "2"
    assert r.json()["error"]["code"] == "overloaded"
    assert sample(metrics, f'crnn_queue_rejected_total{{reason="{reason}"}}') == 1
    assert sample(metrics, "crnn_queue_depth") == 0


# ---- decoding is bounded (issue 16, item 1) ------------------------------------------------------


def test_decode_gate_keeps_slots_and_pixels_in_budget_in_arrival_order() -> None:
    from crnn_server.batching import DecodeGate

    async def main() -> tuple[list[int], DecodeGate]:
        gate = DecodeGate(max_decodes=2, max_pixels=100)
        started: list[int] = []

        async def decode(i: int, pixels: int) -> None:
            loop = asyncio.get_running_loop()
            await gate.acquire(pixels, loop.time() + 30)
            started.append(i)
            assert gate.decodes <= 2 and (gate.pixels <= 100 or gate.decodes == 1)
            await asyncio.sleep(0.01)
            gate.release(pixels)

        await asyncio.gather(*(decode(i, p) for i, p in enumerate([60, 50, 30, 200, 10, 10])))
        return started, gate

    started, gate = run(main)
    assert started == [0, 1, 2, 3, 4, 5]  # in order: the big one (alone over budget) is not starved
    assert gate.peak_decodes == 2 and gate.decodes == 0 and gate.pixels == 0


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_decode_gate_waiter_that_gives_up_leaves_no_trace(how: str) -> None:
    from crnn_server.batching import DecodeGate

    async def main() -> DecodeGate:
        gate = DecodeGate(max_decodes=1, max_pixels=100)
        loop = asyncio.get_running_loop()
        await gate.acquire(50, loop.time() + 1)
        waiter = asyncio.ensure_future(gate.acquire(50, loop.time() + (0.05 if how == "timeout" else 30)))
        await asyncio.sleep(0.01)
        if how == "cancel":
            waiter.cancel()
        with pytest.raises(QueueTimeout if how == "timeout" else asyncio.CancelledError):
            await waiter
        gate.release(50)
        await gate.acquire(100, loop.time() + 1)  # the budget is whole again
        gate.release(100)
        return gate

    gate = run(main)
    assert gate.decodes == 0 and gate.pixels == 0 and not gate._waiters


def test_a_decode_flood_is_bounded_and_sheds_with_queue_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small images, low limits: one decode at a time, 2 images' pixels in flight, 1 s of queue timeout.
    from crnn import Recognizer
    from crnn_server.engine import Engine
    from crnn_server.metrics import Metrics
    from crnn_server.request_types import DecodeOptions, ImageInput

    real_prepare = Recognizer.prepare
    in_flight = {"now": 0, "peak": 0}

    def slow_prepare(self: Recognizer, source: Any) -> np.ndarray:
        in_flight["now"] += 1
        in_flight["peak"] = max(in_flight["peak"], in_flight["now"])
        time.sleep(0.1)  # a big image's decode
        in_flight["now"] -= 1
        return real_prepare(self, source)

    monkeypatch.setattr(Recognizer, "prepare", slow_prepare)
    import crnn_server.engine

    monkeypatch.setattr(crnn_server.engine, "SMALL_PIXELS", 0)  # no fast lane: every request takes the gate
    word = png(render_word("flood"))
    pixels = render_word("flood").size
    settings = Settings(**{**LIMITS, "decode_workers": 1, "max_decode_pixels": 2 * pixels, "queue_timeout_s": 1.0})

    async def main() -> tuple[list[Any], Engine]:
        engine = Engine(settings, Metrics(), tiny_recognizer(), "tiny")
        await engine.start()
        try:
            images = [ImageInput(f"{i}.png", word) for i in range(4)]
            outcomes = await asyncio.gather(*(engine.recognize(images, DecodeOptions()) for _ in range(12)),
                                            return_exceptions=True)
        finally:
            await engine.stop()
        return outcomes, engine

    outcomes, engine = run(main)
    ok = [o for o in outcomes if isinstance(o, list)]
    shed = [o for o in outcomes if isinstance(o, QueueTimeout)]
    assert len(ok) + len(shed) == 12 and ok and shed  # 48 decodes of 0.1 s cannot all start within 1 s: the first requests are read, the rest shed
    assert all("text" in r for o in ok for r in o)
    assert in_flight["peak"] == 1 and engine.decode_gate.peak_decodes == 1
    assert engine.decode_gate.peak_pixels <= 2 * pixels and engine.decode_gate.pixels == 0


def test_the_decode_wait_counts_against_the_queue_timeout_and_answers_503(monkeypatch: pytest.MonkeyPatch) -> None:
    from crnn import Recognizer

    real_prepare = Recognizer.prepare
    monkeypatch.setattr(Recognizer, "prepare", lambda self, s: (time.sleep(0.2), real_prepare(self, s))[1])
    app = create_app(Settings(**{**LIMITS, "decode_workers": 1, "queue_timeout_s": 0.1}), tiny_recognizer(), "tiny")

    async def main() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                body = files([(f"{i}.png", png(render_word("slow"))) for i in range(3)])
                return list(await asyncio.gather(*(c.post("/v1/recognize", files=body) for _ in range(3))))

    responses = run(main)
    refused = [r for r in responses if r.status_code == 503]
    assert refused and all(r.json()["error"]["code"] == "overloaded" and r.headers["retry-after"] for r in refused)


def test_word_sized_requests_do_not_queue_behind_a_flood_of_large_images(monkeypatch: pytest.MonkeyPatch) -> None:
    from crnn import Recognizer
    import crnn_server.engine
    from crnn_server.engine import Engine
    from crnn_server.metrics import Metrics
    from crnn_server.request_types import DecodeOptions, ImageInput

    small = render_word("hi")
    large = np.kron(render_word("large"), np.ones((4, 4), np.uint8))
    monkeypatch.setattr(crnn_server.engine, "SMALL_PIXELS", small.size)
    real_prepare = Recognizer.prepare

    def prepare(self: Recognizer, source: Any) -> np.ndarray:
        out = real_prepare(self, source)
        if len(source) > len(png(small)):  # a large image: slow to decode
            time.sleep(0.1)
        return out

    monkeypatch.setattr(Recognizer, "prepare", prepare)
    settings = Settings(**{**LIMITS, "decode_workers": 1, "queue_timeout_s": 1.0})

    async def main() -> tuple[list[Any], Any]:
        engine = Engine(settings, Metrics(), tiny_recognizer(), "tiny")
        await engine.start()
        try:
            flood = [engine.recognize([ImageInput(f"{i}.png", png(large)) for i in range(4)], DecodeOptions())
                     for _ in range(10)]
            tasks = [asyncio.ensure_future(f) for f in flood]
            await asyncio.sleep(0.05)  # the flood holds the gate and its queue
            lone = await engine.recognize([ImageInput("w.png", png(small))], DecodeOptions())
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await engine.stop()
        return outcomes, lone

    outcomes, lone = run(main)
    assert "text" in lone[0]  # read, although the flood behind the gate sheds
    assert any(isinstance(o, QueueTimeout) for o in outcomes)


# ---- heavy requests are bounded (issue 36, item 5) ------------------------------------------------


def test_slot_gate_admits_in_arrival_order_and_a_slot_is_given_back_once() -> None:
    from crnn_server.batching import SlotGate

    async def main() -> tuple[list[int], SlotGate, bool]:
        gate = SlotGate(2)
        started: list[int] = []

        async def work(i: int) -> None:
            slot = await gate.enter(asyncio.get_running_loop().time() + 30)
            started.append(i)
            assert gate.decodes <= 2
            await asyncio.sleep(0.01)
            slot.leave()
            slot.leave()  # a second leave gives back nothing

        await asyncio.gather(*(work(i) for i in range(6)))
        slot = await gate.enter(asyncio.get_running_loop().time() + 30)
        slot2 = await gate.enter(asyncio.get_running_loop().time() + 30)
        try:
            await gate.enter(asyncio.get_running_loop().time() + 0.01)
            timed_out = False
        except QueueTimeout:
            timed_out = True
        slot.leave()
        slot2.leave()
        return started, gate, timed_out

    started, gate, timed_out = run(main)
    assert started == list(range(6)) and gate.peak_decodes == 2 and gate.decodes == 0 and timed_out
    assert not gate._waiters


def _blocked_builds(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Make Engine.build_lexicons wait (in its thread) until the returned `release` is set; `building` says it began."""
    from crnn_server.engine import Engine

    building, release = threading.Event(), threading.Event()
    real = Engine.build_lexicons

    def build(self: Engine, *args: Any) -> Any:
        building.set()
        release.wait(10)
        return real(self, *args)

    monkeypatch.setattr(Engine, "build_lexicons", build)
    return building, release


def _heavy(body: dict[str, Any]) -> dict[str, Any]:
    from tests.test_server_api import heavy_json

    return heavy_json(body)


def _lexicon_body(words_per_image: int, images: int = 2) -> dict[str, Any]:
    from tests.test_server_api import b64

    data = b64(png(render_word("heavy")))
    words = [f"w{i}" for i in range(words_per_image)]
    return {"images": [{"data": data, "lexicon": words}] * images, "decoder": "greedy"}


def test_heavy_requests_beyond_the_slots_wait_then_get_503_with_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    # 40 such requests at once got 408 body_timeout, /healthz took 9.3 s and RSS reached 3.8 GB: now one slot
    # (heavy_requests=1) is held by a request with 80 lexicon words (over max_lexicon_words, 50) until it is answered;
    # the next heavy request waits for it, then gets 503 + Retry-After. A light request is not held up.
    building, release = _blocked_builds(monkeypatch)
    settings = Settings(**{**LIMITS, "heavy_requests": 1, "queue_timeout_s": 0.2, "retry_after_s": 3})
    app = create_app(settings, tiny_recognizer(), model_name="tiny")

    async def main() -> tuple[httpx.Response, httpx.Response, httpx.Response, str]:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                first = asyncio.ensure_future(c.post("/v1/recognize", **_heavy(_lexicon_body(40))))
                assert await asyncio.to_thread(building.wait, 10)
                second = await c.post("/v1/recognize", **_heavy(_lexicon_body(40)))
                light = await c.post("/v1/recognize", files=files([("x.png", png(render_word("light")))]))
                release.set()
                return await first, second, light, (await c.get("/metrics")).text

    first, second, light, metrics = run(main)
    assert first.status_code == 200 and light.status_code == 200
    assert second.status_code == 503 and second.json()["error"]["code"] == "overloaded"
    assert second.headers["retry-after"] == "3"
    assert sample(metrics, 'crnn_queue_rejected_total{reason="heavy"}') == 1


def test_a_heavy_request_with_few_lexicon_words_gives_its_slot_back_once_parsed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Its memory is about its body's: holding the slot while its images are read would only slow the next one.
    building, release = _blocked_builds(monkeypatch)
    settings = Settings(**{**LIMITS, "heavy_requests": 1, "queue_timeout_s": 5.0})
    app = create_app(settings, tiny_recognizer(), model_name="tiny")

    async def main() -> tuple[httpx.Response, httpx.Response, bool]:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                first = asyncio.ensure_future(c.post("/v1/recognize", **_heavy(_lexicon_body(20))))  # 40 words <= 50
                assert await asyncio.to_thread(building.wait, 10)
                body = _lexicon_body(0, images=1)
                del body["images"][0]["lexicon"]
                second = await c.post("/v1/recognize", **_heavy(body))  # no lexicon: never builds
                first_still_blocked = not first.done()
                release.set()
                return await first, second, first_still_blocked

    first, second, first_still_blocked = run(main)
    assert second.status_code == 200 and first_still_blocked  # answered while the first held no slot
    assert first.status_code == 200
