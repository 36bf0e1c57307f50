"""The files a command writes: checked before any work, replaced atomically, never anything but a regular file."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from crnn.errors import OutputPathError


def check_output_file(path: str | os.PathLike[str], *, option: str = "--output", overwrite: bool = True) -> Path:
    """``path`` as a Path when a command may write a regular file there; raises OutputPathError (naming
    ``option``) for a folder, a device, FIFO or socket, a missing or non-folder parent, no permission, or an
    existing file when ``overwrite`` is False. A missing parent folder is never created."""
    p = Path(path)
    label = f"{option} {os.fsdecode(p)}"
    try:
        st = os.stat(p)  # follows a symlink: what would be written through it
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise OutputPathError(f"{label}: a parent of it is a file, not a folder") from None
    except OSError as e:
        raise OutputPathError(f"{label}: {e.strerror or e}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise OutputPathError(f"{label}: is a folder, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise OutputPathError(f"{label}: is not a regular file (a device, FIFO or socket); refusing to replace it")
        if not overwrite:
            raise OutputPathError(f"{label}: exists; give --force to replace it")
    parent = p.absolute().parent
    if not parent.exists():
        raise OutputPathError(f"{label}: no such folder {os.fsdecode(parent)}")
    if not parent.is_dir():
        raise OutputPathError(f"{label}: {os.fsdecode(parent)} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK) or (st is not None and not os.access(p, os.W_OK)):
        raise OutputPathError(f"{label}: permission denied")
    return p


@contextlib.contextmanager
def replaced_atomically(path: str | os.PathLike[str], *, option: str = "--output",
                        overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an error, move it onto ``path``
    (checked again first), else delete it: a failed command leaves ``path`` as it was."""
    import tempfile  # only the commands that replace files need it, not `crnn ocr`'s start-up

    target = check_output_file(path, option=option, overwrite=overwrite)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.absolute().parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp makes the file 0600; the result gets the mode a plain open() would give (or the replaced file's).
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(tmp, mode)
    try:
        yield tmp
        check_output_file(target, option=option, overwrite=overwrite)  # nothing else appeared there meanwhile
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
