"""Tests of crnn.metrics."""

from __future__ import annotations

import pytest

from crnn.metrics import (
    TextMetrics,
    calibration,
    character_error_rate,
    compute_metrics,
    normalize_protocol,
    normalized_edit_similarity,
    word_accuracy,
)

METRICS = [word_accuracy, character_error_rate, normalized_edit_similarity]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello", "hello"),
        ("HELLO-World!", "helloworld"),
        ("it's 42.", "its42"),
        ("  a b\tc ", "abc"),
        ("Café", "caf"),
        ("", ""),
        ("!!!", ""),
    ],
)
def test_normalize_protocol(text: str, expected: str) -> None:
    assert normalize_protocol(text) == expected


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [(False, 1 / 4), (True, 3 / 4)],
)
def test_word_accuracy(protocol: bool, expected: float) -> None:
    predictions = ["Hello", "world", "it's", "cat"]
    targets = ["Hello", "World", "its", "car"]
    assert word_accuracy(predictions, targets, protocol=protocol) == pytest.approx(expected)


def test_character_error_rate_known_values() -> None:
    # distances: 0 + 1 (substitution) + 2 (two deletions) + 3 (insertions) = 6 over 5+3+4+0 = 12
    predictions = ["hello", "cat", "ab", "xyz"]
    targets = ["hello", "car", "abcd", ""]
    assert character_error_rate(predictions, targets) == pytest.approx(6 / 12)


def test_character_error_rate_protocol() -> None:
    assert character_error_rate(["HeLLo!"], ["hello"]) == pytest.approx(4 / 5)
    assert character_error_rate(["HeLLo!"], ["hello"], protocol=True) == 0.0


def test_character_error_rate_all_targets_empty() -> None:
    assert character_error_rate(["", ""], ["", ""]) == 0.0
    assert character_error_rate(["ab", ""], ["", ""]) == 2.0


def test_normalized_edit_similarity_known_values() -> None:
    predictions = ["hello", "cat", "ab", "", "abc"]
    targets = ["hello", "car", "abcd", "", "xyz"]
    # 1 - NED per pair: 1, 1 - 1/3, 1 - 2/4, 1 (both empty), 0
    expected = (1 + 2 / 3 + 1 / 2 + 1 + 0) / 5
    assert normalized_edit_similarity(predictions, targets) == pytest.approx(expected)


def test_normalized_edit_similarity_protocol() -> None:
    assert normalized_edit_similarity(["CAT."], ["cat"], protocol=True) == 1.0
    assert normalized_edit_similarity(["CAT."], ["cat"]) == pytest.approx(0.0)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("protocol", [False, True])
def test_no_samples_give_zero(metric, protocol: bool) -> None:
    assert metric([], [], protocol=protocol) == 0.0


@pytest.mark.parametrize("metric", METRICS)
def test_mismatched_lengths_raise(metric) -> None:
    with pytest.raises(ValueError, match="2 predictions for 1 targets"):
        metric(["a", "b"], ["a"])


@pytest.mark.parametrize("metric", METRICS)
def test_perfect_predictions(metric) -> None:
    texts = ["Hello", "World", "42"]
    best = 0.0 if metric is character_error_rate else 1.0
    assert metric(texts, texts) == best


def test_compute_metrics() -> None:
    predictions = ["Hello", "world", "cat"]
    targets = ["hello", "world", "car"]
    metrics = compute_metrics(predictions, targets)
    assert metrics == TextMetrics(
        count=3,
        word_accuracy_protocol=pytest.approx(2 / 3),
        word_accuracy_case=pytest.approx(1 / 3),
        cer=pytest.approx(2 / 13),  # case-sensitive: H vs h counts
        one_minus_ned=pytest.approx((4 / 5 + 1 + 2 / 3) / 3),
    )
    as_dict = metrics.to_dict()
    assert set(as_dict) == {
        "count",
        "word_accuracy_protocol",
        "word_accuracy_case",
        "cer",
        "one_minus_ned",
    }
    assert as_dict["count"] == 3


def test_compute_metrics_empty_and_mismatched() -> None:
    assert compute_metrics([], []).to_dict() == {
        "count": 0,
        "word_accuracy_protocol": 0.0,
        "word_accuracy_case": 0.0,
        "cer": 0.0,
        "one_minus_ned": 0.0,
    }
    with pytest.raises(ValueError):
        compute_metrics(["a"], [])


@pytest.mark.parametrize(("confidences", "correct", "ece"), [
    ([0.95, 0.95, 0.15, 0.15], [True, True, False, False], 0.10),    # 95% sure and right, 15% sure and wrong
    ([0.75] * 4, [True, True, True, False], 0.0),                      # right as often as it says
    ([1.0, 0.0], [False, True], 1.0),                                   # always wrong about itself
    ([], [], 0.0),
])
def test_calibration_error(confidences: list[float], correct: list[bool], ece: float) -> None:
    got, table = calibration(confidences, correct)
    assert got == pytest.approx(ece)
    assert sum(b.count for b in table) == len(confidences)


def test_calibration_table_bins() -> None:
    _, table = calibration([0.05, 0.55, 0.58, 1.0], [False, True, False, True], bins=10)
    assert [(b.low, b.count) for b in table] == [(0.0, 1), (0.5, 2), (0.9, 1)]  # 1.0 goes in the last bin
    assert table[1].accuracy == 0.5 and table[1].mean_confidence == pytest.approx(0.565)
    with pytest.raises(ValueError, match="confidences"):
        calibration([0.5], [True, False])
