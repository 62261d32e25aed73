"""Tiny seeded GeoTIFFs with a real CRS for engine tests."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning

UTM_ORIGIN = (500_000.0, 5_000_000.0)  # top-left corner in EPSG:32633
PIXEL = 2.0  # metres


def background(height: int, width: int, bands: int = 3, seed: int = 0) -> np.ndarray:
    """Dull grey-ish noise far from every stand-in colour."""
    rng = np.random.default_rng(seed)
    return rng.integers(90, 150, size=(bands, height, width), dtype=np.uint8)


def write_geotiff(
    path: Path,
    data: np.ndarray,
    crs: str | None = "EPSG:32633",
    transform: Affine | None = None,
    nodata: float | None = None,
    colorinterp=None,
) -> Path:
    if transform is None:
        transform = Affine(PIXEL, 0, UTM_ORIGIN[0], 0, -PIXEL, UTM_ORIGIN[1])
    profile = dict(
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # rasters without CRS are made on purpose
        dst = rasterio.open(path, "w", **profile)
    with dst:
        dst.write(data)
        if colorinterp is not None:
            dst.colorinterp = colorinterp
    return path


def paint(data: np.ndarray, rows: slice, cols: slice, colour: tuple[int, ...]) -> None:
    for band, value in enumerate(colour):
        data[band, rows, cols] = value


def pixel_box(col0: float, row0: float, col1: float, row1: float, transform: Affine):
    """The map-coordinate box of pixel columns [col0, col1) and rows [row0, row1)."""
    from shapely.geometry import box

    x0, y0 = transform @ (col0, row0)
    x1, y1 = transform @ (col1, row1)
    return box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
