"""Tests of benchmarks/multiword_spaces.py: the dropped-space counts on hand-made readings, and the gaps from boxes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.benchmark_scripts import benchmark_module


@pytest.fixture(scope="module")
def spaces() -> Iterator[ModuleType]:
    yield from benchmark_module("multiword_spaces")


@pytest.mark.parametrize(
    ("label", "reading", "kept"),
    [("AT HIGH", "AT HIGH", [True]), ("AT HIGH", "ATHIGH", [False]), ("at high st", "AT HIGHST", [True, False]),
     ("fish and chips", "fishand chips", [False, True]), ("a b", "", [False]), ("ab", "a b", [])],
)
def test_kept_spaces(spaces: ModuleType, label: str, reading: str, kept: list[bool]) -> None:
    assert spaces.kept_spaces(label, reading) == kept


def test_space_stats(spaces: ModuleType) -> None:
    pairs = [("AT HIGH", "ATHIGH"), ("Open Daily", "open daily"), ("Fish & Chips", "Fish & Chips"), ("a b c", "a b d")]
    s = spaces.space_stats(pairs)
    assert s["lines"] == 4 and s["fewer_spaces"] == 0.25 and s["more_spaces"] == 0.0
    assert s["line_acc_case"] == 0.25 and s["line_acc_nocase"] == 0.5
    assert s["line_acc_case_nospace"] == 0.5 and s["line_acc_nocase_nospace"] == 0.75
    assert s["letters_right"] == 0.75 and s["fewer_spaces_letters_right"] == pytest.approx(1 / 3)
    assert s["words_found"] == pytest.approx((0 + 2 + 3 + 2) / 10)  # a split at spaces finds 7 of the 10 words (case aside)
    assert s["spaces_kept"] == pytest.approx(5 / 6)


def test_word_gaps_and_readings(spaces: ModuleType, tmp_path: Path) -> None:
    boxes = np.array([[0, 0, 5, 10], [6, 0, 10, 10], [14, 0, 20, 10], [25, 2, 30, 10]], np.float32)
    assert spaces.word_gaps("ab c d", boxes) == pytest.approx([0.4, 0.5])
    assert spaces.word_gaps("abcd", boxes) == []
    assert spaces.word_gaps("ab c", boxes) is None  # boxes of another text
    (tmp_path / "labels.tsv").write_text("images/0.png\tAT HIGH\nimages/1.png\tOPEN\n", encoding="utf-8")
    errors = tmp_path / "errors.tsv"
    errors.write_text(f"path\ttarget\tprediction\tconfidence\n{tmp_path}/images/0.png\tAT HIGH\tATHIGH\t0.5\n", encoding="utf-8")
    assert spaces.read_pairs(tmp_path, errors) == [("images/0.png", "AT HIGH", "ATHIGH"), ("images/1.png", "OPEN", "OPEN")]


def test_read_scores_the_lines_as_decoded_and_with_inferred_spaces(spaces: ModuleType, tmp_path: Path) -> None:
    from PIL import Image

    from tests.photo_fakes import line_photo

    (tmp_path / "images").mkdir()
    for i, words in enumerate([["OPEN", "DAILY"], ["HELLO", "WORLD"]]):
        photo = line_photo(words)[30:90]
        Image.fromarray(photo).save(tmp_path / "images" / f"{i}.png")
    (tmp_path / "labels.tsv").write_text("images/0.png\tOPEN DAILY\nimages/1.png\tHELLO WORLD\n", encoding="utf-8")
    read = spaces.read_with_inferred_spaces(tmp_path, "default", ["greedy"], [0.01, None], [2.5, None])
    assert set(read) == {"greedy", "greedy P=0.01 G=2.5", "greedy P=0.01 G=None", "greedy P=None G=2.5"}
    assert all([(r, t) for r, t, _ in rows] == [("images/0.png", "OPEN DAILY"), ("images/1.png", "HELLO WORLD")]
               for rows in read.values())
    for name, rows in read.items():  # inferred spaces only add spaces to the decoded text
        assert [t.replace(" ", "") for _, _, t in rows] == [t.replace(" ", "") for _, _, t in read["greedy"]]
        assert all(t.count(" ") >= d.count(" ") for (_, _, t), (_, _, d) in zip(rows, read["greedy"]))
    out = tmp_path / "out.json"
    assert spaces.main([str(tmp_path), "--read", "default", "--decoder", "greedy", "--json", str(out)]) == 0
    assert set(__import__("json").loads(out.read_text())) == {"greedy", "greedy P=0.01 G=None"}
