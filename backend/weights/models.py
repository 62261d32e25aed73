"""The models a person can choose by name, what each is, whether it is here, and loading one.

For the entry points (`--model NAME`, the plugin's model picker): `list_models()` says what can run now
and how to get the rest; `load_named_predictor(name)` gives the PhraseSegmenter. Names:

- `demo`: the bundled demo model (trained on the project's synthetic scenes; always there);
- `paper-rrsisd`, `paper-refsegrs`: the paper's published models, once `rs2sam2 weights download --model
  NAME` (or `weights import FOLDER`) has put their converted checkpoint in the cache;
- `tiny`, `base`, `large`: untrained RS2-SAM 2 heads on SAM 2 + CLIP (pretrained parts when cached) —
  starting points for training, not for segmenting;
- a person's own models, by the names they gave them (backend/weights/person_models.py: trained by the
  service's training jobs or imported with `rs2sam2 models import`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backend.errors import UserError
from backend.model.api import PhraseSegmenter


@dataclass(frozen=True)
class ModelStatus:
    name: str
    description: str
    source: str  # "bundled", "published", "preset" or "person"
    path: Path | None  # the checkpoint that will be loaded (None: built from the preset)
    available: bool
    how_to_get: str | None = None  # the command that makes it available


def _demo_status() -> ModelStatus:
    from backend.bundled import DEMO_CHECKPOINT

    return ModelStatus(
        "demo",
        "the bundled demo model (the project's synthetic scenes only)",
        "bundled",
        DEMO_CHECKPOINT,
        DEMO_CHECKPOINT.is_file(),
    )


def list_models(cache: Path | None = None) -> list[ModelStatus]:
    from backend.weights.paper import converted_path
    from backend.weights.registry import PAPER_WEIGHTS

    statuses = [_demo_status()]
    for name, weights in PAPER_WEIGHTS.items():
        path = converted_path(weights, cache)
        statuses.append(
            ModelStatus(
                name,
                weights.description,
                "published",
                path,
                path.is_file(),
                None if path.is_file() else f"rs2sam2 weights download --model {name}",
            )
        )
    for preset in ("tiny", "base", "large"):
        statuses.append(
            ModelStatus(
                preset, f"untrained RS2-SAM 2 on the {preset} preset (for training)", "preset", None, True
            )
        )
    return statuses + _person_statuses()


def _person_statuses() -> list[ModelStatus]:
    from backend.weights.person_models import ModelStore

    store = ModelStore.default()
    statuses = []
    for name in store.names():
        model = store.get(name)
        start = f", fine-tuned from {model.start_model}" if model.start_model else ""
        what = f"your model{start} on {model.labels} labels ({model.created[:10]})"
        statuses.append(ModelStatus(name, what, "person", store.checkpoint(name), True))
    return statuses


def model_status(name: str, cache: Path | None = None) -> ModelStatus:
    for status in list_models(cache):
        if status.name == name:
            return status
    names = ", ".join(status.name for status in list_models(cache))
    raise UserError(f"Unknown model {name!r}; choose one of {names}.")


def load_named_predictor(
    name: str, device: str = "auto", cache: Path | None = None, precision: str = "fp32"
) -> PhraseSegmenter:
    """The PhraseSegmenter for a model name (one UserError saying how to get it when it is not here), in
    `precision` (backend/model/precision.py)."""
    from backend.model.factory import load_predictor

    status = model_status(name, cache)
    if not status.available:
        raise UserError(f"The model {name} is not in the cache; get it with: {status.how_to_get}")
    if status.path is None:
        return load_predictor(preset=name, device=device, precision=precision)
    model_id = name if status.source == "person" else None  # not the store's file name, "model"
    return load_predictor(checkpoint=status.path, device=device, precision=precision, model_id=model_id)
