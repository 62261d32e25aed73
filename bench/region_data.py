"""The regions of the small-region benchmark (bench/region.py): large rasters made as mosaics of
512-pixel world-style scenes (training/data/scene_style.py) with a generator configuration of their own
— other colour shades and colour names, another mix of kinds, other object sizes — than the scenes the
bundled model learnt from. A person's labels are imitated by choosing a few objects per block, by a
rule fixed before any model saw them: as many of each kind as the region allows (round robin over the
kinds, a random object each time, at most a few per block), one phrase each, phrases without position
words (a position in a block is not one in a chip)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pyogrio
import rasterio
import shapely
from affine import Affine

from training.data.scene_style import WORLD, WORLD_SIZES_M
from training.data.synthetic import generate_scene

BLOCK = 512  # pixels: one block is one query window
GSD = 0.5
CRS = "EPSG:32633"
TEXT_COLUMN = "description"

# A town: other shades, some colour names the base model never read, more buildings, cars, courts and
# pools, larger buildings and fields.
TOWN_PALETTE = {
    "field": {"green": (80, 150, 70), "yellow": (210, 190, 110), "brown": (150, 110, 80)},
    "pond": {"blue": (30, 95, 165), "dark": (30, 45, 55), "green": (60, 120, 95)},
    "river": {"blue": (40, 100, 170)},
    "road": {"grey": (115, 115, 120), "dark": (55, 55, 60)},
    "building": {
        "red": (155, 60, 50),
        "white": (238, 235, 228),
        "grey": (118, 120, 128),
        "blue": (45, 110, 195),
        "brown": (130, 90, 60),
        "purple": (120, 75, 145),
        "beige": (210, 195, 160),
    },
    "vehicle": {
        "red": (215, 35, 35),
        "white": (245, 245, 245),
        "black": (20, 20, 25),
        "blue": (30, 80, 210),
        "yellow": (240, 215, 30),
        "orange": (235, 125, 30),
    },
    "tree": {"dark green": (35, 80, 40), "light green": (120, 175, 80)},
    "court": {"green": (55, 140, 85), "blue": (40, 100, 175), "red": (175, 70, 55), "purple": (125, 80, 150)},
    "pool": {"blue": (35, 125, 210), "turquoise": (70, 190, 195)},
}
TOWN_SIZES = {
    **WORLD_SIZES_M,
    "building": {"side": (10.0, 45.0), "height": (4.0, 16.0)},
    "field": {"side": (80.0, 250.0)},
    "pond": {"radius": (10.0, 40.0)},
    "court": {"length": (24.0, 36.0), "width": (12.0, 19.0)},
}
TOWN = WORLD.replace(
    name="town",
    gsd_range=None,  # every block at the region's 0.5 m
    palette=MappingProxyType({k: MappingProxyType(v) for k, v in TOWN_PALETTE.items()}),
    sizes=MappingProxyType({k: MappingProxyType(v) for k, v in TOWN_SIZES.items()}),
    scene_types=MappingProxyType({"village": 1.0, "town": 1.0, "farmland": 0.3, "water": 0.3}),
    kind_weights=MappingProxyType({"building": 1.4, "vehicle": 1.5, "court": 1.5, "pool": 1.5, "pond": 1.5}),
    max_per_kind=14,
    sixteen_bit_share=0.0,
    position_words=False,
)


@dataclass
class Label:
    """One labelled object: its phrase, polygon in map coordinates, kind and the block it lies in."""

    phrase: str
    geometry: shapely.Geometry
    kind: str
    block: tuple[float, float, float, float]  # the block's bounds (minx, miny, maxx, maxy): a query window


@dataclass
class Region:
    raster: Path
    labels_path: Path
    labels: list[Label] = field(default_factory=list)


def make_region(folder: Path, name: str, first_seed: int, labels: int = 45, blocks: int = 4) -> Region:
    """A (blocks·512)² raster at 0.5 m and the labels chosen in it, written as GeoTIFF + GeoPackage."""
    side = blocks * BLOCK
    origin = (400_000.0 + first_seed * 10.0, 5_200_000.0)
    image = np.zeros((side, side, 3), np.uint8)
    candidates: list[Label] = []
    for k in range(blocks * blocks):
        row, col = divmod(k, blocks)
        x0, y0 = origin[0] + col * BLOCK * GSD, origin[1] - row * BLOCK * GSD
        scene = generate_scene(first_seed + k, size=BLOCK, gsd=GSD, crs=CRS, origin=(x0, y0), style=TOWN)
        image[row * BLOCK : (row + 1) * BLOCK, col * BLOCK : (col + 1) * BLOCK] = scene.image
        bounds = (x0, y0 - BLOCK * GSD, x0 + BLOCK * GSD, y0)
        for obj in scene.referable:
            geometry = shapely.affinity.affine_transform(obj.polygon, [GSD, 0, 0, -GSD, x0, y0])
            candidates.append(Label(obj.phrases[0], geometry, obj.kind, bounds))
    chosen = choose_labels(candidates, np.random.default_rng(first_seed), labels)
    folder.mkdir(parents=True, exist_ok=True)
    raster = _write_raster(folder / f"{name}.tif", image, Affine(GSD, 0, origin[0], 0, -GSD, origin[1]))
    return Region(raster, _write_labels(folder / f"{name}.gpkg", chosen), chosen)


def choose_labels(candidates: list[Label], rng: np.random.Generator, count: int, per_block: int = 4) -> list:
    """Round robin over the kinds (in name order), a random candidate each time, at most `per_block`
    labels in one block, until `count` labels or no candidates are left."""
    by_kind: dict[str, list[Label]] = {}
    for label in candidates:
        by_kind.setdefault(label.kind, []).append(label)
    chosen: list[Label] = []
    in_block: dict[tuple, int] = {}
    while len(chosen) < count and any(by_kind.values()):
        for kind in sorted(by_kind):
            options = [c for c in by_kind[kind] if in_block.get(c.block, 0) < per_block]
            if not options:
                by_kind[kind] = []
                continue
            label = options[int(rng.integers(len(options)))]
            by_kind[kind].remove(label)
            chosen.append(label)
            in_block[label.block] = in_block.get(label.block, 0) + 1
            if len(chosen) == count:
                break
    return chosen


def _write_raster(path: Path, image: np.ndarray, transform: Affine) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tif.part")
    os.close(fd)
    try:
        profile = dict(
            driver="GTiff",
            width=image.shape[1],
            height=image.shape[0],
            count=3,
            dtype="uint8",
            crs=CRS,
            transform=transform,
            compress="deflate",
            tiled=True,
        )
        with rasterio.open(tmp, "w", **profile) as dataset:
            dataset.write(np.moveaxis(image, -1, 0))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _write_labels(path: Path, labels: list[Label]) -> Path:
    path.unlink(missing_ok=True)
    geometries = [
        g if g.geom_type == "MultiPolygon" else shapely.MultiPolygon([g])
        for g in (x.geometry for x in labels)
    ]
    pyogrio.raw.write(
        str(path),
        geometry=shapely.to_wkb(np.array(geometries, dtype=object)),
        field_data=[np.array([label.phrase for label in labels], dtype=object)],
        fields=[TEXT_COLUMN],
        layer="labels",
        driver="GPKG",
        geometry_type="MultiPolygon",
        crs=CRS,
    )
    return path
