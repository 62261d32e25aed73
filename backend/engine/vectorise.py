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
    outlines = [
        outline for outline, _ in shapes(mask.astype(np.uint8), mask=mask, connectivity=4, transform=to_area)
    ]
    geometries = [shape(outline) for outline in outlines]
    # Burn piece numbers back (pixel centres are never on a pixel-edge outline, so this is exact)
    # to sum probabilities per piece without a connected-component library. The GeoJSON outlines
    # go in as they came out, which is much faster than converting shapely geometries back.
    labels = rasterize(
        list(zip(outlines, range(1, len(outlines) + 1))),
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


def _clusters(geometries: list[BaseGeometry]) -> list[list[int]]:
    """Groups of geometries that touch or overlap, transitively (union-find over STRtree pairs)."""
    parent = list(range(len(geometries)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    left, right = shapely.STRtree(geometries).query(geometries, predicate="intersects")
    for i, j in zip(left.tolist(), right.tolist()):
        if i < j:
            parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(geometries)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def merge_pieces(pieces: list[Piece]) -> list[Region]:
    """Join the pieces of each phrase that meet across tile seams into whole regions.

    Only pieces on a seam can continue elsewhere; they are grouped by contact first so that each
    union is small (one object's pieces), which keeps merging fast even for very noisy masks.
    """
    regions: list[Region] = []
    by_phrase: dict[int, list[Piece]] = {}
    for piece in pieces:
        by_phrase.setdefault(piece.phrase_index, []).append(piece)
    for phrase_index, own in sorted(by_phrase.items()):
        regions += [
            Region(phrase_index, p.geometry, p.probability_sum, p.pixels) for p in own if not p.on_seam
        ]
        seam = [p for p in own if p.on_seam]
        if not seam:
            continue
        for group in _clusters([p.geometry for p in seam]):
            members = [seam[i] for i in group]
            merged = (
                members[0].geometry if len(members) == 1 else shapely.union_all([p.geometry for p in members])
            )
            total = sum(p.probability_sum for p in members)
            count = sum(p.pixels for p in members)
            parts = shapely.get_parts(merged)
            if len(parts) == 1:
                regions.append(Region(phrase_index, parts[0], total, count))
                continue
            # Pieces meeting only at a corner stay separate objects (4-connectivity, as within a tile):
            # give each part the sums of the pieces inside it.
            sums = np.zeros(len(parts))
            counts = np.zeros(len(parts), dtype=np.int64)
            points = shapely.point_on_surface([p.geometry for p in members])
            piece_idx, part_idx = shapely.STRtree(parts).query(points, predicate="within")
            for i, j in zip(piece_idx, part_idx):
                sums[j] += members[i].probability_sum
                counts[j] += members[i].pixels
            regions += [
                Region(phrase_index, part, float(t), int(c)) for part, t, c in zip(parts, sums, counts) if c
            ]
    return regions
