"""Data specs as given on the command line: `rrsisd:PATH`, `refsegrs:PATH`,
`region:RASTER,VECTOR[,COLUMN]`, `synthetic:N[,KIND+KIND…][,STYLE][,chips=SIZE]`.

Synthetic scenes are whole images at the chip size (their phrases may speak of positions in the
scene), or, with `chips=SIZE`, scenes of SIZE pixels without position words read as regions: random
chips in the configured views, with negatives (training/data/region.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from backend.errors import UserError
from training.data.refsegrs import RefSegRSDataset
from training.data.region import RegionConfig, RegionDataset
from training.data.rrsisd import RRSISDDataset
from training.data.sample import ConcatReferringDataset, ReferringDataset
from training.data.scene_style import KINDS, STYLES, SceneStyle
from training.data.synthetic import generate_scene, write_region

SPEC_HELP = (
    "rrsisd:PATH | refsegrs:PATH | region:RASTER,VECTOR[,COLUMN] | "
    "synthetic:N[,KIND+KIND…][,STYLE][,chips=SIZE] (kinds: "
    + "+".join(KINDS)
    + "; styles: "
    + ", ".join(STYLES)
    + "; chips=SIZE: scenes of SIZE px cut into chips, with negatives)"
)
# Synthetic splits draw scenes from disjoint seed ranges, so validation scenes are new scenes.
SYNTHETIC_SEED_BASE = {"train": 0, "val": 1_000_000, "test": 2_000_000}
SYNTHETIC_EVAL_SHARE = 5  # synthetic:N has N training scenes and ceil(N / 5) val (and test) scenes


@dataclass(frozen=True)
class DataSpec:
    kind: str
    args: tuple[str, ...]
    text: str

    @classmethod
    def parse(cls, text: str) -> DataSpec:
        kind, sep, rest = text.partition(":")
        if not sep or not rest:
            raise UserError(f"data spec {text!r} is not KIND:VALUE ({SPEC_HELP})")
        if kind in ("rrsisd", "refsegrs"):
            return cls(kind, (rest,), text)
        if kind == "region":
            parts = tuple(rest.split(","))
            if len(parts) not in (2, 3) or not all(parts):
                raise UserError(f"region spec {text!r} must be region:RASTER,VECTOR[,COLUMN]")
            return cls(kind, parts, text)
        if kind == "synthetic":
            parts = tuple(rest.split(","))
            SyntheticOptions.parse(parts, text)  # checks every part
            return cls(kind, parts, text)
        raise UserError(f"unknown data kind {kind!r} in {text!r} ({SPEC_HELP})")


@dataclass(frozen=True)
class SyntheticOptions:
    """What a `synthetic:` spec asks for."""

    count: int
    kinds: tuple[str, ...] | None = None
    style: str = "classic"
    chips: int | None = None  # scene side in pixels when the scenes are cut into chips

    @classmethod
    def parse(cls, parts: tuple[str, ...], text: str) -> SyntheticOptions:
        count = parts[0]
        if not count.isdigit() or int(count) < 1:
            raise UserError(f"synthetic spec {text!r} needs a positive number of scenes, e.g. synthetic:40")
        kinds, style, chips = None, "classic", None
        for part in parts[1:]:
            if part.startswith("chips="):
                value = part.removeprefix("chips=")
                if not value.isdigit() or int(value) < 32:
                    raise UserError(
                        f"synthetic spec {text!r}: chips=SIZE needs a scene size of 32 px or more"
                    )
                chips = int(value)
            elif part in STYLES:
                style = part
            else:
                unknown = [k for k in part.split("+") if k and k not in KINDS]
                if unknown or not part.strip("+"):
                    raise UserError(
                        f"synthetic spec {text!r} names unknown object kinds {unknown or [part]}; "
                        f"known: {', '.join(KINDS)} (styles: {', '.join(STYLES)})"
                    )
                kinds = tuple(k for k in part.split("+") if k)
        return cls(int(count), kinds, style, chips)

    def scene_style(self) -> SceneStyle:
        style = STYLES[self.style]
        # In chips, the scene's left is not the chip's: phrases of chipped scenes use no position words.
        return style.replace(position_words=False) if self.chips else style


def synthetic_scene_files(
    count: int,
    split: str,
    size: int,
    folder: Path,
    kinds: tuple[str, ...] | None = None,
    style: SceneStyle | None = None,
) -> list[tuple[Path, Path]]:
    """Write (or reuse) the scenes of a synthetic split under `folder`; returns (raster, vector) pairs."""
    suffix = "" if style is None or style == STYLES["classic"] else f"-{style.name}"
    if style is not None and not style.position_words:
        suffix += "-nopos"
    folder = folder / (f"synthetic-{size}px" + (f"-{'+'.join(kinds)}" if kinds else "") + suffix)
    pairs = []
    seed = SYNTHETIC_SEED_BASE[split]
    while len(pairs) < count:
        raster, vector = folder / f"scene-{seed}.tif", folder / f"scene-{seed}.gpkg"
        if not (raster.is_file() and vector.is_file()):
            scene = generate_scene(seed, size=size, kinds=kinds, style=style)
            if not scene.referable:
                # Nothing in it can be told apart from its twins (e.g. two alike roads when only
                # land cover is drawn): a scene without phrases teaches nothing, take the next seed.
                seed += 1
                continue
            raster, vector = write_region(scene, folder, name=f"scene-{seed}")
        pairs.append((raster, vector))
        seed += 1
    return pairs


def open_dataset(
    spec: DataSpec | str,
    split: str,
    chip_size: int,
    cache_dir: Path,
    seed: int = 0,
    region_config: RegionConfig | None = None,
    whole_regions: bool = False,
) -> ReferringDataset:
    """The `split` ("train", "val" or "test") of the data a spec names.

    Regions have a spatial train/val split (their "test" is their val blocks); with `whole_regions`
    every labelled feature of a region is taken instead (a region used only for training, or only for
    validation/testing), with random chips for "train" and fixed ones otherwise. Synthetic data is
    generated at `chip_size` into `cache_dir` and read through the region reader.
    """
    spec = DataSpec.parse(spec) if isinstance(spec, str) else spec
    base = replace(region_config or RegionConfig(), chip_size=chip_size, seed=seed)
    if spec.kind == "rrsisd":
        return RRSISDDataset(spec.args[0], split)
    if spec.kind == "refsegrs":
        return RefSegRSDataset(spec.args[0], split)
    if spec.kind == "region":
        config = replace(base, text_column=spec.args[2]) if len(spec.args) == 3 else base
        if whole_regions:
            return RegionDataset(spec.args[0], spec.args[1], "all", config, random_chips=split == "train")
        return RegionDataset(spec.args[0], spec.args[1], "train" if split == "train" else "val", config)
    options = SyntheticOptions.parse(spec.args, spec.text)
    count = options.count if split == "train" else math.ceil(options.count / SYNTHETIC_EVAL_SHARE)
    if options.chips:  # regions of their own: random chips with negatives (training), centred (eval)
        config, size = base, options.chips
    else:  # synthetic phrases speak of positions in the whole scene
        config, size = replace(base, whole_raster=True, chips_per_feature=1, negative_share=0.0), chip_size
    files = synthetic_scene_files(count, split, size, Path(cache_dir), options.kinds, options.scene_style())
    parts = [
        RegionDataset(
            raster, vector, "all", config, name=f"synthetic/{raster.stem}", random_chips=split == "train"
        )
        for raster, vector in files
    ]
    return ConcatReferringDataset(parts, name=f"synthetic:{spec.args[0]}:{split}")


def open_datasets(
    specs: list[str],
    split: str,
    chip_size: int,
    cache_dir: Path,
    seed: int = 0,
    region_config: RegionConfig | None = None,
    whole_regions: bool = False,
) -> ReferringDataset:
    """Several specs as one dataset (one spec → that dataset itself)."""
    if not specs:
        raise UserError("no data given")
    parsed = [DataSpec.parse(text) for text in specs]  # all specs checked before anything is read
    datasets = [
        open_dataset(spec, split, chip_size, cache_dir, seed, region_config, whole_regions) for spec in parsed
    ]
    return datasets[0] if len(datasets) == 1 else ConcatReferringDataset(datasets)
