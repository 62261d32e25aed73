"""Small labelled regions for the service's training tests: a 256² GeoTIFF at 0.5 m in EPSG:32633 with
red roofs and blue pools painted in a grid, and their polygons written as GeoPackage or GeoJSON (in the
raster's CRS or another), optionally with features the service must drop: one off the raster, one
with an empty geometry, one with a blank phrase."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
import shapely
from pyogrio import raw
from pyproj import Transformer
from rasterio.transform import from_origin

CRS = "EPSG:32633"
SIZE = 256
GSD = 0.5
ORIGIN = (500000.0, 5000000.0)
TRANSFORM = from_origin(*ORIGIN, GSD, GSD)


def write_raster(path: Path, seed: int = 0) -> tuple[Path, list[tuple[shapely.Geometry, str]]]:
    """The raster, and (polygon in the raster's CRS, phrase) of every object painted in it (36)."""
    rng = np.random.default_rng(seed)
    image = (rng.random((3, SIZE, SIZE)) * 60 + 80).astype("uint8")
    objects = []
    for k in range(36):
        row, col = (k // 6) * 42 + 6, (k % 6) * 42 + 6
        red = k % 2 == 0
        colour = (200, 30, 30) if red else (30, 30, 200)
        for band in range(3):
            image[band, row : row + 22, col : col + 22] = colour[band]
        (x0, y0), (x1, y1) = TRANSFORM * (col, row), TRANSFORM * (col + 22, row + 22)
        objects.append((shapely.box(x0, y1, x1, y0), "the red roof" if red else "the blue pool"))
    profile = dict(
        driver="GTiff", width=SIZE, height=SIZE, count=3, dtype="uint8", crs=CRS, transform=TRANSFORM
    )
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(image)
    return path, objects


def write_labels(
    path: Path,
    objects: list[tuple[shapely.Geometry, str]],
    crs: str = CRS,
    with_bad: bool = False,
    field: str = "phrase",
) -> Path:
    """The objects' polygons (in `crs`) with their phrases in `field`; GeoJSON for a .geojson path.
    `with_bad`: also one feature off the raster, one empty, one with a blank phrase."""
    geometries = [geometry for geometry, _ in objects]
    phrases: list[str | None] = [phrase for _, phrase in objects]
    if with_bad:
        geometries += [shapely.box(0, 0, 10, 10), shapely.Polygon(), geometries[0]]
        phrases += ["the red roof", "the blue pool", "  "]
    if crs != CRS:
        move = Transformer.from_crs(CRS, crs, always_xy=True).transform
        geometries = [shapely.transform(g, lambda xy: np.c_[move(xy[:, 0], xy[:, 1])]) for g in geometries]
    driver = "GeoJSON" if path.suffix == ".geojson" else "GPKG"
    raw.write(
        str(path),
        shapely.to_wkb(np.array(geometries, dtype=object)),
        geometry_type="Polygon",
        field_data=[np.array(phrases, dtype=object)],
        fields=[field],
        crs=crs,
        driver=driver,
    )
    return path


def region(folder: Path, labels: int = 36, suffix: str = ".gpkg", **options) -> tuple[Path, Path]:
    """(raster, labels) of the first `labels` objects."""
    raster, objects = write_raster(folder / "region.tif")
    return raster, write_labels(folder / f"labels{suffix}", objects[:labels], **options)


def post(client, endpoint: str, raster: Path, labels: Path, params: dict, **fields):
    """POST /train or /evaluate with the raster and labels as uploads (and more form fields)."""
    with open(raster, "rb") as image, open(labels, "rb") as polygons:
        files = {
            "raster": (raster.name, image, "image/tiff"),
            "labels": (labels.name, polygons, "application/json"),
        }
        return client.post(endpoint, data={"params": json.dumps(params), **fields}, files=files)


def status_of(client, job_id: str) -> dict:
    answer = client.get(f"/training/{job_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()
