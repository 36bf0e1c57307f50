"""benchmarks/bench_server_lexicon_flood.py: its flood is the one of issue 36 (item 5), inside every default limit."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")

from crnn_server import Settings
from crnn_server.parsing import LIGHT_BODY_BYTES, _json_request
from tests.benchmark_scripts import benchmark_module


@pytest.fixture(scope="module")
def bench():
    yield from benchmark_module("bench_server_lexicon_flood")


def test_the_flood_request_is_heavy_yet_inside_every_default_limit(bench) -> None:
    body = bench.flood_body(64, 10_000)
    defaults = Settings()
    parsed = _json_request(body, defaults, True)  # raises if any limit refuses it
    assert LIGHT_BODY_BYTES < len(body) <= defaults.max_body_bytes
    assert len(parsed.images) == defaults.max_images == 64
    assert all(len(img.lexicon or ()) == defaults.max_lexicon_words for img in parsed.images)
    assert parsed.lexicon_words <= defaults.max_request_lexicon_words
    assert len({tuple(img.lexicon or ()) for img in parsed.images}) == 64  # no two images share a list


def test_the_flood_is_reproducible_and_sized_by_its_arguments(bench) -> None:
    assert bench.flood_body(2, 5, seed=1) == bench.flood_body(2, 5, seed=1)
    small = json.loads(bench.flood_body(3, 7, decoder="greedy"))
    assert small["decoder"] == "greedy" and [len(i["lexicon"]) for i in small["images"]] == [7, 7, 7]
    assert bench.cpu_model()  # lscpu's model name, or "unknown"
