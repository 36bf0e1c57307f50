"""The inputs of `crnn ocr` (and `crnn export --calibration`): files, folders, glob patterns and stdin, expanded
lazily into image paths in a stable order."""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm", ".pbm"})


def expand_inputs(inputs: Sequence[str], stdin: IO[str] | None = None) -> Iterator[tuple[str, str | None]]:
    """Lazily yield (path, error) for files, folders (recursive, image files only), globs and '-' (stdin)."""
    for arg in inputs:
        if arg == "-":
            for line in stdin or sys.stdin:
                line = line.rstrip("\r\n")
                if line.strip():  # a blank or whitespace-only line is no path
                    yield line, None
        elif os.path.isdir(arg):
            yield from _walk_images(arg)
        elif os.path.exists(arg):
            yield arg, None
        else:
            matches = sorted(glob.iglob(arg, recursive=True)) if glob.has_magic(arg) else []
            if not matches:
                yield arg, "no such file, folder or matching pattern"
            for m in matches:
                if os.path.isdir(m):
                    yield from _walk_images(m)
                elif Path(m).suffix.lower() in IMAGE_EXTENSIONS:
                    yield m, None


def _walk_images(root: str) -> Iterator[tuple[str, str | None]]:
    """(path, None) for each image file under ``root``, and (folder, error) for each folder that cannot be read."""
    unreadable: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable.append):
        yield from _folder_errors(unreadable)  # os.walk reports a folder it cannot list before moving on
        dirnames.sort()
        for name in sorted(filenames):
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                yield os.path.join(dirpath, name), None
    yield from _folder_errors(unreadable)


def _folder_errors(errors: list[OSError]) -> Iterator[tuple[str, str | None]]:
    while errors:
        e = errors.pop(0)
        yield os.fsdecode(e.filename) if e.filename is not None else "?", f"cannot read folder ({e.strerror or e})"
