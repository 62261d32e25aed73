"""Opening a raster for a run, and saying in one sentence what is wrong with a bad one.

- `open_dataset`: any GDAL raster (or an in-memory array, `ArraySource`), restricted to `drivers` and
  confined to folders when asked (backend/engine/confine.py);
- `check_structure`: what the header already tells — no bands, a data type the model cannot take
  (complex numbers), a GeoTIFF whose pixel blocks lie beyond the end of the file (an upload cut short);
- `check_crs`, `check_georeference`: a CRS the run cannot measure in, pixels without a size (a
  mangled header);
- `reading`: GDAL's read errors as `unreadable_raster`: a truncated or corrupt file is the client's
  mistake, not a fault of the server;
- `parse_crs_text`: a CRS from a person's text, without GDAL's habit of reading the files and URLs
  such a text may name.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyproj
import rasterio
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.errors import CRSError, NotGeoreferencedWarning, RasterioError, RasterioIOError
from rasterio.io import DatasetReader, MemoryFile

from backend.engine.confine import check_confined, plain_path_problem
from backend.engine.errors import AreaError, RasterError

UNREADABLE_RASTER = "unreadable_raster"
BAD_DATA_TYPE = "bad_data_type"
BAD_CRS = "bad_crs"
BAD_GEOREFERENCE = "bad_georeference"
# A pixel's side in the raster's CRS units (metres, feet, degrees) outside this range is a broken header.
MIN_PIXEL_SIZE, MAX_PIXEL_SIZE = 1e-12, 1e12
# Checking where a GeoTIFF's blocks end costs one header look-up per block; beyond this many blocks the
# check is left to the reads themselves (which `reading` turns into the same error).
MAX_BLOCKS_CHECKED = 100_000
MAX_CRS_CHARS = 20_000  # the longest WKT of a real CRS is a few thousand characters
# PROJ parameters that read files (init files, grids): a CRS given as text must not make the server
# read files it names.
_FILE_PARAMETERS = re.compile(r"(^|[\s+])(init|nadgrids|geoidgrids|grids)\s*=", re.IGNORECASE)


@dataclass(frozen=True)
class ArraySource:
    """An in-memory raster: (bands, H, W) or (H, W) array with its georeference."""

    array: np.ndarray
    transform: Affine
    crs: str | CRS | None
    nodata: float | None = None
    name: str = "array"


def open_dataset(
    source,
    drivers: tuple[str, ...] | None = None,
    confine_to: tuple[Path, ...] | None = None,
    name: str | None = None,
) -> tuple[rasterio.DatasetReader, MemoryFile | None]:
    """(dataset, memory file to close after it, for an in-memory array). `name` is what messages call
    the raster (default: the file's name)."""
    if isinstance(source, ArraySource):
        return _open_array(source)
    path = Path(source)
    if confine_to is not None and (problem := plain_path_problem(str(path))) is not None:
        raise RasterError(problem, "path_not_allowed")
    if not path.exists():
        raise RasterError(f"no such file: {path}", "not_found")
    if path.is_dir():
        raise RasterError(f"{path} is a folder, not a raster")
    dataset = _open_file(path, drivers, name or path.name)
    if confine_to is not None:
        try:
            check_confined(
                path, dataset.files, dataset.driver, confine_to, lambda p: _files_of(p, drivers), name=name
            )
        except BaseException:
            dataset.close()
            raise
    return dataset, None


def _open_file(path: Path, drivers: tuple[str, ...] | None, name: str) -> rasterio.DatasetReader:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            if drivers:
                # GDAL is never asked to try another driver (a WMS description is not even parsed).
                # rasterio.open takes a single driver; its reader takes GDAL's list of allowed ones.
                with rasterio.Env():
                    dataset = DatasetReader(path, driver=list(drivers), sharing=False)
            else:
                dataset = rasterio.open(path)
    except (RasterioError, CPLE_BaseError):
        if not drivers:
            raise RasterError(f"{name} is not a raster GDAL can read") from None
        accepted = ", ".join(drivers) if len(drivers) <= 3 else "GeoTIFF, JPEG 2000, VRT and other files"
        raise RasterError(f"{name} is not a raster of an accepted format ({accepted})") from None
    if drivers and dataset.driver not in drivers:
        dataset.close()
        raise RasterError(f"{name} is a {dataset.driver} raster, which is not accepted")
    return dataset


def _files_of(path: Path, drivers: tuple[str, ...] | None) -> tuple[list[str], str]:
    with _open_file(path, drivers, path.name) as dataset:
        return list(dataset.files), dataset.driver


def _open_array(source) -> tuple[rasterio.DatasetReader, MemoryFile]:
    array = source.array[None] if source.array.ndim == 2 else source.array
    if array.ndim != 3 or array.shape[1] == 0 or array.shape[2] == 0:
        raise RasterError("the array must be (bands, height, width) or (height, width) and not empty")
    memfile = MemoryFile()
    profile = {
        "driver": "GTiff",
        "width": array.shape[2],
        "height": array.shape[1],
        "count": array.shape[0],
        "dtype": array.dtype,
        "transform": source.transform,
        "crs": source.crs,
        "nodata": source.nodata,
    }
    with memfile.open(**profile) as writer:
        writer.write(array)
    return memfile.open(), memfile


def check_structure(dataset, name: str) -> None:
    """Refuse what the header shows to be unusable, before any pixel is read."""
    if dataset.count == 0:
        raise RasterError(f"{name} has no bands")
    complex_types = [dtype for dtype in dataset.dtypes if np.issubdtype(np.dtype(dtype), np.complexfloating)]
    if complex_types:
        raise RasterError(
            f"{name} holds complex numbers ({complex_types[0]}), which the model cannot read; "
            "convert it to real-valued bands first",
            BAD_DATA_TYPE,
        )
    if dataset.driver == "GTiff" and dataset.name and os.path.isfile(dataset.name):
        end = _last_block_end(dataset)
        size = os.path.getsize(dataset.name)
        if end is not None and end > size:
            raise RasterError(
                f"{name} is cut short: its pixel data runs to byte {end:,} but the file has {size:,} "
                "bytes (an interrupted copy or upload?)",
                UNREADABLE_RASTER,
            )


def _last_block_end(dataset) -> int | None:
    """Where the last pixel block of a GeoTIFF ends (bytes), from its header; None when unknown."""
    block_height, block_width = dataset.block_shapes[0]
    rows = math.ceil(dataset.height / block_height)
    cols = math.ceil(dataset.width / block_width)
    # Pixel-interleaved files keep all bands in the blocks of band 1; band-interleaved ones one set each.
    interleave = dataset.tags(ns="IMAGE_STRUCTURE").get("INTERLEAVE", "PIXEL")
    bands = range(1, dataset.count + 1) if interleave.upper() == "BAND" else [1]
    if rows * cols * len(bands) > MAX_BLOCKS_CHECKED:
        return None
    end = 0
    for band in bands:
        for row in range(rows):
            for col in range(cols):
                offset = dataset.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=band)
                size = dataset.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=band)
                if offset is None or size is None:
                    return None  # not a layout GDAL describes block by block
                if int(offset) > 0:  # 0: a sparse block, read as empty
                    end = max(end, int(offset) + int(size))
    return end


