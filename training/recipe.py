"""Which recipe a run follows, with what it chose and why (printed at the start of every run).

- **standard**: every training sample once per epoch; validation on the data's own val split (or
  --val-data); the length is --max-steps or --epochs.
- **small-region** (the default for regions with at most --small-region-labels phrases): each labelled
  phrase gives --chips-per-feature random chips per epoch (views, negatives: training/data/region.py)
  with colour-preserving photometric changes; a validation split is held out only when it can hold
  --min-val-samples phrases without taking more than --max-val-share of the labels — fewer cannot
  choose a checkpoint (a coin toss between steps), more would starve training — and the
  run otherwise trains on every label for a fixed number of steps and says so; without --max-steps or
  --epochs the length follows the number of labels (--steps-per-label).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from backend.errors import UserError
from training.config import TrainConfig
from training.data.region import RegionConfig
from training.data.replay import ReplayMix
from training.data.sample import ReferringDataset
from training.data.specs import DataSpec, open_datasets


@dataclass
class RunData:
    """The data of a run and the recipe's decisions."""

    recipe: str
    train: ReferringDataset
    val: ReferringDataset | None  # None: no validation (fixed steps, the final checkpoint is the result)
    labels: int | None  # labelled phrases of the training regions (None: not only regions)
    photometric_prob: float
    start_blend: float = 0.0  # share of the starting weights in the result when nothing validates
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def count_region_labels(config: TrainConfig, chip: int, cache: Path) -> int | None:
    """Labelled phrases over every --data region (None when some --data is not a region)."""
    if any(DataSpec.parse(spec).kind != "region" for spec in config.data):
        return None
    every = open_datasets(list(config.data), "val", chip, cache, config.seed, whole_regions=True)
    return len(every)


def choose_recipe(config: TrainConfig, labels: int | None) -> tuple[str, str]:
    """(recipe, why)."""
    if config.recipe != "auto":
        return config.recipe, "asked for with --recipe"
    if labels is None:
        return "standard", "the training data are not only regions"
    if labels <= config.small_region_labels:
        return (
            "small-region",
            f"the training regions hold {labels} labelled phrases (≤ {config.small_region_labels})",
        )
    return "standard", f"the training regions hold {labels} labelled phrases (> {config.small_region_labels})"


# The small-region recipe without validation keeps this share of the starting model's weights in its
# result, so that it keeps what the start knew of the kinds a few labels cannot teach — unless replay
# already does that. Measured on `rs2sam2 bench region` (45 labels, the view protocol, mIoU on region
# B; the start alone 20.6–21.1 %): without replay the last step alone 13.9 %, blended 0.3 → 21.3,
# 0.4 → 22.6, 0.5 → 23.1, 0.6 → 22.7, 0.7 → 22.6 %; with replay the last step alone 24.4 %, blended
# 0.3 → 22.2, 0.5 → 22.6, 0.7 → 22.9 % (training/README.md, docs/benchmarks.md).
NO_VAL_START_BLEND = 0.5
NO_VAL_START_BLEND_WITH_REPLAY = 0.0


def region_config_for(config: TrainConfig, recipe: str) -> RegionConfig:
    small = recipe == "small-region"
    return RegionConfig(
        views=tuple(config.chip_views),
        negative_share=config.negative_share,
        chips_per_feature=config.chips_per_feature if small else 1,
        min_val_phrases=config.min_val_samples if small else 0,
        # validation as a person asks: the labelled object inside a query window, not centred and zoomed
        eval_view="window" if small else "context",
    )


