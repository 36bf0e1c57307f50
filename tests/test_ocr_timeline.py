"""benchmarks/ocr_timeline.py: the decoding CPU counted as done alone (no network call, no image decoding beside it)."""

from __future__ import annotations

import pytest

from tests.benchmark_scripts import benchmark_module


@pytest.fixture(scope="module")
def timeline():
    yield from benchmark_module("ocr_timeline")


NETWORK = [("network", 1.0, 4.0, 3.0), ("network", 5.0, 5.5, 0.5)]  # (stage, start, end, thread CPU)


@pytest.mark.parametrize(
    "decoding,tasks,alone",
    [
        ((2.0, 3.0), [], 0.0),  # inside a network call: none of it alone
        ((6.0, 7.0), [], 0.4),  # after every network call: all of it
        ((3.5, 5.5), [], 0.2),  # 4 to 5 of 3.5 to 5.5 alone: half of its CPU
        ((6.0, 7.0), [(6.0, 6.5)], 0.2),  # an image-decoding task beside it for half of it
        ((0.0, 0.5), [], 0.0),  # before the first network call (start-up): not counted
    ],
    ids=["covered", "tail", "partly", "beside-a-task", "before-the-network"],
)
def test_lone_decoding_counts_the_share_of_cpu_that_ran_alone(timeline, decoding, tasks, alone) -> None:
    events = [*NETWORK, ("decoding", *decoding, 0.4)]
    total, lone = timeline.lone_decoding({"events": events, "tasks": [list(t) for t in tasks]})
    assert total == pytest.approx(0.4)
    assert lone == pytest.approx(alone)
