"""crnn.output_files: what a command may write, checked before work; a failed write leaves the old file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from crnn.errors import OutputPathError
from crnn.output_files import check_output_file, replaced_atomically


def test_a_new_file_in_an_existing_folder_is_accepted(tmp_path: Path) -> None:
    assert check_output_file(tmp_path / "new.onnx") == tmp_path / "new.onnx"


@pytest.mark.parametrize("overwrite", [True, False])
def test_an_existing_regular_file_needs_overwrite(tmp_path: Path, overwrite: bool) -> None:
    f = tmp_path / "old.onnx"
    f.write_bytes(b"old")
    if overwrite:
        check_output_file(f, overwrite=True)
    else:
        with pytest.raises(OutputPathError, match="--force"):
            check_output_file(f, overwrite=False)


def _fifo(tmp: Path) -> Path:
    p = tmp / "fifo"
    os.mkfifo(p)
    return p


def _folder(tmp: Path) -> Path:
    (tmp / "d").mkdir()
    return tmp / "d"


def _under_a_file(tmp: Path) -> Path:
    (tmp / "f").write_text("x")
    return tmp / "f" / "out.onnx"


def _missing_parent(tmp: Path) -> Path:
    return tmp / "missing" / "out.onnx"


@pytest.mark.parametrize(("make", "message"), [
    (_fifo, "not a regular file"),
    (_folder, "is a folder"),
    (_under_a_file, "not a folder"),
    (_missing_parent, "no such folder"),
])
def test_anything_but_a_regular_file_is_refused_and_left_as_it_was(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(OutputPathError, match=message) as info:
        check_output_file(path, option="--output")
    assert str(info.value).startswith(f"--output {path}")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no missing parent folder was created


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null")
def test_a_device_node_is_never_replaced() -> None:
    with pytest.raises(OutputPathError, match="not a regular file"):
        check_output_file("/dev/null")


def test_replaced_atomically_moves_the_new_file_into_place(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    with replaced_atomically(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), replaced_atomically(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("calibration failed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_the_new_file_gets_the_mode_of_a_plain_open_or_of_the_file_it_replaces(tmp_path: Path) -> None:
    new, old = tmp_path / "new.onnx", tmp_path / "old.onnx"
    old.write_bytes(b"old")
    os.chmod(old, 0o640)
    for target in (new, old):
        with replaced_atomically(target) as tmp:
            tmp.write_bytes(b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(new.stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(old.stat().st_mode) == 0o640