def open_run_data(config: TrainConfig, chip: int, cache: Path) -> RunData:
    """Choose the recipe and open the training and validation data it asks for."""
    labels = count_region_labels(config, chip, cache)
    recipe, why = choose_recipe(config, labels)
    regions = region_config_for(config, recipe)
    notes = [f"recipe: {recipe} ({why})"]
    if recipe == "small-region":
        notes.append(
            f"small-region chips: {regions.chips_per_feature} per labelled phrase per epoch, views "
            f"{'/'.join(regions.views)}, {regions.negative_share:.0%} negatives (cut around another object "
            f"of the phrase's kind), colour-preserving photometric changes on {config.photometric_prob:.0%}"
        )
    train, val = _train_and_val(config, chip, cache, regions, recipe, labels, notes)
    if config.replay_data and config.replay_share > 0:
        replay = open_datasets(list(config.replay_data), "train", chip, cache, config.seed)
        train = ReplayMix(train, replay, config.replay_share, config.seed)
        notes.append(
            f"replay: {config.replay_share:.0%} of each epoch's samples from {', '.join(config.replay_data)} "
            f"({len(replay)} samples), so the starting model keeps what it knew"
        )
    data = RunData(recipe, train, val, labels, 0.0, notes=notes)
    if recipe == "small-region":
        data.photometric_prob = config.photometric_prob
        if data.val is None:
            replays = bool(config.replay_data) and config.replay_share > 0
            data.start_blend = NO_VAL_START_BLEND_WITH_REPLAY if replays else NO_VAL_START_BLEND
            data.warnings.append(_no_val_warning(config, data))
    return data


def _train_and_val(
    config: TrainConfig,
    chip: int,
    cache: Path,
    regions: RegionConfig,
    recipe: str,
    labels: int | None,
    notes: list[str],
) -> tuple[ReferringDataset, ReferringDataset | None]:
    def open_split(specs, split: str, whole: bool) -> ReferringDataset:
        return open_datasets(list(specs), split, chip, cache, config.seed, regions, whole_regions=whole)

    if config.val_data is not None:  # regions give all their features to the side they are on
        notes.append(f"validation: every labelled phrase of --val-data ({', '.join(config.val_data)})")
        return open_split(config.data, "train", True), open_split(config.val_data, "val", True)
    if recipe != "small-region":
        return open_split(config.data, "train", False), open_split(config.data, "val", False)
    try:
        val = open_split(config.data, "val", False)
    except UserError:  # a region of one spatial block has no val blocks
        val = None
    held = 0 if val is None else len(val)
    total = labels or 0
    if config.min_val_samples <= held <= config.max_val_share * total:
        notes.append(
            f"validation: spatial blocks holding {held} of the {total} labelled phrases (≥ "
            f"{config.min_val_samples}, enough to choose a checkpoint by); best.safetensors is the best"
        )
        return open_split(config.data, "train", False), val
    notes.append(
        f"validation: none — {config.min_val_samples} held-out phrases would take "
        f"{'more than the region has' if held < config.min_val_samples else f'{held / total:.0%}'} of "
        f"the {total} labels (at most {config.max_val_share:.0%}); every label trains"
    )
    return open_split(config.data, "train", True), None


def _no_val_warning(config: TrainConfig, data: RunData) -> str:
    return (
        "warning: the region is too small to hold out a validation split that could choose a checkpoint "
        f"({config.min_val_samples} phrases, at most {config.max_val_share:.0%} of the labels); training "
        f"on all {data.labels} labelled phrases for a fixed number of steps — final.safetensors is the "
        f"result{_blend_words(data.start_blend)}. To validate and keep the best step (or the starting "
        "model when no step beats it), label a second region and give it as --val-data."
    )


def _blend_words(share: float) -> str:
    if share == 0:
        return " (replay keeps what the starting model knew; --start-blend to blend it in)"
    return f", blended with {share:.0%} of the starting weights (--start-blend)"


def choose_steps(config: TrainConfig, data: RunData, steps_per_epoch: int) -> tuple[int, str]:
    """(optimizer steps, why)."""
    if config.max_steps is not None:
        return config.max_steps, "--max-steps"
    if config.epochs is not None:
        return config.epochs * steps_per_epoch, f"--epochs {config.epochs} × {steps_per_epoch} steps"
    if data.recipe != "small-region":
        raise UserError("give --max-steps or --epochs (the length is chosen for small regions only)")
    phrases = _distinct_phrases(data.train)
    wanted = round(config.steps_per_label * phrases)
    steps = min(max(wanted, config.auto_steps_min), config.auto_steps_max)
    bounded = "" if steps == wanted else f", kept within {config.auto_steps_min}–{config.auto_steps_max}"
    return steps, f"{config.steps_per_label:g} per labelled training phrase × {phrases}{bounded}"


def _distinct_phrases(dataset: ReferringDataset) -> int:
    """Labelled training phrases (a small-region dataset repeats each --chips-per-feature times)."""
    return sum(getattr(part, "phrase_count", len(part)) for part in getattr(dataset, "parts", [dataset]))
