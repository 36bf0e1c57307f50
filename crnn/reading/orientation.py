"""Reading crops in any orientation (issue 18): which way a crop's text runs, and turning it upright.

A tiny CNN (``crnn.models.orientation``; its file format ``crnn.checkpoints.orientation_file``, weights
``weights/orientation.safetensors``) looks at the raw crop, before the 32-px resize, and says how its text
appears: upright (``"0"``), turned 90 / 180 / 270 degrees clockwise, or ``"stacked"`` (upright letters one under
the other). The crop is then turned upright (``np.rot90``) or, for stacked letters, cut into letters laid side by side, and read as usual. A turn is kept
only when the recognizer reads the turned crop more confidently than the crop as it came (``read_oriented``):
the classifier proposes, the recognizer's own evidence confirms.

The crops' views and turns are images in (crnn/io/oriented_crops.py: the image loaders of ``crnn ocr`` prepare
them in processes without torch); this module holds the classifier and the confirmed reading. It is torch-free
too: the classifier imports torch only when it is built, so ``--orientation none`` loads nothing of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import numpy as np

from crnn.errors import CheckpointError
from crnn.io.oriented_crops import ORIENTATIONS, THUMB_HEIGHT, THUMB_WIDTH, OrientedCrop, from_frame
from crnn.io.preprocess import PreprocessConfig

OrientationMode = Literal["auto", "none"]
ORIENTATION_MODES = ("auto", "none")
# The shipped classifier's weights, beside the recognizer's: crnn/weights/ in a wheel, weights/ in a clone.
_PACKAGE = Path(__file__).resolve().parents[1]  # crnn/, the package (this module is in a sub-package)
DEFAULT_ORIENTATION_WEIGHTS = next(
    (p for p in (_PACKAGE / "weights" / "orientation.safetensors", _PACKAGE.parent / "weights" / "orientation.safetensors")
     if p.exists()),
    _PACKAGE.parent / "weights" / "orientation.safetensors",
)


class OrientationClassifier:
    """Says how the text of crops appears (ORIENTATIONS), in batches of up to ``batch_size`` crops.

    A crop's answer does not depend on its batch: every crop is a 64 x 64 square (no padding), and the network
    has no layer that mixes the images of a batch (tested: the labels alone and in batches are the same).

    ``min_confidence``: a crop is turned only when the classifier gives its orientation at least this
    probability; otherwise it is read upright, as without the classifier.
    """

    def __init__(self, weights: str | os.PathLike | None = None, min_confidence: float | None = None,
                 batch_size: int = 64) -> None:
        from crnn.checkpoints.orientation_file import load_orientation_model  # torch, only now

        path = weights or DEFAULT_ORIENTATION_WEIGHTS
        self.model, classes, self.metadata = load_orientation_model(path)
        if classes != list(ORIENTATIONS) or self.model.input_size != (THUMB_HEIGHT, THUMB_WIDTH):
            raise CheckpointError(f"{path}: classes {classes} or input size {self.model.input_size} are not this "
                                  f"version's ({', '.join(ORIENTATIONS)}; {THUMB_HEIGHT}x{THUMB_WIDTH} px)")
        self.batch_size = batch_size
        default = float(self.metadata.get("min_confidence", 0.5))
        self.min_confidence = default if min_confidence is None else min_confidence

    def probabilities(self, thumbs: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities (N, len(ORIENTATIONS)) of classifier inputs, in their long-side-horizontal frame
        (see :func:`classifier_input`)."""
        import torch

        out = np.zeros((len(thumbs), len(ORIENTATIONS)), np.float32)
        with torch.inference_mode():
            for start in range(0, len(thumbs), self.batch_size):
                x = torch.from_numpy(np.stack(thumbs[start : start + self.batch_size]).astype(np.float32))[:, None]
                out[start : start + len(x)] = torch.softmax(self.model(x), 1).numpy()
        return out

    def classify(self, thumbs: Sequence[np.ndarray], tall: Sequence[bool]) -> list[str]:
        """The orientation of each crop from its :func:`classifier_input` ("0" unless the classifier is at least
        ``min_confidence`` sure of another)."""
        probs = self.probabilities(thumbs)
        labels = []
        for p, t in zip(probs, tall):
            k = int(p.argmax())
            label = from_frame(ORIENTATIONS[k], t)
            labels.append(label if label != "0" and p[k] >= self.min_confidence else "0")
        return labels

    def describe(self) -> dict[str, Any]:
        """The classifier's classes, threshold and training facts."""
        return {"classes": list(ORIENTATIONS), "min_confidence": self.min_confidence, **self.metadata}


def orient_crops(
    crops: Sequence[OrientedCrop], classifier: OrientationClassifier, config: PreprocessConfig
) -> tuple[list[np.ndarray], list[str]]:
    """Model inputs (32, W') of the crops, each read as the classifier says its text appears, and those orientations."""
    labels = classifier.classify([c.thumb for c in crops], [c.tall for c in crops]) if crops else []
    return [c.model_input(o, config) for c, o in zip(crops, labels)], labels


class _Reading(Protocol):
    confidence: float


ReadingT = TypeVar("ReadingT", bound=_Reading)


def confirm_turn(turned: _Reading, upright: _Reading) -> bool:
    """Whether to keep a crop turned: only when its turned reading is more confident than its upright one.

    The classifier sees a 32 x 128 thumbnail; the recognizer sees the text. An upright word the classifier takes
    for upside down reads well as it came and badly turned, so the turn is dropped; a word really turned reads
    badly as it came. Ties keep the crop as it came (what ``--orientation none`` reads).
    """
    return turned.confidence > upright.confidence


def read_oriented(
    read: Callable[[list[np.ndarray]], list[ReadingT]], crops: Sequence[OrientedCrop],
    classifier: OrientationClassifier, config: PreprocessConfig,
) -> tuple[list[ReadingT], list[str]]:
    """Each crop read as the classifier says its text appears, the turn confirmed by :func:`confirm_turn`, and the
    orientation used ("0" where the turn was not confirmed). ``read`` maps model inputs (32, W') to readings with a
    ``confidence``, in order; crops the classifier would turn are read twice, the others once."""
    arrays, labels = orient_crops(crops, classifier, config)
    readings = read(arrays) if crops else []
    turned = [i for i, label in enumerate(labels) if label != "0"]
    if turned:
        keep_confirmed_turns(readings, labels, dict(zip(turned, read([crops[i].upright for i in turned]))))
    return readings, labels


def keep_confirmed_turns(readings: list[ReadingT] | dict[int, ReadingT], labels: list[str] | list[str | None],
                         uprights: dict[int, ReadingT]) -> None:
    """In place: where a turned crop's reading (``readings[i]``) is not confirmed against its reading as it came
    (``uprights[i]``, :func:`confirm_turn`), take the upright reading and the orientation "0"."""
    for i, upright in uprights.items():
        if not confirm_turn(readings[i], upright):
            readings[i], labels[i] = upright, "0"


def load_orientation(mode: str | None) -> OrientationClassifier | None:
    """The classifier for ``mode`` ("auto": the shipped one; "none" or None: no orientation step)."""
    if mode is None or mode == "none":
        return None
    if mode == "auto":
        return OrientationClassifier()
    raise ValueError(f"orientation must be one of {', '.join(ORIENTATION_MODES)}, got {mode!r}")
