"""The labeled-folder format (crnn.io.labeled_folder): parsing, problems, paths; and its readers agree."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crnn.charset import Charset
from crnn.errors import ConfigError, InvalidImageError
from crnn.io.labeled_folder import LABELS_FILE, MALFORMED, LabeledFolder

IMAGES = ("a.png", "b.png", "sub/c.png")


def _folder(root: Path, labels: str | bytes) -> Path:
    """A folder with tiny images a.png, b.png, sub/c.png and the given labels.tsv contents."""
    for rel in IMAGES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 16), 100, np.uint8)).save(root / rel)
    (root / LABELS_FILE).write_bytes(labels if isinstance(labels, bytes) else labels.encode("utf-8"))
    return root


@pytest.mark.parametrize(
    ("labels", "items"),
    [
        ("a.png\tHello\nb.png\tWorld\n", [("a.png", "Hello"), ("b.png", "World")]),
        ("a.png\tHello\nb.png\tWorld", [("a.png", "Hello"), ("b.png", "World")]),  # no final newline
        ("a.png\tHello\r\nb.png\tWorld\r\n", [("a.png", "Hello"), ("b.png", "World")]),  # Windows line ends
        ("\n  \na.png\tHello\n\n", [("a.png", "Hello")]),  # blank and whitespace-only lines
        ("sub/c.png\ttwo words \n", [("sub/c.png", "two words ")]),  # text kept as written
        ("a.png\tx\ty\n", [("a.png", "x\ty")]),  # the first tab separates
        ("missing.png\tGone\n", [("missing.png", "Gone")]),  # found missing only when loaded
    ],
)
def test_items(tmp_path: Path, labels: str, items: list[tuple[str, str]]) -> None:
    folder = LabeledFolder.read(_folder(tmp_path, labels))
    assert folder.items == items and folder.problems == [] and len(folder) == len(items)


@pytest.mark.parametrize(
    ("line", "check_files", "message"),
    [
        ("no tab here", False, f"3: {MALFORMED}"),
        ("\tNoPath", False, f"3: {MALFORMED}"),
        ("a.png\t", False, f"3: {MALFORMED}"),
        ("a.png\tcaf\u00e9", False, "3: a.png: characters outside the charset '\u00e9'"),
        ("a.png\tcaf\u00e9", True, "3: a.png: characters outside the charset '\u00e9'"),  # charset first
        ("missing.png\tGone", True, "3: missing.png: missing image"),
        ("sub\tGone", True, "3: sub: missing image"),  # a folder is not an image
    ],
)
def test_problems(tmp_path: Path, line: str, check_files: bool, message: str) -> None:
    root = _folder(tmp_path, f"a.png\tok\n\n{line}\nb.png\tfine\n")
    folder = LabeledFolder.read(root, Charset(), check_files=check_files)
    assert folder.items == [("a.png", "ok"), ("b.png", "fine")]
    assert [str(p) for p in folder.problems] == [f"{root / LABELS_FILE}:{message}"]


def test_problems_keep_file_order(tmp_path: Path) -> None:
    root = _folder(tmp_path, "x\nmissing.png\tA\na.png\t\u00fc\nb.png\tB\n")
    folder = LabeledFolder.read(root, Charset(), check_files=True)
    assert [(p.line, p.rel) for p in folder.problems] == [(1, "x"), (2, "missing.png"), (3, "a.png")]
    assert folder.items == [("b.png", "B")]


def test_undecodable_bytes_are_refused_not_fatal(tmp_path: Path) -> None:
    folder = LabeledFolder.read(_folder(tmp_path, b"a.png\tok\nb.png\tbad\xff\n"), Charset())
    assert folder.items == [("a.png", "ok")] and "'\ufffd'" in str(folder.problems[0])


def test_only_line_breaks_end_a_line(tmp_path: Path) -> None:
    # The writer refuses only tabs and \n, \r in labels, so other Unicode line separators are text.
    folder = LabeledFolder.read(_folder(tmp_path, "a.png\tx\u2028y\x85z\x0c\n"))
    assert folder.items == [("a.png", "x\u2028y\x85z\x0c")]


def test_no_labels_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a labeled folder"):
        LabeledFolder.read(tmp_path)


def test_paths_and_loading(tmp_path: Path) -> None:
    folder = LabeledFolder.read(_folder(tmp_path, "sub/c.png\tC\nmissing.png\tM\n"))
    assert folder.path(0) == tmp_path / "sub" / "c.png"
    gray, text = folder.load(0)
    assert gray.shape == (8, 16) and gray.dtype == np.uint8 and text == "C"
    with pytest.raises(InvalidImageError, match="no such file"):
        folder.load(1)


def test_reading_a_folder_does_not_import_torch() -> None:
    code = "import sys, crnn.io.labeled_folder; print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.stdout.strip() == "False", res.stderr


def test_training_and_synth_readers_agree(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Both applications read through the library: same items, same problems in the same order."""
    from crnn.io.preprocess import PreprocessConfig
    from crnn_synth_data import FolderDataset
    from crnn_training.data import load_labeled_arrays

    root = _folder(tmp_path, "a.png\tA\nno tab\nb.png\t\u00e9\nmissing.png\tM\nsub/c.png\tC\n")
    with caplog.at_level(logging.WARNING):
        ds = FolderDataset(root)
    assert ds.items == [("a.png", "A"), ("sub/c.png", "C")] and ds.skipped == 3
    assert "labels.tsv:2 no tab (expected 'path<TAB>text')" in caplog.text
    assert "labels.tsv:4 missing.png (missing image)" in caplog.text
    _, texts, paths, problems = load_labeled_arrays(root, Charset(), PreprocessConfig())
    assert texts == ["A", "C"] and paths == [str(root / "a.png"), str(root / "sub/c.png")]
    # Training checks files only when it loads them, so the missing image comes after the label problems.
    assert [p.split(LABELS_FILE)[-1] for p in problems[:2]] == [f":2: {MALFORMED}",
                                                                ":3: b.png: characters outside the charset '\u00e9'"]
    assert problems[2].endswith("missing.png: no such file")
