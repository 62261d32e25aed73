"""Reading a raster for the model: windows, band choice, radiometry, nodata, area, scale.

A `RasterView` opens anything GDAL reads (or an in-memory array), chooses three bands, computes the
stretch once from a decimated read, optionally resamples to a target ground sample distance through a
WarpedVRT, restricts itself to an area of interest, and then hands out tiles of that area as uint8 RGB
with a validity mask. It never reads more than one window at a time.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import RasterioError
from rasterio.transform import array_bounds
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds

from backend.engine.errors import AreaError, EngineInputError, NoCrsError, RasterError
from backend.engine.opening import (
    ArraySource,
    check_crs,
    check_georeference,
    check_structure,
    open_dataset,
    parse_crs_text,
    reading,
)
from backend.engine.options import STRETCH_PERCENTILES, STRETCH_SAMPLE_SIDE, AreaOfInterest, EngineOptions

# Approximate metres per degree, for turning a target GSD into degrees on a geographic CRS.
_METRES_PER_DEGREE_LAT = 110_574.0
_METRES_PER_DEGREE_LON_EQUATOR = 111_320.0
_GDAL_MAX_SIDE = 2**31 - 1  # GDAL addresses rows and columns with 32-bit integers


RasterInput = str | os.PathLike | ArraySource


@dataclass(frozen=True)
class BandStretch:
    """Per-band linear stretch to 0–255; identity for 8-bit data."""

    low: np.ndarray | None  # (bands,) or None for uint8 passthrough
    high: np.ndarray | None

    def apply(self, data: np.ndarray) -> np.ndarray:
        """(bands, h, w) any dtype → (bands, h, w) uint8."""
        if self.low is None or self.high is None:
            return data.astype(np.uint8, copy=False)
        low = self.low[:, None, None]
        scale = 255.0 / (self.high - self.low)[:, None, None]
        scaled = (data.astype(np.float32) - low) * scale
        return np.nan_to_num(scaled, nan=0.0).clip(0, 255).round().astype(np.uint8)


def source_name(source: RasterInput) -> str:
    return source.name if isinstance(source, ArraySource) else Path(source).name


def choose_bands(dataset: rasterio.DatasetReader, requested: tuple[int, ...] | None) -> tuple[int, ...]:
    """Three band numbers (1-based) to read as RGB, following colour interpretation when present."""
    count = dataset.count
    if requested is not None:
        if len(requested) not in (1, 3):
            raise EngineInputError(f"give one band or three bands, not {len(requested)}", "bad_bands")
        for band in requested:
            if not 1 <= band <= count:
                raise EngineInputError(
                    f"band {band} does not exist: the raster has {count} band(s)", "bad_bands"
                )
        return requested * 3 if len(requested) == 1 else tuple(requested)
    interp = list(dataset.colorinterp)
    rgb = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    if all(colour in interp for colour in rgb):
        return tuple(interp.index(colour) + 1 for colour in rgb)
    candidates = [i + 1 for i, ci in enumerate(interp) if ci != ColorInterp.alpha]
    if len(candidates) >= 3:
        return tuple(candidates[:3])
    if not candidates:
        raise RasterError("the raster has no band other than alpha")
    return (candidates[0],) * 3  # grey (or grey + something): replicate the first band


def compute_stretch(dataset, bands: tuple[int, ...], name: str = "the raster") -> BandStretch:
    """Percentile stretch per band from one decimated read of the whole raster (so all tiles agree)."""
    if np.dtype(dataset.dtypes[bands[0] - 1]) == np.uint8 and all(
        np.dtype(dataset.dtypes[b - 1]) == np.uint8 for b in bands
    ):
        return BandStretch(None, None)
    factor = max(1.0, max(dataset.width, dataset.height) / STRETCH_SAMPLE_SIDE)
    shape = (len(bands), max(1, round(dataset.height / factor)), max(1, round(dataset.width / factor)))
    data = dataset.read(indexes=list(bands), out_shape=shape, resampling=Resampling.nearest)
    masks = dataset.read_masks(indexes=list(bands), out_shape=shape, resampling=Resampling.nearest)
    low, high = [], []
    for band_data, band_mask in zip(data, masks):
        values = band_data[(band_mask > 0) & np.isfinite(band_data)]
        if values.size == 0:
            raise RasterError(f"{name} has no valid pixels: every one is nodata, NaN or infinite")
        lo, hi = np.percentile(values.astype(np.float64), STRETCH_PERCENTILES)
        low.append(lo)
        high.append(hi if hi > lo else lo + 1.0)
    return BandStretch(np.array(low, dtype=np.float32), np.array(high, dtype=np.float32))


def _resampled_grid(dataset, gsd: float) -> tuple[Affine, int, int]:
    """The same-CRS grid at `gsd` metres per pixel: (transform, width, height), from the header alone."""
    if dataset.crs is None:
        raise NoCrsError("resampling to a ground sample distance needs a raster with a CRS")
    t = dataset.transform
    if t.b != 0 or t.d != 0:
        raise EngineInputError("resampling to a ground sample distance needs a north-up raster", "bad_gsd")
    left, bottom, right, top = dataset.bounds
    if dataset.crs.is_geographic:
        lat = math.radians((top + bottom) / 2)
        xres = gsd / (_METRES_PER_DEGREE_LON_EQUATOR * max(math.cos(lat), 1e-6))
        yres = gsd / _METRES_PER_DEGREE_LAT
    else:
        unit = dataset.crs.linear_units_factor[1]
        xres = yres = gsd / unit
    width = max(1, round((right - left) / xres))
    height = max(1, round((top - bottom) / yres))
    if max(width, height) > _GDAL_MAX_SIDE:
        raise EngineInputError(
            f"at a gsd of {gsd:g} m/pixel the raster would be {width}×{height} pixels, more than GDAL can "
            "address; choose a coarser gsd",
            "bad_gsd",
        )
    return Affine(xres, 0.0, left, 0.0, -yres, top), width, height


def _check_geographic_bbox(minx: float, miny: float, maxx: float, maxy: float) -> None:
    """A bbox in degrees: longitudes within ±180, latitudes within ±90, not across the antimeridian."""
    longitudes_ok = -180 <= minx <= 180 and -180 <= maxx <= 180
    latitudes_ok = -90 <= miny <= 90 and -90 <= maxy <= 90
    if not (longitudes_ok and latitudes_ok):
        raise AreaError("a bbox in a geographic CRS must lie within longitudes -180…180 and latitudes -90…90")
    if minx > maxx:
        raise AreaError(
            "the bbox crosses the antimeridian (its MINX is east of its MAXX): split it in two at 180°"
        )


class RasterView:
    """One raster, restricted to an area and a scale, read tile by tile as uint8 RGB + validity.

    Coordinates: `transform` maps pixel (col, row) of the area to the raster's CRS (or to raster
    pixel coordinates when the raster has no CRS and that was allowed).
    """

    def __init__(
        self,
        source: RasterInput,
        options: EngineOptions,
        name: str | None = None,
        check_area: Callable[[int, int], None] | None = None,
    ):
        # `name`: what messages and features call the raster (an upload's own name, not its temp file's).
        # `check_area(width, height)`: the caller's own bounds of the area (e.g. view mode's largest
        # area), checked with the limits' before any pixel is read.
        self.name = name or source_name(source)
        self._dataset, self._memfile = open_dataset(source, options.drivers, options.confine_to, self.name)
        self._vrt: WarpedVRT | None = None
        try:
            self._setup(options, check_area)
        except BaseException:
            self.close()
            raise

    def _setup(self, options: EngineOptions, check_area: Callable[[int, int], None] | None) -> None:
        """Everything from the header, every bound checked; only then is a pixel read (the stretch)."""
        dataset = self._dataset
        check_structure(dataset, self.name)
        georeferenced = dataset.crs is not None
        if not georeferenced and not options.allow_no_crs:
            raise NoCrsError(
                f"{self.name} has no CRS; pass --allow-no-crs to get polygons in pixel coordinates"
            )
        if georeferenced:
            check_crs(dataset.crs, self.name)
            check_georeference(dataset.transform, self.name)
        self.crs: CRS | None = dataset.crs
        self.bands = choose_bands(dataset, options.bands)
        options.limits.check_gsd(options.gsd)
        if options.gsd is not None:
            grid_transform, grid_width, grid_height = _resampled_grid(dataset, options.gsd)
        else:
            grid_transform, grid_width, grid_height = dataset.transform, dataset.width, dataset.height
        if not georeferenced:
            grid_transform = Affine.identity()
        col0, row0, col1, row1 = 0, 0, grid_width, grid_height
        if options.area is not None:
            col0, row0, col1, row1 = self._area_window(options.area, grid_transform, grid_width, grid_height)
        self.col_off, self.row_off = col0, row0
        self.width, self.height = col1 - col0, row1 - row0
        # Area × resolution: a header declaring 10⁶ × 10⁶ pixels is refused here, before any read.
        options.limits.check_area(self.width, self.height)
        if check_area is not None:
            check_area(self.width, self.height)
        self.transform: Affine = grid_transform @ Affine.translation(col0, row0)
        self.pixel_size = math.sqrt(abs(self.transform.determinant))
        with reading(self.name):
            self.stretch = compute_stretch(dataset, self.bands, self.name)
            if options.gsd is not None:
                self._vrt = WarpedVRT(
                    dataset,
                    crs=dataset.crs,
                    transform=grid_transform,
                    width=grid_width,
                    height=grid_height,
                    resampling=Resampling.bilinear,
                )
        self._grid = self._vrt or dataset

    def _area_window(self, area: AreaOfInterest, transform: Affine, width: int, height: int):
        minx, miny, maxx, maxy = area.bounds
        if not all(math.isfinite(v) for v in area.bounds):
            raise AreaError("the bbox must be four finite numbers MINX,MINY,MAXX,MAXY")
        if area.crs is not None and self.crs is None:
            raise AreaError("a bbox CRS was given but the raster has no CRS")
        bbox_crs = parse_crs_text(area.crs) if area.crs is not None else self.crs
        if bbox_crs is not None and bbox_crs.is_geographic:
            _check_geographic_bbox(minx, miny, maxx, maxy)
        if not (minx < maxx and miny < maxy):
            raise AreaError("the bbox must be MINX,MINY,MAXX,MAXY with MINX < MAXX and MINY < MAXY")
        if area.crs is not None and bbox_crs != self.crs:
            try:
                minx, miny, maxx, maxy = transform_bounds(
                    bbox_crs, self.crs, minx, miny, maxx, maxy, densify_pts=21
                )
            except (RasterioError, CPLE_BaseError, ValueError):
                minx = math.nan
            if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
                raise AreaError("the bbox cannot be expressed in the raster's CRS") from None
        if transform.b == 0 and transform.d == 0:  # north-up: keep only the part over the raster
            west, south, east, north = array_bounds(height, width, transform)
            (left, right), (bottom, top) = sorted((west, east)), sorted((south, north))  # any axis sign
            minx, miny, maxx, maxy = max(minx, left), max(miny, bottom), min(maxx, right), min(maxy, top)
            if not (minx < maxx and miny < maxy):
                raise AreaError("the bbox lies outside the raster")
        try:
            window = from_bounds(minx, miny, maxx, maxy, transform=transform)
            # Round outward (after removing float fuzz) so every pixel the bbox touches is read.
            c0 = math.floor(round(window.col_off, 6))
            r0 = math.floor(round(window.row_off, 6))
            c1 = math.ceil(round(window.col_off + window.width, 6))
            r1 = math.ceil(round(window.row_off + window.height, 6))
        except (OverflowError, ValueError, ZeroDivisionError):  # coordinates beyond any raster
            raise AreaError("the bbox lies outside the raster") from None
        if c1 <= 0 or r1 <= 0 or c0 >= width or r0 >= height:
            raise AreaError("the bbox lies outside the raster")
        c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, width), min(r1, height)
        if c1 <= c0 or r1 <= r0:
            raise AreaError("the bbox covers no whole pixel of the raster")
        return c0, r0, c1, r1

    def read(self, col: int, row: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """The area's window → ((h, w, 3) uint8 RGB, (h, w) bool valid). Invalid pixels are black."""
        window = Window(self.col_off + col, self.row_off + row, width, height)
        unique = sorted(set(self.bands))
        with reading(self.name):
            data = self._grid.read(indexes=unique, window=window)
            masks = self._grid.read_masks(indexes=unique, window=window)
        # GDAL's convention (as in dataset_mask): a pixel is nodata when all its bands are, so a pure
        # red pixel of an RGB raster with nodata=0 stays valid.
        valid = np.any(masks > 0, axis=0) & np.all(np.isfinite(data), axis=0)
        picked = np.stack([data[unique.index(b)] for b in self.bands])
        rgb = self.stretch.apply(picked)
        rgb[:, ~valid] = 0
        return np.ascontiguousarray(rgb.transpose(1, 2, 0)), valid

    def read_whole(self, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """The whole area resampled to width × height → (RGB uint8, valid), as `read`.

        Bilinear with GDAL's antialiasing when shrinking (the kernel widens with the ratio), as the
        training chips are read; a pixel is valid when at least half of what it covers is.
        """
        window = Window(self.col_off, self.row_off, self.width, self.height)
        unique = sorted(set(self.bands))
        shape = (len(unique), height, width)
        with reading(self.name):
            data = self._grid.read(
                indexes=unique, window=window, out_shape=shape, resampling=Resampling.bilinear
            )
            masks = self._grid.read_masks(
                indexes=unique, window=window, out_shape=shape, resampling=Resampling.average
            )
        valid = np.any(masks >= 128, axis=0) & np.all(np.isfinite(data), axis=0)
        picked = np.stack([data[unique.index(b)] for b in self.bands])
        rgb = self.stretch.apply(picked)
        rgb[:, ~valid] = 0
        return np.ascontiguousarray(rgb.transpose(1, 2, 0)), valid

    def close(self) -> None:
        if self._vrt is not None:
            self._vrt.close()
        self._dataset.close()
        if self._memfile is not None:
            self._memfile.close()

    def __enter__(self) -> RasterView:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
