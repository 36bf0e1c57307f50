"""A fixed held-out part of a labeled folder, chosen by a hash of each image's path: the same split on every machine,
in every run and for every tool (training sources, validation folders, `crnn self-label --calibrate`)."""

from __future__ import annotations

import hashlib
import posixpath
from typing import Literal

Part = Literal["all", "train", "val"]


def holdout_key(rel_path: str) -> float:
    """A number in [0, 1) fixed by an image's path as written in labels.tsv (``./a.png`` and ``a.png`` agree)."""
    norm = posixpath.normpath(rel_path.replace("\\", "/"))
    digest = hashlib.sha256(norm.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def in_part(rel_path: str, fraction: float, part: Part) -> bool:
    """Whether an image belongs to ``part`` when ``fraction`` of its folder is held out ("val" is the held-out part)."""
    if part == "all":
        return True
    held_out = holdout_key(rel_path) < fraction
    return held_out if part == "val" else not held_out


def select_part(items: list[tuple[str, str]], fraction: float, part: Part) -> list[tuple[str, str]]:
    """The (relative path, text) items of ``part``, in their order."""
    if part == "all" or fraction <= 0 and part == "train":
        return list(items)
    return [item for item in items if in_part(item[0], fraction, part)]
