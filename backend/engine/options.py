"""The parameters of one segmentation run, in one place.

Every entry point (CLI, service, Python callers) builds an `EngineOptions`; defaults that depend on
the raster or the model (tile size, simplify tolerance, minimum area) are `None` here and resolved by
the engine from the model's input size and the raster's pixel size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from backend.contract import CLI, options_class
from backend.engine.limits import RunLimits

KeepMode = Literal["best", "all"]

# Overlap between neighbouring tiles when not given: an eighth of the tile (1024 → 128), enough
# context that the kept (core) part of every tile is at least 1/16 of a tile away from its cut edges.
DEFAULT_OVERLAP_FRACTION = 1 / 8
# Simplify tolerance when not given, in pixels of the (resampled) grid: removes the staircase of
# pixel edges while keeping every vertex within about one pixel of the mask's outline.
DEFAULT_SIMPLIFY_PIXELS = 1.0
# Minimum polygon area when not given, in pixels: drops specks smaller than a 2×2 block.
DEFAULT_MIN_AREA_PIXELS = 4.0
# Percentiles of the per-band stretch for rasters that are not 8-bit.
STRETCH_PERCENTILES = (2.0, 98.0)
# Longest side of the decimated read the stretch statistics are computed from.
STRETCH_SAMPLE_SIDE = 1024
# GDAL's block cache for the entry points (MB; the GDAL_CACHEMAX environment variable wins). GDAL's
# own default is 5% of RAM, which a long run fills with blocks it never reads again: on a 16384²
# mosaic that added ~1.8 GB to the peak. Tiles are read once, row by row; a few rows of blocks suffice.
GDAL_CACHE_MB = 256


def bound_gdal_cache() -> None:
    """Call at the start of an entry point, before the first raster is read."""
    import os

    os.environ.setdefault("GDAL_CACHEMAX", str(GDAL_CACHE_MB))


@dataclass(frozen=True)
class AreaOfInterest:
    """A bounding box, in `crs` (any CRS string rasterio understands) or the raster's CRS when None."""

    bounds: tuple[float, float, float, float]  # minx, miny, maxx, maxy
    crs: str | None = None


# The knobs a person sets (threshold, keep, tiling, GSD, bands …) come from the one contract; the
# engine adds what only callers inside the backend set. The CLI's defaults are the engine's (keep every
# object); the service and the plugin default to the best match (the keep option's cli_default). The
# plugin's own options (rs2sam2_qgis/connection/request.py, `SegmentOptions`) are its forms' subset.
EngineOptions = options_class(
    "EngineOptions",
    CLI,
    extra_fields=(
        ("area", AreaOfInterest | None, field(default=None)),
        # rasters without a CRS give pixel coordinates only when allowed
        ("allow_no_crs", bool, field(default=False)),
        # GDAL drivers allowed to open the raster (None: any). The service allows only GTiff for
        # uploads, so an uploaded VRT cannot make the server read other files.
        ("drivers", tuple[str, ...] | None, field(default=None)),
        # Folders every file GDAL reads for the raster must lie in (None: anywhere): the service confines
        # a server-side path — and a VRT's sources, sidecars … — to its allowed roots, and an upload to
        # its own upload folder (backend/engine/confine.py).
        ("confine_to", tuple[Path, ...] | None, field(default=None)),
        # How much the run may ask (phrases, tile size, pixels, gsd): the service sets its own bounds.
        ("limits", RunLimits, field(default_factory=RunLimits)),
        # free-form provenance, not used by the engine
        ("extra", dict[str, str], field(default_factory=dict)),
    ),
    module=__name__,
)
