"""Metrics on hand-made masks with known intersections and unions."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import SegmentationMetrics, format_table, intersection_union


def rect(shape, rows, cols):
    mask = np.zeros(shape, bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


def test_intersection_and_union_of_overlapping_rectangles():
    a = rect((10, 10), (0, 4), (0, 5))  # 20 pixels
    b = rect((10, 10), (2, 6), (3, 8))  # 20 pixels, overlap rows 2-3 × cols 3-4 = 4
    assert intersection_union(a, b) == (4, 36)


def test_summary_follows_the_protocol():
    shape = (10, 10)
    target = rect(shape, (0, 10), (0, 10))  # 100 pixels
    metrics = SegmentationMetrics()
    # IoU 0.95, 0.75, 0.5, 0 (miss), and an empty prediction of an empty target: U = 0 → IoU 0.
    assert metrics.add(rect(shape, (0, 10), (0, 10)) & ~rect(shape, (0, 1), (0, 5)), target) == pytest.approx(
        0.95
    )
    assert metrics.add(rect(shape, (0, 10), (0, 7)) & ~rect(shape, (0, 5), (6, 7)), target) == pytest.approx(
        0.65
    )
    assert metrics.add(rect(shape, (0, 5), (0, 10)), target) == pytest.approx(0.5)
    assert metrics.add(np.zeros(shape, bool), target) == 0.0
    assert metrics.add(np.zeros(shape, bool), np.zeros(shape, bool)) == 0.0
    summary = metrics.summary()
    assert summary["samples"] == 5
    assert summary["mIoU"] == pytest.approx((0.95 + 0.65 + 0.5) / 5)
    assert summary["oIoU"] == pytest.approx((95 + 65 + 50) / 400)  # ΣI / ΣU, the empty pair adds nothing
    assert summary["Pr@0.5"] == pytest.approx(3 / 5)  # IoU ≥ 0.5 counts
    assert summary["Pr@0.6"] == pytest.approx(2 / 5)
    assert summary["Pr@0.7"] == summary["Pr@0.8"] == summary["Pr@0.9"] == pytest.approx(1 / 5)


def test_merge_equals_one_accumulator_and_table_is_in_percent():
    a, b, both = SegmentationMetrics(), SegmentationMetrics(), SegmentationMetrics()
    for acc in (a, both):
        acc.add_counts(3, 4)
    for acc in (b, both):
        acc.add_counts(1, 10)
    assert a.merge(b).summary() == both.summary()
    table = format_table({"val": both.summary()})
    assert "| val | 50.00 | 50.00 | 50.00 | 0.00 | 0.00 | 28.57 | 42.50 | 2 |" in table


def test_empty_metrics_and_shape_mismatch_are_errors():
    with pytest.raises(ValueError):
        SegmentationMetrics().summary()
    with pytest.raises(ValueError):
        intersection_union(np.zeros((2, 2)), np.zeros((3, 2)))
