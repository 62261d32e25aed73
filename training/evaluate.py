"""Evaluation of any PhraseSegmenter on a dataset split, per docs/method.md's "Evaluation protocol".

Every sentence is one sample. Phrases of one image are predicted in one call (the segmenter's result
for a phrase does not depend on the others), which is the protocol's batch 1 at a fraction of the
cost. Protocols:
- "reference": the image is resized to 1024×1024 (bilinear) and the ground truth with nearest
  neighbour, as the reference code evaluates;
- "native": prediction and ground truth at the image's own size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from backend.errors import UserError
from backend.model.api import PhraseSegmenter, default_threshold_of
from training.data.sample import ReferringDataset, ReferringSample
from training.metrics import SegmentationMetrics, sample_iou

PROTOCOLS = ("reference", "native")
REFERENCE_SIZE = 1024


@dataclass(frozen=True)
class EvaluationConfig:
    protocol: str = "reference"
    reference_size: int = REFERENCE_SIZE
    threshold: float | None = None  # None: the model's own (backend.model.api.default_threshold_of)
    limit: int | None = None  # evaluate the first N samples only
    max_phrases_per_call: int = 16

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise UserError(f"unknown evaluation protocol {self.protocol!r}; choose {' or '.join(PROTOCOLS)}")


@dataclass
class SampleResult:
    index: int
    sample_id: str
    phrase: str
    intersection: int
    union: int

    @property
    def iou(self) -> float:
        return sample_iou(self.intersection, self.union)


@dataclass
class EvaluationResult:
    samples: list[SampleResult] = field(default_factory=list)

    @property
    def metrics(self) -> SegmentationMetrics:
        ordered = sorted(self.samples, key=lambda s: s.index)
        return SegmentationMetrics([s.intersection for s in ordered], [s.union for s in ordered])

    def summary(self) -> dict[str, float]:
        return self.metrics.summary()

    def to_json(self) -> dict:
        return {
            "metrics": self.summary(),
            "samples": [
                {
                    "sample_id": s.sample_id,
                    "phrase": s.phrase,
                    "iou": s.iou,
                    "intersection": s.intersection,
                    "union": s.union,
                }
                for s in sorted(self.samples, key=lambda s: s.index)
            ],
        }


def _resize_image(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def _resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    if mask.shape == (size, size):
        return mask
    return np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((size, size), Image.NEAREST)).astype(bool)


def _groups(
    dataset: ReferringDataset, indices: Sequence[int], max_size: int
) -> Iterable[list[tuple[int, ReferringSample]]]:
    """Runs of consecutive indices whose samples share an image."""
    group: list[tuple[int, ReferringSample]] = []
    for index in indices:
        sample = dataset[index]
        if group and (sample.image_id != group[0][1].image_id or len(group) >= max_size):
            yield group
            group = []
        group.append((index, sample))
    if group:
        yield group


def evaluate(
    segmenter: PhraseSegmenter,
    dataset: ReferringDataset,
    config: EvaluationConfig | None = None,
    indices: Sequence[int] | None = None,
    progress: bool = False,
) -> EvaluationResult:
    """Evaluate `segmenter` on `dataset` (or on the given sample indices, e.g. one rank's share)."""
    config = config or EvaluationConfig()
    threshold = default_threshold_of(segmenter) if config.threshold is None else config.threshold
    if indices is None:
        count = len(dataset) if config.limit is None else min(config.limit, len(dataset))
        indices = range(count)
    if len(dataset) == 0:
        raise UserError(f"the {dataset.split} split of {dataset.name} is empty")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(indices), desc="evaluate", unit="phrase")
    result = EvaluationResult()
    try:
        for group in _groups(dataset, indices, config.max_phrases_per_call):
            image = group[0][1].image
            if config.protocol == "reference":
                image = _resize_image(image, config.reference_size)
            predictions = segmenter.predict(image, [sample.phrase for _, sample in group])
            for (index, sample), prediction in zip(group, predictions):
                target = (
                    sample.mask
                    if config.protocol == "native"
                    else _resize_mask(sample.mask, config.reference_size)
                )
                predicted = prediction.probability > threshold
                intersection = int(np.logical_and(predicted, target).sum())
                union = int(np.logical_or(predicted, target).sum())
                result.samples.append(
                    SampleResult(index, sample.sample_id, sample.phrase, intersection, union)
                )
            if bar is not None:
                bar.update(len(group))
    finally:
        if bar is not None:
            bar.close()  # also on an error: the bar's line ends before the error is printed
    return result
