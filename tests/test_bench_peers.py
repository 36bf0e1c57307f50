"""benchmarks/bench_peers.py: our reader's row is real and a missing peer is skipped cleanly, never a failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.benchmark_scripts import benchmark_module
from tests.word_images import render_word

WORDS = ["HOUSE", "river", "Open", "7421"]
PEERS = ["tesseract", "tesseract-list", "rapidocr", "rapidocr-batch", "easyocr"]


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


def _no_peers(bench, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every peer's module and program unfindable, ours untouched."""
    real = bench.importlib.util.find_spec
    peer_modules = {m for r in bench.READERS if r.peer != "crnn" for m in r.modules}
    monkeypatch.setattr(bench.importlib.util, "find_spec", lambda name, *a: None if name in peer_modules else real(name, *a))
    monkeypatch.setattr(bench.shutil, "which", lambda name, *a, **k: None)


def test_missing_peers_are_skipped_and_ours_is_measured(bench, folder: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    _no_peers(bench, monkeypatch)
    out = tmp_path / "results"
    status = bench.main(["--folders", str(folder), "--out", str(out), "--readers", "crnn-ocr", "crnn-api", *PEERS, "--no-startup"])
    assert status == 0
    report = json.loads((out / "peers.json").read_text(encoding="utf-8"))
    rows = {r["reader"]: r for r in report["rows"]}
    for name in ("crnn-ocr", "crnn-api"):
        row = rows[name]
        assert row["skipped"] is None and row["folder"] == "words" and row["images"] == len(WORDS)
        # The shipped model reads these clean renders; the row holds a real measurement, not a placeholder.
        assert row["correct"] >= len(WORDS) - 1 and row["accuracy"] == row["correct"] / len(WORDS)
        assert row["images_per_s"] > 0 and row["peak_rss_mb"] > 50
    for name in PEERS:
        assert rows[name]["skipped"] and "not" in rows[name]["skipped"] and rows[name]["accuracy"] is None
    assert "crnn-ocr" in report["versions"]["crnn"]
    table = (out / "peers.md").read_text(encoding="utf-8")
    assert "| crnn-ocr |" in table and "- tesseract: skipped:" in table and "- rapidocr: skipped:" in table
    assert table in capsys.readouterr().out


def test_a_peer_whose_import_fails_in_its_worker_is_skipped(bench, folder: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # Found by find_spec, but broken when imported (e.g. onnxruntime without its shared library): the worker
    # process reports it skipped with the import error instead of failing the run.
    fake = tmp_path / "site"
    (fake / "rapidocr_onnxruntime").mkdir(parents=True)
    (fake / "rapidocr_onnxruntime" / "__init__.py").write_text("raise ImportError('no onnxruntime here')\n")
    monkeypatch.setenv("PYTHONPATH", f"{fake}")
    monkeypatch.syspath_prepend(str(fake))
    out = tmp_path / "results"
    assert bench.main(["--folders", str(folder), "--out", str(out), "--readers", "rapidocr"]) == 0
    (row,) = json.loads((out / "peers.json").read_text(encoding="utf-8"))["rows"]
    assert row["reader"] == "rapidocr" and row["folder"] == "*" and "no onnxruntime here" in row["skipped"]


def test_limit_reads_the_first_lines(bench, folder: Path) -> None:
    assert bench.select(folder, 2) == [("img/0.png", "HOUSE"), ("img/1.png", "river")]
    assert len(bench.select(folder, None)) == len(WORDS)


def _report(rows: list[tuple[str, str, float]], versions: dict[str, dict[str, str]]) -> dict:
    return {"rows": [{"reader": r, "folder": f, "mode": "m", "images": 10, "accuracy": a, "correct": int(10 * a),
                      "seconds": 1.0, "images_per_s": 10.0, "reading_images_per_s": None, "startup_s": None,
                      "peak_rss_mb": 100.0, "skipped": None, "errors": 0, "extra": {}} for r, f, a in rows],
            "versions": versions, "folders": ["/x/A"], "machine": {"cpu_cores": 2, "processor": "cpu", "python": "3"},
            "date": "today", "command": "run"}


def test_merge_keeps_the_latest_row_per_reader_and_folder(bench) -> None:
    first = _report([("tesseract", "A", 0.5), ("crnn-ocr", "A", 0.8)], {"tesseract": {"tesseract": "5"}})
    rerun = _report([("tesseract", "A", 0.6)], {"crnn": {"crnn-ocr": "0.1"}})
    merged = bench.merge([first, rerun])
    assert [(r["reader"], r["accuracy"]) for r in merged["rows"]] == [("crnn-ocr", 0.8), ("tesseract", 0.6)]
    assert merged["versions"] == {"tesseract": {"tesseract": "5"}, "crnn": {"crnn-ocr": "0.1"}}
    table = bench.markdown(merged)
    assert "| tesseract | m | A | 10 | 60.00% | 10.0 | - | - | 100 |" in table and "tesseract 5" in table
