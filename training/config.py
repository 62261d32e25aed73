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
from backend.model.losses import LossConfig

SCHEDULES = ("cosine", "constant", "step")
DICE_CLASSES = ("both", "foreground")
# The method's loss weights: right for fine-tuning from SAM 2 (and CLIP) weights or a checkpoint.
METHOD_LOSS = {"loss_ce": 0.9, "loss_dice": 0.1, "loss_tbl": 0.2, "dice_classes": "both"}
# The default for a model that starts from random weights (the `test` preset; any preset whose SAM 2
# weights are not cached). With the method's weights such a model predicts "all background" for its
# first ~1000 steps; a Dice on the object alone, weighted up, leaves that start within ~100 steps
# (training/README.md).
FROM_SCRATCH_LOSS = {"loss_ce": 0.5, "loss_dice": 1.0, "loss_tbl": 0.2, "dice_classes": "foreground"}


@dataclass(frozen=True)
class TrainConfig:
    # --- what and where ---
    data: tuple[str, ...] = ()
    val_data: tuple[str, ...] | None = None  # None: the val split of `data`
    preset: str | None = None
    checkpoint: str | None = None  # fine-tune from an RS2-SAM 2 checkpoint
    out: str = ""
    # --- length ---
    max_steps: int | None = None  # optimizer steps; or …
    epochs: int | None = None  # … whole passes over the training data
    # --- optimisation (method.md: AdamW, wd 0.01, lr 1e-4 new modules / 5e-5 the rest) ---
    batch_size: int = 8  # global: split over DDP ranks
    grad_accum: int = 1  # micro-batches per optimizer step
    lr_new: float = 1e-4
    lr_rest: float = 5e-5
    weight_decay: float = 0.01
    warmup_steps: int = 0  # the reference uses none
    schedule: str = "constant"  # cosine: to 0 at the last step; step: × lr_drop_factor at lr_drop_epochs
    lr_drop_epochs: tuple[int, ...] = ()  # RefSegRS recipe: (50,) with factor 0.1
    lr_drop_factor: float = 0.1
    clip_grad_norm: float | None = 1.0
    # --- loss; None: METHOD_LOSS when starting from pretrained weights, else FROM_SCRATCH_LOSS ---
    loss_ce: float | None = None
    loss_dice: float | None = None
    loss_tbl: float | None = None
    dice_classes: str | None = None  # "both" (the method) or "foreground"
    seed: int = 2401  # the reference's seed
    device: str = "auto"
    # --- augmentation ---
    geometric_prob: float = 0.5
    rotations: bool = True
    black_box_prob: float = 0.2
    # --- bookkeeping ---
    checkpoint_every: int = 200  # steps between resumable training states
    eval_every: int | None = None  # steps between validations; None: once per epoch
    val_limit: int | None = 500  # validation samples (the first N of the val split); None: all
    eval_protocol: str = "native"  # during training: chips at their own size (fast); "reference" = 1024
    log_every: int = 10
    num_workers: int = 0
    chip_size: int | None = None  # region/synthetic chips; default the model's input size
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # ignored; keeps config files flexible

    def __post_init__(self) -> None:
        problems = []
        if not self.data:
            problems.append("give at least one --data")
        if not self.out:
            problems.append("give --out")
        if self.preset is None and self.checkpoint is None:
            problems.append("give --preset or --checkpoint")
        if self.max_steps is None and self.epochs is None:
            problems.append("give --max-steps or --epochs")
        if self.max_steps is not None and self.max_steps < 1 or self.epochs is not None and self.epochs < 1:
            problems.append("--max-steps and --epochs must be positive")
        if self.batch_size < 1 or self.grad_accum < 1:
            problems.append("--batch-size and --grad-accum must be positive")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {', '.join(SCHEDULES)}")
        weights = [w for w in (self.loss_ce, self.loss_dice, self.loss_tbl) if w is not None]
        if min(weights, default=0) < 0 or self.loss_ce == 0 and self.loss_dice == 0:
            problems.append("loss weights must not be negative, and CE or Dice must be on")
        if self.dice_classes is not None and self.dice_classes not in DICE_CLASSES:
            problems.append(f"dice_classes must be one of {', '.join(DICE_CLASSES)}")
        if self.checkpoint_every < 1 or (self.eval_every is not None and self.eval_every < 1):
            problems.append("--checkpoint-every and --eval-every must be positive")
        if problems:
            raise UserError("; ".join(problems) + ".")

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


_TUPLE_FIELDS = {"data", "val_data", "lr_drop_epochs"}


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
