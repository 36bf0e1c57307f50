"""crnn_training.run_folder: a folder that holds a run is refused unless resumed or forced; --force clears only the run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crnn.errors import OutputPathError
from crnn_training.run_folder import RUN_FILES, check_run_folder, clear_run, run_files

WRITES = ("config.yaml", "metrics.jsonl", "last.pt", "best.safetensors", "curves.png", "tb")


@pytest.mark.parametrize("name", RUN_FILES)
def test_any_file_a_run_writes_marks_a_run_folder(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("x")
    assert run_files(tmp_path) == [name]
    with pytest.raises(OutputPathError, match=f"holds a run \\({name}\\); give --force"):
        check_run_folder(tmp_path, option="--out", writes=WRITES)
    assert check_run_folder(tmp_path, option="--out", writes=(), force=True) == tmp_path


def test_a_new_or_unrelated_folder_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert check_run_folder(tmp_path, option="out_dir", writes=WRITES) == tmp_path
    assert check_run_folder(tmp_path / "a" / "b", option="out_dir", writes=WRITES) == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # checking makes nothing


def test_the_resume_hint_names_the_folder(tmp_path: Path) -> None:
    (tmp_path / "last.pt").write_bytes(b"x")
    with pytest.raises(OutputPathError, match=f"give --resume {tmp_path} to continue it, or --force"):
        check_run_folder(tmp_path, option="out_dir", writes=WRITES, resumable=True)


def test_a_run_that_is_resumed_or_forced_never_replaces_a_folder_or_fifo(tmp_path: Path) -> None:
    (tmp_path / "last.pt").write_bytes(b"x")
    os.mkfifo(tmp_path / "metrics.jsonl")
    for kw in ({"force": True}, {"holds_run": True}):
        with pytest.raises(OutputPathError, match="metrics.jsonl: is not a regular file"):
            check_run_folder(tmp_path, option="out_dir", writes=WRITES, **kw)
    (tmp_path / "metrics.jsonl").unlink()
    (tmp_path / "tb").write_text("not a folder")
    with pytest.raises(OutputPathError, match="tb is not a folder"):
        check_run_folder(tmp_path, option="out_dir", writes=WRITES, force=True)


def test_clear_run_removes_the_run_files_and_nothing_else(tmp_path: Path) -> None:
    outside = tmp_path / "outside.pt"
    outside.write_bytes(b"keep")
    run = tmp_path / "run"
    (run / "tb").mkdir(parents=True)
    (run / "tb" / "events.out.tfevents.1.host").write_bytes(b"e")
    (run / "tb" / "mine.txt").write_text("keep")
    (run / "metrics.jsonl").write_text("{}\n")
    (run / "last.pt").symlink_to(outside)
    (run / "notes.txt").write_text("keep")
    (run / "log.jsonl").write_text("another trainer's")
    assert clear_run(run, WRITES) == ["metrics.jsonl", "last.pt", "tb"]
    assert sorted(p.name for p in run.iterdir()) == ["log.jsonl", "notes.txt", "tb"]
    assert [p.name for p in (run / "tb").iterdir()] == ["mine.txt"]
    assert outside.read_bytes() == b"keep"  # the link went, not what it pointed to
