"""`rs2sam2 models`: the models this backend can serve and the weights it can download, with what is
already here and how big it is. `--json` is what the QGIS plugin's model manager reads.

Entries:
- the bundled demo model (servable, ships with the backend);
- each preset's pretrained SAM 2 + CLIP files (downloadable with `rs2sam2 weights download --preset`;
  starting weights for training, not a text-segmentation model on their own, so not servable);
- the paper's released models when the weights registry has them (`PAPER_WEIGHTS`, downloaded with
  `rs2sam2 weights download --model NAME`; servable once converted into the cache).
- a person's own models (backend/weights/person_models.py: trained by the service or imported), by
  name; `rs2sam2 models rename|delete|export|import` manage them (backend/weights/person_cli.py).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

HELP = "list the models the backend can serve and the weights it can download"


@dataclass(frozen=True)
class CatalogueEntry:
    id: str  # stable key: "demo", "preset:tiny", "model:paper-rrsisd"
    label: str
    kind: str  # "bundled" | "pretrained" | "published" | "person"
    present: bool
    size_bytes: int  # of the files that are here
    servable: bool  # `serve --checkpoint <checkpoint>` can run it (once present)
    checkpoint: str | None = None
    download: list[str] = field(default_factory=list)  # arguments of `rs2sam2 weights download`
    files: list[str] = field(default_factory=list)  # what lands in the cache


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from backend.weights.person_cli import add_actions

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_actions(parser)  # without an action: list
    parser.add_argument(
        "--cache", help="weights cache (default: $RS2SAM2_CACHE/weights or ~/.cache/rs2sam2/weights)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object (for programs)")


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def _bundled() -> list[CatalogueEntry]:
    from backend.bundled import DEMO_CHECKPOINT

    return [
        CatalogueEntry(
            "demo",
            "Demo model (synthetic scenes only; ships with the backend)",
            "bundled",
            DEMO_CHECKPOINT.is_file(),
            _size(DEMO_CHECKPOINT),
            servable=True,
            checkpoint=str(DEMO_CHECKPOINT),
        )
    ]


def _pretrained(cache: Path) -> list[CatalogueEntry]:
    from backend.weights.download import cached_path
    from backend.weights.registry import PRESET_WEIGHTS

    entries = []
    for preset, weights in PRESET_WEIGHTS.items():
        paths = [cached_path(weight, cache) for weight in weights]
        entries.append(
            CatalogueEntry(
                f"preset:{preset}",
                f"Pretrained SAM 2 + CLIP for preset {preset} (starting weights for training)",
                "pretrained",
                all(path.is_file() for path in paths),
                sum(_size(path) for path in paths),
                servable=False,
                download=["--preset", preset],
                files=[str(path) for path in paths],
            )
        )
    return entries


def _published(cache: Path) -> list[CatalogueEntry]:
    """The paper's released models, when this backend's weights registry lists them."""
    from backend.weights import registry

    models = getattr(registry, "PAPER_WEIGHTS", {})
    if not models:
        return []
    from backend.weights.paper import converted_path  # present together with PAPER_WEIGHTS

    entries = []
    for name, weights in models.items():
        path = converted_path(weights, cache)
        entries.append(
            CatalogueEntry(
                f"model:{name}",
                f"{name}: {getattr(weights, 'description', 'a published RS2-SAM 2 model')}",
                "published",
                path.is_file(),
                _size(path),
                servable=True,
                checkpoint=str(path),
                download=["--model", name],
                files=[str(path)],
            )
        )
    return entries


def _person() -> list[CatalogueEntry]:
    from backend.weights.person_models import ModelStore

    store = ModelStore.default()
    entries = []
    for model in store.list():
        path = store.checkpoint(model.name)
        start = f", from {model.start_model}" if model.start_model else ""
        label = f"{model.name}: your model ({model.labels} labels{start}, {model.created[:10]})"
        entries.append(
            CatalogueEntry(
                f"person:{model.name}",
                label,
                "person",
                True,
                model.size_bytes,
                True,
                str(path),
                files=[str(path)],
            )
        )
    return entries


def catalogue(cache: Path) -> list[CatalogueEntry]:
    return [*_bundled(), *_published(cache), *_pretrained(cache), *_person()]


def run(args: argparse.Namespace) -> int:
    from backend.contract import to_wire
    from backend.weights.download import cache_dir
    from backend.weights.person_models import ModelStore

    if getattr(args, "models_action", None) not in (None, "list"):
        from backend.weights.person_cli import run_action

        return run_action(args)
    cache = Path(args.cache).expanduser() if args.cache else cache_dir()
    entries = catalogue(cache)
    if args.json:
        store = ModelStore.default()
        mine = {"person_models": to_wire(store.list()), "person_models_folder": str(store.folder)}
        print(json.dumps({"cache": str(cache), "models": [asdict(entry) for entry in entries], **mine}))
        return 0
    print(f"cache: {cache}")
    for entry in entries:
        state = f"{entry.size_bytes / 2**20:8.1f} MiB" if entry.present else "not here"
        how = "servable" if entry.servable else "download only"
        print(f"  {entry.id:22s} {state:14s} {how:14s} {entry.label}")
    return 0
