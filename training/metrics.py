"""The RRSIS evaluation numbers exactly as the papers report them (docs/method.md, "Evaluation protocol"):
per-sample IoU = I/U (0 when U = 0), mIoU = mean IoU, oIoU = ΣI/ΣU, Pr@X = share of samples with
IoU ≥ X for X in 0.5…0.9."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PRECISION_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def intersection_union(prediction: np.ndarray, target: np.ndarray) -> tuple[int, int]:
    """(I, U) pixel counts of two boolean masks of the same shape."""
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {prediction.shape} and target {target.shape} differ in shape")
    prediction, target = prediction.astype(bool), target.astype(bool)
    return int(np.logical_and(prediction, target).sum()), int(np.logical_or(prediction, target).sum())


def sample_iou(intersection: int, union: int) -> float:
    return intersection / union if union > 0 else 0.0


@dataclass
class SegmentationMetrics:
    """Accumulates (I, U) per sample; `summary()` gives the seven published numbers."""

    intersections: list[int] = field(default_factory=list)
    unions: list[int] = field(default_factory=list)

    def add(self, prediction: np.ndarray, target: np.ndarray) -> float:
        """Adds one sample; returns its IoU."""
        intersection, union = intersection_union(prediction, target)
        return self.add_counts(intersection, union)

    def add_counts(self, intersection: int, union: int) -> float:
        self.intersections.append(int(intersection))
        self.unions.append(int(union))
        return sample_iou(intersection, union)

    def merge(self, other: SegmentationMetrics) -> SegmentationMetrics:
        return SegmentationMetrics(self.intersections + other.intersections, self.unions + other.unions)

    def __len__(self) -> int:
        return len(self.intersections)

    @property
    def ious(self) -> np.ndarray:
        return np.array([sample_iou(i, u) for i, u in zip(self.intersections, self.unions)], dtype=np.float64)

    def summary(self) -> dict[str, float]:
        """{"Pr@0.5" … "Pr@0.9", "oIoU", "mIoU", "samples"}, fractions in [0, 1]."""
        if not self.intersections:
            raise ValueError("no samples were evaluated")
        ious = self.ious
        total_union = sum(self.unions)
        result = {f"Pr@{x:.1f}": float(np.mean(ious >= x)) for x in PRECISION_THRESHOLDS}
        result["oIoU"] = sum(self.intersections) / total_union if total_union > 0 else 0.0
        result["mIoU"] = float(ious.mean())
        result["samples"] = len(ious)
        return result


def format_table(summaries: dict[str, dict[str, float]]) -> str:
    """A Markdown table, in percent as the papers print them, one row per named summary."""
    columns = [f"Pr@{x:.1f}" for x in PRECISION_THRESHOLDS] + ["oIoU", "mIoU"]
    lines = ["| | " + " | ".join(columns) + " | samples |", "|---|" + "---|" * (len(columns) + 1)]
    for name, summary in summaries.items():
        cells = " | ".join(f"{100 * summary[c]:.2f}" for c in columns)
        lines.append(f"| {name} | {cells} | {int(summary['samples'])} |")
    return "\n".join(lines)