def check_crs(crs: CRS, name: str) -> None:
    """The raster's own CRS must be one the run can measure in (areas in m², a gsd in metres):
    geographic, or projected with a linear unit. A header may declare keys PROJ cannot resolve (read
    as a local engineering CRS) or a projection without a unit."""
    try:
        if pyproj.CRS.from_wkt(crs.to_wkt()).is_geographic:
            return
        crs.linear_units_factor  # noqa: B018 - raises for a CRS that is not projected or has no unit
    except (pyproj.exceptions.CRSError, CRSError, CPLE_BaseError, ValueError):
        raise RasterError(
            f"{name} declares a coordinate reference system that is neither geographic nor projected "
            "with a known unit, which the engine cannot measure in; give it a valid CRS (e.g. with "
            "gdal_edit.py -a_srs)",
            BAD_CRS,
        ) from None


def check_georeference(transform: Affine, name: str) -> None:
    """Pixels of a size: a header's geotransform may be all zeros, NaN or absurd (a mangled file)."""
    coefficients = (transform.a, transform.b, transform.c, transform.d, transform.e, transform.f)
    pixel = math.sqrt(abs(transform.determinant)) if all(map(math.isfinite, coefficients)) else math.nan
    if not MIN_PIXEL_SIZE <= pixel <= MAX_PIXEL_SIZE:
        raise RasterError(
            f"{name} has a geotransform whose pixels have no usable size ({pixel:g} units); give it a "
            "valid georeference",
            BAD_GEOREFERENCE,
        )


@contextmanager
def reading(name: str) -> Iterator[None]:
    """GDAL failing to read pixels of the input (a truncated or corrupt file) → `unreadable_raster`."""
    try:
        yield
    except (RasterioError, CPLE_BaseError):
        raise RasterError(
            f"{name} could not be read: the file is cut short or corrupt", UNREADABLE_RASTER
        ) from None


def parse_crs_text(text: str) -> CRS:
    """A CRS a person typed (EPSG:4326, a WKT, a PROJ string, PROJJSON, a CRS name).

    Read by PROJ (which reads text only), not by GDAL's "user input", which opens a file or fetches a
    URL given instead (a server must not read what a client names in a CRS).
    """
    if not isinstance(text, str) or not text.strip():
        raise AreaError("the CRS is empty")
    if len(text) > MAX_CRS_CHARS:
        raise AreaError(f"the CRS text is longer than {MAX_CRS_CHARS} characters")
    if _FILE_PARAMETERS.search(text):
        raise AreaError(f"unknown CRS {_short(text)}: PROJ init files and grids are not accepted")
    try:
        parsed = pyproj.CRS.from_user_input(text.strip())
        return CRS.from_wkt(parsed.to_wkt())
    except (pyproj.exceptions.CRSError, CRSError, CPLE_BaseError, RasterioIOError, ValueError, TypeError):
        raise AreaError(f"unknown CRS {_short(text)}") from None


def _short(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")
