"""PaddleOCR's PP-OCRv6 small text detector (DB, ONNX), as the ``rapidocr==3.10.0`` wheel ships it, on ONNX Runtime.

The extra ``crnn-ocr[detect]`` installs rapidocr (Apache 2.0), whose wheel holds the model file
``rapidocr/models/PP-OCRv6_det_small.onnx``; nothing is downloaded. The steps around the network are rapidocr's own
functions, with its pipeline's default settings (its config.yaml, ``Global`` and ``Det``), so that our boxes are the
ones its pipeline finds: the photo scaled to at most 2,000 px on the long side (and at least 30 on the short one),
very wide or very low photos padded above and below, the network's input scaled so its short side is at least 736 px
(``DetPreProcess``), and Differentiable Binarization's post-processing (``DBPostProcess``: threshold 0.3, box score
0.5, unclip ratio 1.6, dilation on). We run the network ourselves on onnxruntime, with our thread setting, and do not
import rapidocr's ``RapidOCR`` pipeline (its recognizer, classifier and model downloads).
Importing those functions costs about 1-2 s once per process (rapidocr's package imports omegaconf and its engine
registry with them); this module imports them only when a detector is built.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from crnn.detection.detector import DetectedText, DetectorKind, register_detector
from crnn.errors import BackendError

MODEL_FILE = "PP-OCRv6_det_small.onnx"
RAPIDOCR_VERSION = "3.10.0"
# rapidocr 3.10.0's pipeline defaults (rapidocr/config.yaml): Global.max_side_len, min_side_len,
# width_height_ratio, min_height; Det.limit_side_len, limit_type, thresh, box_thresh, unclip_ratio, use_dilation.
MAX_SIDE, MIN_SIDE = 2000, 30
WIDE_RATIO, MIN_HEIGHT = 8, 30
LIMIT_SIDE, LIMIT_TYPE = 736, "min"
THRESH, BOX_THRESH, UNCLIP_RATIO = 0.3, 0.5, 1.6

_MISSING = "the text detector needs rapidocr and onnxruntime; install the extra: pip install 'crnn-ocr[detect]'"


def model_path() -> Path:
    """The detector's .onnx file inside the installed rapidocr package; BackendError when rapidocr is missing."""
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(_MISSING)
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / MODEL_FILE
    if not path.is_file():
        raise BackendError(f"{path} is missing: the detector needs rapidocr=={RAPIDOCR_VERSION}, whose wheel ships it")
    return path


class PPOCRDetector:
    """A TextDetector: PP-OCRv6 small's DB text detector; its regions are text LINES (several words each)."""

    name = "ppocr-v6-small"

    def __init__(self, threads: int | None = None, box_thresh: float = BOX_THRESH, unclip_ratio: float = UNCLIP_RATIO,
                 path: str | Path | None = None) -> None:
        """Load the model (``path``: another DB detector .onnx of the same input and output; default rapidocr's).

        ``threads``: ONNX Runtime's intra-op threads (None: its default, one per core)."""
        try:
            import onnxruntime as ort
            from rapidocr.ch_ppocr_det.utils import DBPostProcess, DetPreProcess
            from rapidocr.ch_ppocr_det.utils import ResizeImgError as DetResizeError
            from rapidocr.utils.process_img import ResizeImgError, apply_vertical_padding, resize_image_within_bounds
        except ModuleNotFoundError:
            raise BackendError(_MISSING) from None
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.path = Path(path) if path is not None else model_path()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1
        if threads is not None:
            options.intra_op_num_threads = threads
        # The recognizer runs right after on the same cores: a spinning pool would take their time from it.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # rapidocr turns the memory arena off (its EngineConfig): photo sizes vary, so an arena only grows.
        options.enable_cpu_mem_arena = False
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name
        self._pre = DetPreProcess(LIMIT_SIDE, LIMIT_TYPE, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
        self._post = DBPostProcess(thresh=THRESH, box_thresh=box_thresh, max_candidates=1000,
                                   unclip_ratio=unclip_ratio, use_dilation=True, score_mode="fast")
        self._bounds = resize_image_within_bounds
        self._pad = apply_vertical_padding
        self._resize_errors = (ResizeImgError, DetResizeError)
        self.box_thresh, self.unclip_ratio = box_thresh, unclip_ratio

    def detect(self, image: np.ndarray) -> list[DetectedText]:
        """The text lines of one RGB photo (H, W, 3) uint8, as quadrilaterals in its pixels."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"detect takes an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        bgr = np.ascontiguousarray(image[:, :, ::-1])  # PaddleOCR's models were trained on OpenCV's BGR order
        try:
            img, ratio_h, ratio_w = self._bounds(bgr, MIN_SIDE, MAX_SIDE)
            img, record = self._pad(img, {}, WIDE_RATIO, MIN_HEIGHT)
            x = self._pre(img)
        except self._resize_errors:  # a photo so thin that scaling it leaves no pixel row: it holds no text
            return []
        if x is None:
            return []
        top = record["padding_1"]["top"]
        pred = self.session.run(None, {self._input: x})[0]
        boxes, scores = self._post(pred, img.shape[:2])
        out = []
        for box, score in zip(boxes, scores):
            quad = np.asarray(box, np.float32).reshape(4, 2).copy()
            quad[:, 1] -= top
            quad[:, 0] *= ratio_w
            quad[:, 1] *= ratio_h
            quad[:, 0] = np.clip(quad[:, 0], 0, w)
            quad[:, 1] = np.clip(quad[:, 1], 0, h)
            if cv2.contourArea(quad) > 0:
                out.append(DetectedText(quad, float(score)))
        return out

    def describe(self) -> dict[str, Any]:
        """The model file and the settings around it."""
        return {"detector": self.name, "model": str(self.path), "rapidocr": RAPIDOCR_VERSION,
                "max_side": MAX_SIDE, "limit_side": LIMIT_SIDE, "thresh": THRESH, "box_thresh": self.box_thresh,
                "unclip_ratio": self.unclip_ratio}


register_detector(DetectorKind(name=PPOCRDetector.name, title="PP-OCRv6 small text detector (rapidocr, ONNX)",
                               build=PPOCRDetector))
