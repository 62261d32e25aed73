"""Where a run starts and the recipe it inherits from there.

A checkpoint made by this training package records how it was trained (`recipe_metadata`: loss,
rates, schedule, input and chip sizes, data). Fine-tuning from it continues in the same terms unless
told otherwise: its loss, its peak rates with a short warm-up and a cosine decay. Without a recorded
recipe the method's settings apply (training/config.py: METHOD_LOSS, METHOD_OPTIM) or, from random
weights, the from-scratch loss. A run on labelled regions that names no model starts from the bundled
one. `resolve_start` fills every setting left unset and says where each came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.model.checkpoint import read_checkpoint_metadata
from training.config import FROM_SCRATCH_LOSS, METHOD_LOSS, METHOD_OPTIM, TrainConfig

RECIPE_KEY = "recipe"
LOSS_FIELDS = tuple(METHOD_LOSS)
# Replay by default: the start's own synthetic training mix (regenerated, never shipped), scaled down to
# this many scenes in all so a person's run does not spend its time writing thousands of scenes.
REPLAY_SCENES = 300
# Warm-up of a run that continues a recorded recipe: the optimizer's moments start from zero, so the
# first steps at the full rate would shake a trained model.
CONTINUED_WARMUP_SHARE = 0.05


@dataclass(frozen=True)
class Start:
    """The resolved settings and one line per decision."""

    config: TrainConfig
    recipe: dict[str, Any] | None  # what the starting checkpoint recorded (None: nothing)
    notes: tuple[str, ...]


def recipe_metadata(config: TrainConfig, image_size: int, chip_size: int, total_steps: int) -> dict[str, Any]:
    """What a checkpoint records about the run that made it (read back by `resolve_start`)."""
    return {
        **{name: getattr(config, name) for name in LOSS_FIELDS},
        "lr_new": config.lr_new,
        "lr_rest": config.lr_rest,
        "schedule": config.schedule,
        "warmup_steps": config.warmup_steps,
        "batch_size": config.batch_size,
        "steps": total_steps,
        "image_size": image_size,
        "chip_size": chip_size,
        "chip_views": list(config.chip_views),
        "freeze": config.freeze,
        "data": list(config.data),
    }


def default_checkpoint() -> str:
    from backend.bundled import DEMO_CHECKPOINT

    return str(DEMO_CHECKPOINT)


def with_default_start(config: TrainConfig) -> tuple[TrainConfig, str | None]:
    """A run that names no model (allowed for regions only) starts from the bundled one."""
    if config.model is not None or config.preset is not None or config.checkpoint is not None:
        return config, None
    config = config.replace(checkpoint=default_checkpoint())
    return config, f"start: the bundled model ({config.checkpoint}); --checkpoint or --model to choose"


def resolve_start(config: TrainConfig, from_scratch: bool) -> Start:
    """`config` with every unset loss and optimisation setting filled in (warm-up: `resolve_warmup`)."""
    notes: list[str] = []
    recipe = None
    if config.checkpoint is not None:
        recipe = read_checkpoint_metadata(config.checkpoint).get(RECIPE_KEY)
    changes: dict[str, Any] = {}
    if recipe is not None:
        source = "the starting checkpoint's recorded recipe"
        for name in LOSS_FIELDS:
            if getattr(config, name) is None and recipe.get(name) is not None:
                changes[name] = recipe[name]
        for name in ("lr_new", "lr_rest"):
            if getattr(config, name) is None and recipe.get(name) is not None:
                changes[name] = float(recipe[name])
        if config.schedule is None:
            changes["schedule"] = "cosine"
    else:
        source = "the random-weights defaults" if from_scratch else "the method's defaults"
    defaults = {**(FROM_SCRATCH_LOSS if from_scratch else METHOD_LOSS), **METHOD_OPTIM}
    for name, value in defaults.items():
        if name == "warmup_steps":
            continue  # needs the run's length: `resolve_warmup`
        if getattr(config, name) is None and name not in changes:
            changes[name] = value
    if changes:
        filled = ", ".join(f"{name.removeprefix('loss_')} {value}" for name, value in changes.items())
        notes.append(f"settings from {source}: {filled}")
    replay = default_replay(config, recipe)
    if replay:
        changes["replay_data"] = replay
        notes.append(
            f"replay: the starting model's own synthetic training mix, scaled to {REPLAY_SCENES} scenes "
            "(--replay-share 0 to turn off)"
        )
    return Start(config.replace(**changes), recipe, tuple(notes))


def default_replay(config: TrainConfig, recipe: dict[str, Any] | None) -> tuple[str, ...]:
    """A region run with no --replay-data replays the synthetic part of its start's recorded data, each
    spec's scene count scaled so they add up to about REPLAY_SCENES (none when the start recorded no
    synthetic data, or --replay-share is 0)."""
    from training.data.specs import DataSpec, SyntheticOptions

    if config.replay_data or config.replay_share == 0 or recipe is None or not config.data_are_regions:
        return ()
    synthetic = [DataSpec.parse(spec) for spec in recipe.get("data", []) if spec.startswith("synthetic:")]
    if not synthetic:
        return ()
    counts = [SyntheticOptions.parse(spec.args, spec.text).count for spec in synthetic]
    total = sum(counts)
    return tuple(
        ",".join((f"synthetic:{max(10, round(count * REPLAY_SCENES / total))}", *spec.args[1:]))
        for spec, count in zip(synthetic, counts)
    )


def resolve_warmup(config: TrainConfig, recipe: dict[str, Any] | None, total_steps: int) -> int:
    """Warm-up steps: as given; 5 % of the run when it continues a recorded recipe; else none."""
    if config.warmup_steps is not None:
        return config.warmup_steps
    if recipe is None:
        return METHOD_OPTIM["warmup_steps"]
    return max(1, round(CONTINUED_WARMUP_SHARE * total_steps))


def write_recipe(path: Path, recipe: dict[str, Any]) -> None:
    """Record `recipe` in a checkpoint file's metadata (tensors unchanged; written atomically)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    from backend.model.checkpoint import write_safetensors

    with safe_open(str(path), "pt") as handle:
        header = dict(handle.metadata() or {})
    metadata = json.loads(header.get("metadata", "{}"))
    metadata[RECIPE_KEY] = recipe
    header["metadata"] = json.dumps(metadata, default=str)
    write_safetensors(path, load_file(str(path)), header)
