"""Reading image and mask files of the benchmarks (JPEG through Pillow, TIFF through rasterio/GDAL,
which reads every TIFF flavour the benchmarks ship)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning

from backend.errors import UserError


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 from a JPEG/PNG/TIFF; a single band is repeated, extra bands are dropped."""
    if not path.is_file():
        raise UserError(f"image file {path} is missing")
    if path.suffix.lower() in (".tif", ".tiff"):
        bands = read_tiff_bands(path)
        if bands.shape[0] == 1:
            bands = np.repeat(bands, 3, axis=0)
        return np.ascontiguousarray(np.moveaxis(bands[:3], 0, -1)).astype(np.uint8)
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def read_tiff_bands(path: Path) -> np.ndarray:
    """(bands, H, W) array of a TIFF that need not be georeferenced."""
    if not path.is_file():
        raise UserError(f"image file {path} is missing")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as dataset:
            return dataset.read()
