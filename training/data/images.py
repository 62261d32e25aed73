"""Reading image and mask files of the benchmarks (JPEG through Pillow, TIFF through rasterio/GDAL,
which reads every TIFF flavour the benchmarks ship). A missing, cut-short or corrupt file is a
`UserError` naming it, never a traceback from the library."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio._err import CPLE_BaseError
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from backend.errors import UserError

TIFF_SUFFIXES = (".tif", ".tiff")


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 from a JPEG/PNG/TIFF; a single band is repeated, extra bands are dropped."""
    if path.suffix.lower() in TIFF_SUFFIXES:
        bands = read_tiff_bands(path)
        if bands.shape[0] == 1:
            bands = np.repeat(bands, 3, axis=0)
        return np.ascontiguousarray(np.moveaxis(bands[:3], 0, -1)).astype(np.uint8)
    _check_exists(path)
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as exc:  # PIL: unidentified, truncated, broken headers
        raise _unreadable(path, exc) from None


def read_tiff_bands(path: Path) -> np.ndarray:
    """(bands, H, W) array of a TIFF that need not be georeferenced."""
    _check_exists(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as dataset:
                return dataset.read()
    except (RasterioError, CPLE_BaseError) as exc:
        raise _unreadable(path, exc) from None


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file from its header alone (no pixel is decoded)."""
    _check_exists(path)
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(path) as dataset:
                    return dataset.height, dataset.width
        with Image.open(path) as image:
            return image.height, image.width
    except (RasterioError, CPLE_BaseError, OSError, ValueError, SyntaxError) as exc:
        raise _unreadable(path, exc) from None


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise UserError(f"image file {path} is missing")


def _unreadable(path: Path, exc: BaseException) -> UserError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UserError(f"{path} could not be read: it is cut short, corrupt or not an image ({reason[:120]})")
