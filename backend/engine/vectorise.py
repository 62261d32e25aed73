"""Probability tiles → polygon pieces → whole regions.

Each tile's core is thresholded and vectorised on its own (rasterio.features.shapes, holes kept) in
*pixel coordinates of the area*, which are exact integers: pieces of one object in neighbouring cores
therefore share their seam edges exactly, and a union of the pieces that touch a seam gives back the
object as one polygon. Only vectors are kept between tiles, never a raster of the whole area.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from rasterio.features import rasterize, shapes
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from backend.engine.tiling import Span


@dataclass(frozen=True)
class Piece:
    """A connected region of one phrase's mask inside one tile core (pixel coordinates of the area)."""

    phrase_index: int
    geometry: BaseGeometry
    probability_sum: float  # Σ probability over the piece's pixels (for the mean score after merging)
    pixels: int
    on_seam: bool  # touches an interior core edge: may continue in the next tile


@dataclass(frozen=True)
class Region:
    """One whole object of one phrase after merging pieces across tiles."""

    phrase_index: int
    geometry: BaseGeometry
    probability_sum: float
    pixels: int

    @property
    def mean_probability(self) -> float:
        return self.probability_sum / self.pixels if self.pixels else 0.0


def tile_pieces(
    phrase_index: int,
    probability: np.ndarray,
    valid: np.ndarray,
    threshold: float,
    cols: Span,
    rows: Span,
    area_width: int,
    area_height: int,
) -> list[Piece]:
    """Vectorise the core `probability` (h, w) whose top-left pixel is (cols.start, rows.start)."""
    mask = (probability > threshold) & valid
    if not mask.any():
        return []
    to_area = Affine.translation(cols.start, rows.start)
    geometries = [
        shape(geojson)
        for geojson, _ in shapes(mask.astype(np.uint8), mask=mask, connectivity=4, transform=to_area)
    ]
    # Burn piece numbers back (pixel centres are never on a pixel-edge outline, so this is exact)
    # to sum probabilities per piece without a connected-component library.
    labels = rasterize(
        [(geometry, number) for number, geometry in enumerate(geometries, start=1)],
        out_shape=mask.shape,
        transform=to_area,
        fill=0,
        dtype="int32",
    )
    counts = np.bincount(labels.ravel(), minlength=len(geometries) + 1)
    sums = np.bincount(
        labels.ravel(), weights=probability.ravel().astype(np.float64), minlength=len(geometries) + 1
    )
    interior_edges = (cols.start > 0, rows.start > 0, cols.stop < area_width, rows.stop < area_height)
    pieces = []
    for number, geometry in enumerate(geometries, start=1):
        minx, miny, maxx, maxy = geometry.bounds
        touches = (minx <= cols.start, miny <= rows.start, maxx >= cols.stop, maxy >= rows.stop)
        on_seam = any(t and interior for t, interior in zip(touches, interior_edges))
        pieces.append(Piece(phrase_index, geometry, float(sums[number]), int(counts[number]), on_seam))
    return pieces


def merge_pieces(pieces: list[Piece]) -> list[Region]:
    """Join the pieces of each phrase that meet across tile seams into whole regions."""
    regions: list[Region] = []
    for phrase_index in sorted({p.phrase_index for p in pieces}):
        own = [p for p in pieces if p.phrase_index == phrase_index]
        regions += [
            Region(phrase_index, p.geometry, p.probability_sum, p.pixels) for p in own if not p.on_seam
        ]
        seam = [p for p in own if p.on_seam]
        if not seam:
            continue
        parts = shapely.get_parts(shapely.union_all([p.geometry for p in seam]))
        sums = np.zeros(len(parts))
        counts = np.zeros(len(parts), dtype=np.int64)
        # Every piece lies inside exactly one part of the union: find it through a point on its surface.
        points = shapely.point_on_surface([p.geometry for p in seam])
        piece_idx, part_idx = shapely.STRtree(parts).query(points, predicate="within")
        for i, j in zip(piece_idx, part_idx):
            sums[j] += seam[i].probability_sum
            counts[j] += seam[i].pixels
        regions += [
            Region(phrase_index, part, float(s), int(c)) for part, s, c in zip(parts, sums, counts) if c > 0
        ]
    return regions
