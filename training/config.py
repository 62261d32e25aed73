"""Every training setting in one dataclass; `--config FILE` (JSON or TOML) fills it, command-line flags
override the file, and the run folder keeps the resolved copy (`config.json`)."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.errors import UserError
from backend.model.loss_config import LossConfig
from training.data.region import CHIP_VIEWS
from training.data.specs import SPEC_HELP, DataSpec

SCHEDULES = ("cosine", "constant", "step")
DICE_CLASSES = ("both", "foreground")
# The method's loss weights: right for fine-tuning from SAM 2 (and CLIP) weights or a checkpoint.
METHOD_LOSS = {"loss_ce": 0.9, "loss_dice": 0.1, "loss_tbl": 0.2, "dice_classes": "both"}
# The default for a model that starts from random weights (the `test` preset; any preset whose SAM 2
# weights are not cached). With the method's weights such a model predicts "all background" for its
# first ~1000 steps; a Dice on the object alone, weighted up, leaves that start within ~100 steps
# (training/README.md).
FROM_SCRATCH_LOSS = {"loss_ce": 0.5, "loss_dice": 1.0, "loss_tbl": 0.2, "dice_classes": "foreground"}


# Rates, schedule and warm-up of a run that does not start from a recorded recipe (the method's).
METHOD_OPTIM = {"lr_new": 1e-4, "lr_rest": 5e-5, "schedule": "constant", "warmup_steps": 0}
FREEZE_CHOICES = ("none", "encoders")


def _loss_default(name: str) -> str:
    return (
        f"the starting checkpoint's recorded loss; else {METHOD_LOSS[name]} from pretrained weights, "
        f"{FROM_SCRATCH_LOSS[name]} from random ones"
    )


def _optim_default(name: str) -> str:
    recorded = {
        "lr_new": "the starting checkpoint's recorded peak rate",
        "lr_rest": "the starting checkpoint's recorded peak rate",
        "schedule": "cosine from a recorded recipe",
        "warmup_steps": "5% of the steps from a recorded recipe",
    }[name]
    return f"{recorded}; else {METHOD_OPTIM[name]}"


def setting(default: Any, help: str, group: str, **cli: Any) -> Any:
    """A TrainConfig field with its one-line help; `rs2sam2 train`'s flags are made from these
    (training/config_cli.py). `cli` may hold: default_text (what None means), choices, required,
    exclusive (a mutually exclusive group's name)."""
    return field(default=default, metadata={"help": help, "group": group, **cli})


RECIPES = ("auto", "small-region", "standard")
WHAT, LENGTH, OPTIM, LOSS, AUGMENT, REGIONS, BOOK = (
    "data and model",
    "length (one of; for a small region both may be left out)",
    "optimisation (defaults: the method's recipe, docs/method.md)",
    "loss (training/README.md says why random weights get other defaults)",
    "augmentation",
    "regions and the small-region recipe (training/README.md)",
    "bookkeeping",
)


@dataclass(frozen=True)
class TrainConfig:
    # --- what and where ---
    data: tuple[str, ...] = setting((), f"training data, repeatable: {SPEC_HELP}", WHAT)
    val_data: tuple[str, ...] | None = setting(
        None, "validation data, repeatable", WHAT, default_text="the val split of --data"
    )
    model: str | None = setting(
        None,
        "start from a model by name: paper-rrsisd, paper-refsegrs (the paper's trained models, once "
        "downloaded), demo … (rs2sam2 weights list)",
        WHAT,
    )
    preset: str | None = setting(None, "start from this preset's model (test, tiny, base, large)", WHAT)
    checkpoint: str | None = setting(
        None,
        "start from an RS2-SAM 2 checkpoint (with --preset: it must match)",
        WHAT,
        default_text="the bundled model when every --data is a region",
    )
    out: str = setting("", "the run folder", WHAT, required=True)
    device: str = setting("auto", "auto, cpu or cuda", WHAT)
    # --- length ---
    max_steps: int | None = setting(None, "optimizer steps", LENGTH, exclusive="length")
    epochs: int | None = setting(None, "whole passes over the training data", LENGTH, exclusive="length")
    # --- optimisation (docs/method.md: AdamW, wd 0.01, lr 1e-4 new modules / 5e-5 the rest) ---
    batch_size: int = setting(8, "global batch (split over DDP processes)", OPTIM)
    grad_accum: int = setting(1, "micro-batches per optimizer step", OPTIM)
    lr_new: float | None = setting(
        None, "learning rate of the modules new in RS2-SAM 2", OPTIM, default_text=_optim_default("lr_new")
    )
    lr_rest: float | None = setting(
        None, "learning rate of everything else that trains", OPTIM, default_text=_optim_default("lr_rest")
    )
    weight_decay: float = setting(0.01, "AdamW weight decay", OPTIM)
    warmup_steps: int | None = setting(
        None,
        "linear warm-up steps (the reference uses none)",
        OPTIM,
        default_text=_optim_default("warmup_steps"),
    )
    schedule: str | None = setting(
        None,
        "cosine: to 0 at the last step; step: × --lr-drop-factor at --lr-drop-epochs",
        OPTIM,
        choices=SCHEDULES,
        default_text=_optim_default("schedule"),
    )
    lr_drop_epochs: tuple[int, ...] = setting((), "with --schedule step: epochs where the lr drops", OPTIM)
    lr_drop_factor: float = setting(0.1, "with --schedule step: the lr's factor at each drop", OPTIM)
    clip_grad_norm: float | None = setting(1.0, "gradient norm clipping", OPTIM, default_text="off")
    seed: int = setting(2401, "random seed (the reference's)", OPTIM)
    train_union_encoder: bool = setting(
        False,
        "also fine-tune the union encoder's pretrained towers, at --lr-rest (the paper fine-tunes its "
        "whole union encoder); otherwise they stay frozen when they start from pretrained weights",
        OPTIM,
    )
    freeze: str = setting(
        "none",
        "encoders: keep SAM 2's image trunk and the union encoder's towers as they start (adapters, "
        "fusion, prompt generator and decoder train) — fewer weights to move on a few labels",
        OPTIM,
        choices=FREEZE_CHOICES,
    )
    # --- loss; None: METHOD_LOSS when starting from pretrained weights, else FROM_SCRATCH_LOSS ---
    loss_ce: float | None = setting(
        None, "weight of the class-weighted cross-entropy", LOSS, default_text=_loss_default("loss_ce")
    )
    loss_dice: float | None = setting(
        None, "weight of the Dice loss", LOSS, default_text=_loss_default("loss_dice")
    )
    loss_tbl: float | None = setting(
        None, "weight of the text-guided boundary loss", LOSS, default_text=_loss_default("loss_tbl")
    )
    dice_classes: str | None = setting(
        None,
        "Dice over object and background (both, the method) or over the object only",
        LOSS,
        choices=DICE_CLASSES,
        default_text=_loss_default("dice_classes"),
    )
    # --- augmentation ---
    geometric_prob: float = setting(0.5, "share of samples flipped or rotated", AUGMENT)
    rotations: bool = setting(True, "allow 90° rotations among the geometric transforms", AUGMENT)
    black_box_prob: float = setting(
        0.2, "share of samples that get black boxes (the reference's recipe)", AUGMENT
    )
    # --- regions and the small-region recipe ---
    recipe: str = setting(
        "auto",
        "small-region: the recipe for tens to a few hundred labelled polygons; standard: every sample "
        "once per epoch, the val split as it comes; auto: small-region when every --data is a region "
        "and they hold at most --small-region-labels phrases",
        REGIONS,
        choices=RECIPES,
    )
    small_region_labels: int = setting(500, "the most labelled phrases auto calls a small region", REGIONS)
    chip_views: tuple[str, ...] = setting(
        ("context", "native", "window", "zoom"),
        "views of random chips of regions (and of chipped synthetic scenes), drawn with equal odds: "
        "context (the feature with some of its surroundings), native (the raster's own resolution, as "
        "the engine's tiles; the feature anywhere in the chip), window (a query window of a few hundred "
        "pixels scaled down, as the engine's view of a whole area), zoom (as native, enlarged 2×: the "
        "scale of the engine's search for objects too small for the view); sizes in training/data/region.py",
        REGIONS,
        choices=CHIP_VIEWS,
    )
    negative_share: float = setting(
        0.25,
        "share of random region chips cut around another object of the phrase's kind (head noun); the "
        "mask is whatever of the named object is in view, usually nothing",
        REGIONS,
    )
    chips_per_feature: int = setting(
        8, "small-region recipe: chips of every labelled phrase per epoch, each drawn anew", REGIONS
    )
    photometric_prob: float = setting(
        0.8,
        "small-region recipe: share of chips given colour-preserving brightness, contrast, gamma, "
        "blur and noise changes (one curve for all bands, so a red roof stays red)",
        REGIONS,
    )
    replay_data: tuple[str, ...] = setting(
        (),
        "the starting model's own training data, mixed in so it does not forget what it knew, repeatable",
        REGIONS,
        default_text="for regions, the synthetic part of the starting checkpoint's recorded data, scaled "
        "down; else none",
    )
    replay_share: float = setting(
        0.25, "the share of training samples drawn from the replay data (0: no replay)", REGIONS
    )
    start_blend: float | None = setting(
        None,
        "share of the starting model's weights blended into the result (final.safetensors) of a run "
        "that has no validation to keep its best step by",
        REGIONS,
        default_text="the small-region recipe's measured choice without validation, else 0",
    )
    min_val_samples: int = setting(
        30,
        "small-region recipe without --val-data: hold out the spatial val split only when it has at "
        "least this many phrases; otherwise train on every label for a fixed number of steps",
        REGIONS,
    )
    max_val_share: float = setting(
        0.25, "small-region recipe: the largest share of the labels the val split may take", REGIONS
    )
    steps_per_label: float = setting(
        40,
        "small-region recipe without --max-steps/--epochs: optimizer steps per labelled training "
        "phrase, kept within --auto-steps-min and --auto-steps-max",
        REGIONS,
    )
    auto_steps_min: int = setting(500, "small-region recipe: the fewest steps chosen automatically", REGIONS)
    auto_steps_max: int = setting(6000, "small-region recipe: the most steps chosen automatically", REGIONS)
    # --- bookkeeping ---
    checkpoint_every: int = setting(200, "steps between resumable training states", BOOK)
    eval_every: int | None = setting(None, "steps between validations", BOOK, default_text="once per epoch")
    val_limit: int | None = setting(500, "validation samples (the first N of the val split)", BOOK)
    eval_protocol: str = setting(
        "native",
        "validation during training: chips at their own size (native, fast) or at 1024 (reference)",
        BOOK,
        choices=("native", "reference"),
    )
    log_every: int = setting(10, "steps between log rows", BOOK)
    num_workers: int = setting(0, "data-loading processes", BOOK)
    chip_size: int | None = setting(
        None, "region/synthetic chip size in pixels", BOOK, default_text="the model's input size"
    )
    progress: bool = setting(True, "show a progress bar", BOOK)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # ignored; keeps config files flexible

    def __post_init__(self) -> None:
        problems = []
        if not self.data:
            problems.append("give at least one --data")
        if not self.out:
            problems.append("give --out")
        named = sum(x is not None for x in (self.model, self.preset, self.checkpoint))
        if named == 0 and not self.data_are_regions:
            problems.append(
                "give --preset or --checkpoint (or --model); only regions start from the bundled model"
            )
        if self.model is not None and (self.preset is not None or self.checkpoint is not None):
            problems.append("--model names its own weights; give it without --preset and --checkpoint")
        if self.max_steps is not None and self.max_steps < 1 or self.epochs is not None and self.epochs < 1:
            problems.append("--max-steps and --epochs must be positive")
        if self.batch_size < 1 or self.grad_accum < 1:
            problems.append("--batch-size and --grad-accum must be positive")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {', '.join(SCHEDULES)}")
        weights = [w for w in (self.loss_ce, self.loss_dice, self.loss_tbl) if w is not None]
        if min(weights, default=0) < 0 or self.loss_ce == 0 and self.loss_dice == 0:
            problems.append("loss weights must not be negative, and CE or Dice must be on")
        if self.dice_classes is not None and self.dice_classes not in DICE_CLASSES:
            problems.append(f"dice_classes must be one of {', '.join(DICE_CLASSES)}")
        if not set(self.chip_views) <= set(CHIP_VIEWS) or not self.chip_views:
            problems.append(f"--chip-views must be some of {', '.join(CHIP_VIEWS)}")
        shares = (0 <= self.negative_share < 1, 0 <= self.photometric_prob <= 1, 0 <= self.max_val_share < 1)
        if not all(shares):
            problems.append(
                "--negative-share and --max-val-share must be in [0, 1), --photometric-prob in [0, 1]"
            )
        if self.chips_per_feature < 1 or self.min_val_samples < 1 or self.steps_per_label <= 0:
            problems.append("--chips-per-feature, --min-val-samples and --steps-per-label must be positive")
        if not 1 <= self.auto_steps_min <= self.auto_steps_max:
            problems.append("--auto-steps-min must be at least 1 and at most --auto-steps-max")
        if self.checkpoint_every < 1 or (self.eval_every is not None and self.eval_every < 1):
            problems.append("--checkpoint-every and --eval-every must be positive")
        if self.freeze not in FREEZE_CHOICES:
            problems.append(f"--freeze must be one of {', '.join(FREEZE_CHOICES)}")
        if not 0 <= self.replay_share < 1 or self.start_blend is not None and not 0 <= self.start_blend < 1:
            problems.append("--replay-share and --start-blend must be in [0, 1)")
        if problems:
            raise UserError("; ".join(problems) + ".")

    @property
    def data_are_regions(self) -> bool:
        """Every --data is a labelled region (the case that may start from the bundled model)."""
        try:
            return bool(self.data) and all(DataSpec.parse(spec).kind == "region" for spec in self.data)
        except UserError:
            return False

    def loss_settings(self, from_scratch: bool) -> dict[str, Any]:
        """The loss fields with the unset ones filled from FROM_SCRATCH_LOSS or METHOD_LOSS."""
        defaults = FROM_SCRATCH_LOSS if from_scratch else METHOD_LOSS
        return {
            name: default if getattr(self, name) is None else getattr(self, name)
            for name, default in defaults.items()
        }

    def loss_config(self, from_scratch: bool) -> LossConfig:
        settings = self.loss_settings(from_scratch)
        return LossConfig(
            ce_weight=settings["loss_ce"],
            dice_weight=settings["loss_dice"],
            tbl_weight=settings["loss_tbl"],
            dice_classes=settings["dice_classes"],
        )

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data.pop("extra")
        return json.dumps(data, indent=1, sort_keys=True)


_TUPLE_FIELDS = {"data", "val_data", "lr_drop_epochs", "chip_views", "replay_data"}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Settings from a JSON or TOML file (keys are TrainConfig fields, dashes allowed)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    try:
        if path.suffix.lower() == ".toml":
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        else:
            raw = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise UserError(
            f"config file {path} is not valid {'TOML' if path.suffix == '.toml' else 'JSON'} ({exc})"
        ) from exc
    if not isinstance(raw, dict):
        raise UserError(f"config file {path} must hold a table of settings")
    known = {f.name for f in dataclasses.fields(TrainConfig)} - {"extra"}
    settings = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in known:
            raise UserError(f"config file {path} has an unknown setting {key!r}")
        if name in _TUPLE_FIELDS and value is not None:
            value = tuple(value) if isinstance(value, list | tuple) else (value,)
        settings[name] = value
    return settings


def build_config(file_settings: dict[str, Any], overrides: dict[str, Any]) -> TrainConfig:
    """File settings, then every override that is not None."""
    merged = dict(file_settings)
    merged.update({k: v for k, v in overrides.items() if v is not None})
    for name in _TUPLE_FIELDS:
        if isinstance(merged.get(name), list):
            merged[name] = tuple(merged[name])
    return TrainConfig(**merged)
