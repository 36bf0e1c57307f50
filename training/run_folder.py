"""Run folders: one that holds a run is refused before any work, unless the run is resumed or --force starts over.

Every trainer that writes a run folder (``crnn train``'s ``out_dir``, the baseline's ``--out``, the experiment's
``runs_dir/<slug>``) checks it with :func:`check_run_folder` when its config is loaded, and with ``--force``
clears the files of the old run (:func:`clear_run`) only once its own setup has succeeded: a run that fails to
start leaves the old one as it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from crnn.errors import OutputPathError
from crnn.output_files import check_output_file

TB_FOLDER = "tb"  # TensorBoard's events (crnn train)
# What any trainer of the project writes into a run folder: one of these there means the folder holds a run.
RUN_FILES: tuple[str, ...] = ("last.pt", "best.safetensors", "metrics.jsonl", "config.yaml", "curves.png", TB_FOLDER,
                              "log.jsonl", "done.json", "train.out")


def run_files(folder: str | os.PathLike[str]) -> list[str]:
    """The names of :data:`RUN_FILES` present in ``folder`` (none when it does not exist)."""
    p = Path(folder)
    return [name for name in RUN_FILES if os.path.lexists(p / name)] if p.is_dir() else []


def check_run_folder(folder: str | os.PathLike[str], *, option: str, writes: Iterable[str], force: bool = False,
                     resumable: bool = False, holds_run: bool = False) -> Path:
    """``folder`` as a Path when a run may be written there; raises OutputPathError (one line naming ``option``).

    Refused: a path that is not a folder, a folder that cannot be created or written, and a folder that holds
    a run (any of :data:`RUN_FILES`) unless ``force`` (start over) or ``holds_run`` (the run is being resumed).
    ``writes`` names the files the trainer writes there: with ``force`` or ``holds_run`` each must be a regular
    file it may replace (or absent). ``resumable``: the message offers ``--resume`` besides ``--force``.
    Missing parent folders are created later, by the trainer (run folders are made with their parents).
    """
    p = Path(folder)
    label = f"{option} {os.fsdecode(p)}"
    if os.path.lexists(p) and not p.is_dir():
        raise OutputPathError(f"{label}: is not a folder")
    existing = p.absolute()
    while not os.path.lexists(existing):  # the nearest existing folder: where the run folder would be made
        existing = existing.parent
    if not existing.is_dir():
        raise OutputPathError(f"{label}: {os.fsdecode(existing)} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"{label}: permission denied ({os.fsdecode(existing)} is not writable)")
    held = run_files(p)
    if held and not (force or holds_run):
        hint = f"give --resume {os.fsdecode(p)} to continue it, or --force" if resumable else "give --force"
        raise OutputPathError(f"{label}: holds a run ({', '.join(held)}); {hint} to start over in it "
                              "(its files are replaced), or choose another folder")
    if held:
        for name in writes:
            if name == TB_FOLDER:
                if os.path.lexists(p / name) and not (p / name).is_dir():
                    raise OutputPathError(f"{label}: {name} is not a folder")
            else:
                check_output_file(p / name, option=option)  # a folder, device or FIFO there is never replaced
    return p


def clear_run(folder: str | os.PathLike[str], names: Iterable[str]) -> list[str]:
    """Delete the old run's ``names`` in ``folder`` (regular files; in ``tb`` its event files); the names deleted."""
    p = Path(folder)
    gone = []
    for name in names:
        if name == TB_FOLDER:
            events = [f for f in (p / name).glob("events.out.tfevents.*") if f.is_file() and not f.is_symlink()]
            for f in events:
                f.unlink()
            if events:
                gone.append(name)
        elif (p / name).is_file() or (p / name).is_symlink():
            (p / name).unlink()  # a symlink itself, never what it points to
            gone.append(name)
    return gone
