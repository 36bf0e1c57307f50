"""The ICDAR 2015 generic end-to-end metric on hand-made photos: matches, don't-care words, one-to-one matching,
the strict IoU threshold, case and special characters, empty photos."""

from __future__ import annotations

import numpy as np
import pytest

from crnn.detection.end_to_end_metric import TextBox, end_to_end, polygon_iou, score_photo, transcription_match


def box(x0: float, y0: float, x1: float, y1: float, text: str = "word") -> TextBox:
    return TextBox(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32), text)


@pytest.mark.parametrize("a, b, iou", [
    ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
    ((0, 0, 10, 10), (0, 0, 5, 10), 0.5),
    ((0, 0, 10, 10), (20, 0, 30, 10), 0.0),
    ((0, 0, 10, 10), (5, 0, 15, 10), 1 / 3),
])
def test_polygon_iou(a, b, iou):
    assert polygon_iou(box(*a).polygon, box(*b).polygon) == pytest.approx(iou)


@pytest.mark.parametrize("truth, read, ok", [
    ("Hello", "HELLO", True),  # case-insensitive
    ("hello", "help", False),
    ("'hello!", "hello", True),  # the truth may lose a special character at each end
    ("hello!", "hello", True),
    ("hello", "hello!", False),  # the reading may not
    ("he.llo", "hello", False),  # only at the ends
    ("###", "###", True),
    ("", "", False),
])
def test_transcription_match(truth, read, ok):
    assert transcription_match(truth, read) is ok


def test_perfect_photo():
    r = end_to_end([([box(0, 0, 50, 20, "Shop")], [box(1, 1, 50, 21, "SHOP")])])
    assert (r.detection.precision, r.detection.recall, r.end_to_end.f) == (1.0, 1.0, 1.0)


def test_wrong_text_counts_for_detection_only():
    r = end_to_end([([box(0, 0, 50, 20, "Shop"), box(60, 0, 100, 20, "Open")],
                     [box(0, 0, 50, 20, "Shop"), box(60, 0, 100, 20, "Opem")])])
    assert (r.detected, r.read) == (2, 1)
    assert r.detection.f == 1.0 and r.end_to_end.precision == 0.5 and r.end_to_end.recall == 0.5


def test_dont_care_truth_and_the_detections_on_it_are_left_out():
    truth = [box(0, 0, 50, 20, "###"), box(100, 0, 150, 20, "cafe")]
    found = [box(0, 0, 40, 20, "xx"),  # mostly inside the don't-care word: ignored, not a false positive
             box(100, 0, 150, 20, "CAFE")]
    s = score_photo(truth, found)
    assert (s.truths, s.detections, s.detected, s.read) == (1, 1, 1, 1)


def test_detection_half_outside_a_dont_care_word_still_counts():
    s = score_photo([box(0, 0, 50, 20, "###")], [box(30, 0, 90, 20, "xx")])  # 20 of 60 px inside
    assert (s.truths, s.detections, s.detected) == (0, 1, 0)


def test_matching_is_one_to_one():
    # Two readings of one word: one matches, the other is a false positive; one reading over two words matches one.
    s = score_photo([box(0, 0, 50, 20, "sale")], [box(0, 0, 50, 20, "sale"), box(2, 0, 50, 20, "sale")])
    assert (s.detected, s.read, s.detections) == (1, 1, 2)
    s = score_photo([box(0, 0, 50, 20, "a"), box(1, 0, 50, 20, "a")], [box(0, 0, 50, 20, "a")])
    assert (s.detected, s.truths) == (1, 2)


def test_iou_threshold_is_strict():
    assert score_photo([box(0, 0, 10, 10)], [box(0, 0, 5, 10)]).detected == 0  # IoU exactly 0.5
    assert score_photo([box(0, 0, 10, 10)], [box(0, 0, 5.1, 10)]).detected == 1


def test_empty_photos():
    r = end_to_end([([], [])])
    assert (r.truths, r.detections, r.end_to_end.f, r.detection.precision) == (0, 0, 0.0, 0.0)
    # An empty photo adds nothing; a photo with only false positives lowers precision only.
    r = end_to_end([([box(0, 0, 10, 10, "ab")], [box(0, 0, 10, 10, "ab")]), ([], []), ([], [box(0, 0, 5, 5, "x")])])
    assert r.end_to_end.recall == 1.0 and r.end_to_end.precision == 0.5


def test_degenerate_polygons_do_not_crash():
    flat = TextBox(np.array([[0, 0], [10, 0], [10, 0], [0, 0]], np.float32), "a")
    bowtie = TextBox(np.array([[0, 0], [10, 10], [10, 0], [0, 10]], np.float32), "a")
    s = score_photo([flat, box(0, 0, 10, 10, "###")], [flat, bowtie])
    assert s.detected == 0
