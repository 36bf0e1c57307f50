"""`crnn export` (crnn/commands/export.py): every path is checked before any work, and a failed export leaves the old file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from PIL import Image  # noqa: E402

import crnn.kinds.export  # noqa: E402
from crnn.cli import main as cli_main  # noqa: E402
from crnn.errors import OutputPathError  # noqa: E402
from crnn.kinds.export import export_onnx  # noqa: E402
from tests.tiny_models import tiny_checkpoint  # noqa: E402
from tests.word_images import render_word  # noqa: E402


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    return tiny_checkpoint(tmp_path / "tiny.safetensors")


@pytest.fixture
def no_export(monkeypatch: pytest.MonkeyPatch) -> None:
    """The export itself fails the test: what is refused must be refused before any work."""
    def export(*args: object, **kwargs: object) -> None:
        raise AssertionError("the export started")
    monkeypatch.setattr(crnn.kinds.export, "export_onnx", export)


def _kind(path: Path) -> str:
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    return "link" if stat.S_ISLNK(mode) else "fifo" if stat.S_ISFIFO(mode) else "char" if stat.S_ISCHR(mode) else \
        "dir" if stat.S_ISDIR(mode) else "file"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _one_line(err: str, *parts: str) -> None:
    assert err.startswith("crnn export: ") and err.count("\n") == 1, err
    for part in parts:
        assert part in err, err


@pytest.mark.parametrize("target", ["fifo", "device", "link-to-dev-null", "folder", "under-a-file",
                                    "missing-folder", "not-dot-onnx", "the-weights-file"])
def test_export_never_replaces_anything_but_a_regular_file(target: str, tmp_path: Path, ckpt: Path, no_export: None,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.onnx"
    expected = {"fifo": "not a regular file", "device": "not a regular file", "link-to-dev-null": "not a regular file",
                "folder": "is a folder", "under-a-file": "a parent of it is a file", "missing-folder": "no such folder",
                "not-dot-onnx": "must end in .onnx", "the-weights-file": "is the --weights file"}[target]
    if target == "fifo":
        os.mkfifo(out)
    elif target == "device":
        try:
            os.mknod(out, 0o644 | stat.S_IFCHR, os.makedev(1, 3))  # a /dev/null of our own
        except PermissionError:
            pytest.skip("mknod needs root")
    elif target == "link-to-dev-null":
        out.symlink_to("/dev/null")  # should a bug replace it, it replaces the link, never /dev/null
    elif target == "folder":
        out.mkdir()
    elif target == "under-a-file":
        out = ckpt / "out.onnx"
    elif target == "missing-folder":
        out = tmp_path / "new" / "sub" / "out.onnx"
    elif target == "not-dot-onnx":
        out = tmp_path / "out.txt"
    else:
        out = tmp_path / "same.onnx"
        out.symlink_to(ckpt)
    before, weights = _kind(out), ckpt.read_bytes()
    assert cli_main(["export", "--weights", str(ckpt), "--output", str(out)]) == 2
    _one_line(capsys.readouterr().err, f"--output {out}", expected)
    assert _kind(out) == before and _leftovers(tmp_path) == []
    assert not (tmp_path / "new").exists()  # a missing folder is never created
    assert ckpt.read_bytes() == weights


def test_export_onto_a_regular_file_replaces_it_with_the_umask_mode(tmp_path: Path, ckpt: Path) -> None:
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    os.chmod(out, 0o600)
    umask = os.umask(0o022)
    try:
        assert cli_main(["export", "--weights", str(ckpt), "-o", str(out)]) == 0
    finally:
        os.umask(umask)
    assert out.read_bytes()[:4] != b"old" and stat.S_IMODE(out.stat().st_mode) == 0o644
    assert _leftovers(tmp_path) == []


def test_export_onnx_checks_its_output_before_loading_the_weights(tmp_path: Path) -> None:
    (tmp_path / "folder.onnx").mkdir()
    with pytest.raises(OutputPathError, match="is a folder"):
        export_onnx(tmp_path / "no-such-checkpoint.safetensors", tmp_path / "folder.onnx")


@pytest.mark.parametrize("calibration", ["empty", "missing", "a-file"])
def test_int8_export_checks_the_calibration_folder_before_touching_the_output(
        calibration: str, tmp_path: Path, ckpt: Path, no_export: None, capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "old-int8.onnx"
    old.write_bytes(b"the int8 model of yesterday")
    folder = {"empty": tmp_path / "empty", "missing": tmp_path / "missing", "a-file": ckpt}[calibration]
    if calibration == "empty":
        folder.mkdir()
    assert cli_main(["export", "--weights", str(ckpt), "-o", str(old), "--int8", "--calibration", str(folder)]) == 2
    expected = {"empty": "no readable images found", "missing": "no such folder", "a-file": "is a file, not a folder"}
    _one_line(capsys.readouterr().err, f"--calibration {folder}", expected[calibration])
    assert old.read_bytes() == b"the int8 model of yesterday" and _leftovers(tmp_path) == []


@pytest.mark.parametrize("argv, message", [
    (["--calibration", "x"], "--calibration is for --int8 only"),
    (["--int8", "--calibration", "x", "--calibration-count", "0"], "--calibration-count must be >= 1, got 0"),
])
def test_export_options_are_checked_before_any_work(argv: list[str], message: str, tmp_path: Path, no_export: None,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["export", "-o", str(tmp_path / "m.onnx"), *argv]) == 2
    _one_line(capsys.readouterr().err, message)


def test_a_failed_int8_export_leaves_the_old_int8_file_and_reports_skipped_images(
        tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The fp32 export goes to a private temporary folder, never onto --output; a late failure keeps the old file."""
    import onnxruntime.quantization

    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for i, word in enumerate(["alpha", "Beta", "gamma42"]):
        Image.fromarray(render_word(word)).save(calibration / f"{i}.png")
    (calibration / "broken.png").write_bytes(b"not a png")
    old = tmp_path / "old-int8.onnx"
    old.write_bytes(b"the int8 model of yesterday")

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")
    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", fail)
    assert cli_main(["export", "--weights", str(ckpt), "-o", str(old), "--int8", "--calibration", str(calibration)]) == 2
    err = capsys.readouterr().err
    assert "skipped 1 of the calibration images" in err and "broken.png" in err
    assert err.splitlines()[-1] == "crnn export: disk full"
    assert old.read_bytes() == b"the int8 model of yesterday" and _leftovers(tmp_path) == []
