"""The segmented-character baseline (issue 7): segment a word into characters, then classify the crops.

``segment`` (binarise, connected components, merge, split) -> ``crops_from_boxes`` -> ``SegCharModel``
(CNN per crop, bidirectional RNN over the crops, softmax per crop) -> ``BaselineRecognizer``, which has the
public methods of ``crnn.Recognizer``. ``crnn.reading.recognizer.load_recognizer`` picks it by checkpoint type.
"""

from __future__ import annotations

from crnn.models.baseline.model import BaselineConfig, SegCharModel, crops_from_boxes
from crnn.models.baseline.segment import SegmentConfig, segment, segmentation_stats

__all__ = ["BaselineConfig", "SegCharModel", "SegmentConfig", "crops_from_boxes", "segment", "segmentation_stats"]
