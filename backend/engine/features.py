"""Regions in pixel space → features in the raster's CRS with their attributes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyproj
import shapely
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry.base import BaseGeometry

from backend.engine.options import KeepMode
from backend.engine.vectorise import Region

# The attribute table of every output, in order (all ≤ 10 characters, so Shapefiles keep them).
FIELDS: tuple[str, ...] = ("phrase", "score", "area", "source", "model", "created")


@dataclass(frozen=True)
class Feature:
    """One output polygon in the raster's CRS."""

    geometry: BaseGeometry
    phrase: str
    score: float  # mean probability inside the polygon
    area: float  # m² (geodesic on geographic CRSs); square pixels for rasters without CRS
    source: str
    model: str
    created: str  # UTC, ISO 8601 with Z

    def properties(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in FIELDS}


def reproject(geometries, source, target) -> list:
    """`geometries` (a None stays None) moved from CRS `source` to `target` (anything pyproj reads: a
    CRS object, WKT, "EPSG:n"); as they are when the two are the same CRS. pyproj's CRSError when one is
    unknown."""
    source, target = pyproj.CRS.from_user_input(source), pyproj.CRS.from_user_input(target)
    if source == target:
        return list(geometries)
    move = pyproj.Transformer.from_crs(source, target, always_xy=True).transform
    return [
        None if geometry is None else shapely.transform(geometry, lambda xy: np.c_[move(xy[:, 0], xy[:, 1])])
        for geometry in geometries
    ]


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


class AreaMeasure:
    """Area in square metres for any CRS: planar × unit² when projected, geodesic when geographic."""

    def __init__(self, crs: CRS | None):
        self._geod: pyproj.Geod | None = None
        self._factor = 1.0
        if crs is None:
            return
        pcrs = pyproj.CRS.from_wkt(crs.to_wkt())
        if pcrs.is_geographic:
            self._geod = pcrs.get_geod() or pyproj.Geod(ellps="WGS84")
        else:
            self._factor = crs.linear_units_factor[1] ** 2

    def __call__(self, geometry: BaseGeometry) -> float:
        if self._geod is not None:
            return abs(self._geod.geometry_area_perimeter(geometry)[0])
        return geometry.area * self._factor


def to_map_all(geometries: list[BaseGeometry], transform: Affine) -> np.ndarray:
    """Pixel-space geometries → map coordinates, all at once."""
    t = transform
    matrix = np.array([[t.a, t.d], [t.b, t.e]])
    offset = np.array([t.c, t.f])
    return shapely.transform(np.array(geometries, dtype=object), lambda xy: xy @ matrix + offset)


def simplify_polygons(geometries: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas–Peucker per ring, then repair the few rings that collapsed or crossed.

    GEOS's topology-preserving simplifier is quadratic on a polygon with thousands of holes (a
    noisy mask over a whole mosaic took minutes); plain simplification plus make_valid is linear
    and gives the same outlines wherever they stay valid, which is almost everywhere.
    """
    simplified = shapely.simplify(geometries, tolerance, preserve_topology=False)
    broken = ~shapely.is_valid(simplified)
    if broken.any():
        repaired = shapely.make_valid(simplified[broken], method="structure", keep_collapsed=False)
        simplified[broken] = [_polygonal(g) for g in repaired]
    return simplified


def _polygonal(geometry: BaseGeometry) -> BaseGeometry:
    """The polygon parts of a repaired geometry (lines and points left by collapsed rings are dropped)."""
    parts = [p for p in shapely.get_parts(geometry) if p.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def build_features(
    regions: list[Region],
    phrases: list[str],
    transform: Affine,
    crs: CRS | None,
    simplify: float,
    min_area: float,
    keep: KeepMode,
    source: str,
    model: str,
    created: str | None = None,
) -> list[Feature]:
    """Georeference, simplify, filter by area and choose which regions to keep, phrase by phrase.

    `keep="best"` keeps, per phrase, the region with the largest probability mass (Σ probability,
    i.e. mean score × size): the one object a referring phrase names, not a confident speck.
    """
    created = created or utc_now_iso()
    measure = AreaMeasure(crs)
    features: list[Feature] = []
    # Pixel polygons have exactly pixels × pixel area: drop specks before any geometry work.
    pixel_area = abs(transform.determinant)
    regions = [r for r in regions if r.pixels * pixel_area >= min_area]
    if not regions:
        return features
    # Vectorised over all regions: georeference, simplify, planar area for the min-area filter.
    geometries = to_map_all([r.geometry for r in regions], transform)
    if simplify > 0:
        geometries = simplify_polygons(geometries, simplify)
    planar = shapely.area(geometries)
    for phrase_index, phrase in enumerate(phrases):
        candidates = [
            (region, geometry)
            for region, geometry, area in zip(regions, geometries, planar)
            if region.phrase_index == phrase_index and not geometry.is_empty and area >= min_area
        ]
        candidates.sort(key=lambda item: item[0].probability_sum, reverse=True)
        if keep == "best":
            candidates = candidates[:1]
        for region, geometry in candidates:
            features.append(
                Feature(
                    geometry,
                    phrase,
                    round(region.mean_probability, 6),
                    measure(geometry),
                    source,
                    model,
                    created,
                )
            )
    return features
