"""benchmarks/bench_photos.py: which photos a folder gives (an annotated folder's in its order, else every image),
and that it imports nothing but the standard library (its rapidocr worker may run in another venv)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmark_scripts import BENCHMARKS, benchmark_module


@pytest.fixture(scope="module")
def bench():
    yield from benchmark_module("bench_photos")


@pytest.mark.parametrize("annotated, limit, expected", [
    (True, None, ["img/b.jpg", "img/a.png"]),  # the annotation file's order
    (True, 1, ["img/b.jpg"]),
    (False, None, ["img/a.png", "img/b.jpg", "img/sub/c.PNG"]),  # every image, sorted, recursive
])
def test_photos_of_a_folder(bench, tmp_path: Path, annotated: bool, limit: int | None, expected: list[str]) -> None:
    (tmp_path / "img" / "sub").mkdir(parents=True)
    for name in ("img/a.png", "img/b.jpg", "img/sub/c.PNG", "img/notes.txt"):
        (tmp_path / name).write_bytes(b"")
    if annotated:
        (tmp_path / "annotations.jsonl").write_text(
            "\n".join(json.dumps({"image": x, "words": []}) for x in ("img/b.jpg", "img/a.png")) + "\n")
    assert [p.relative_to(tmp_path).as_posix() for p in bench.photos_of(tmp_path, limit)] == expected


def test_imports_only_the_standard_library() -> None:
    code = (f"import sys; sys.argv = ['x']; import runpy; before = set(sys.modules); "
            f"runpy.run_path({str(BENCHMARKS / 'bench_photos.py')!r}, run_name='not_main'); "
            "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in ('crnn', 'numpy', 'rapidocr')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
