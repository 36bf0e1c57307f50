"""The labeled-folder format, read once for every user: ``labels.tsv`` (``relative_path<TAB>text`` per line) + images.

Training, ``crnn eval``, ``crnn compare`` and crnn_synth_data's FolderDataset all read folders through
:class:`LabeledFolder` (crnn_synth_data's FolderWriter writes the format). Torch-free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crnn.charset import Charset
from crnn.errors import ConfigError
from crnn.io.preprocess import load_image

LABELS_FILE = "labels.tsv"
# How many refused samples of one source are named in a log before the rest are only counted.
MAX_NAMED_PROBLEMS = 5
MALFORMED = "expected 'path<TAB>text'"


@dataclass(frozen=True)
class LabelProblem:
    """A refused line of labels.tsv: where it is, the image path it names (as written) and why."""

    labels: Path
    line: int
    rel: str
    reason: str

    def __str__(self) -> str:
        # A malformed line has no trustworthy path to name: only its place in the file.
        if self.reason == MALFORMED:
            return f"{self.labels}:{self.line}: {self.reason}"
        return f"{self.labels}:{self.line}: {self.rel}: {self.reason}"


@dataclass
class LabeledFolder:
    """A folder of word images with ``labels.tsv``: the usable (relative path, text) items and the refused lines."""

    root: Path
    items: list[tuple[str, str]] = field(default_factory=list)
    problems: list[LabelProblem] = field(default_factory=list)

    @classmethod
    def read(cls, root: str | os.PathLike[str], charset: Charset | None = None,
             check_files: bool = False) -> LabeledFolder:
        """Parse labels.tsv, in file order; raises ConfigError when there is none.

        Refused (each a LabelProblem): lines without a tab, an empty path or an empty text; texts the
        charset cannot encode; with ``check_files``, paths that are not files (otherwise a missing
        image only shows when it is loaded). Blank lines are skipped; lines end at \\n, \\r\\n or \\r,
        as the writer refuses labels holding them; undecodable bytes become U+FFFD (then usually
        refused by the charset) instead of ending the read.
        """
        root = Path(root)
        labels = root / LABELS_FILE
        if not labels.is_file():
            raise ConfigError(f"{root}: not a labeled folder (no {LABELS_FILE})")
        folder = cls(root)
        with open(labels, encoding="utf-8", errors="replace") as f:  # universal newlines
            for n, raw in enumerate(f, 1):
                line = raw.rstrip("\n")
                if not line.strip():
                    continue
                rel, sep, text = line.partition("\t")
                if not sep or not rel or not text:
                    folder.problems.append(LabelProblem(labels, n, rel, MALFORMED))
                elif charset is not None and not charset.supports(text):
                    bad = "".join(charset.unsupported(text))
                    folder.problems.append(LabelProblem(labels, n, rel, f"characters outside the charset {bad!r}"))
                elif check_files and not (root / rel).is_file():
                    folder.problems.append(LabelProblem(labels, n, rel, "missing image"))
                else:
                    folder.items.append((rel, text))
        return folder

    def __len__(self) -> int:
        return len(self.items)

    def path(self, i: int) -> Path:
        """The image file of item ``i`` (its path in labels.tsv is relative to the folder)."""
        return self.root / self.items[i][0]

    def load(self, i: int) -> tuple[np.ndarray, str]:
        """Gray image and text of item ``i``; raises InvalidImageError for a missing or corrupt image."""
        return load_image(self.path(i)), self.items[i][1]
