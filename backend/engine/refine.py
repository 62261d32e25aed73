"""View mode, second step: the objects found in the view, outlined at the raster's resolution.

The view says which object a phrase names and roughly where its outline is: within about two view
pixels (`context.band_half_width`). The tiles a band that wide around each referent's outline crosses
are predicted again at full resolution. Where that answer agrees with the view (it covers most of the
referent's pixels in the tile) it decides inside the band, weighted 2:1 against the view's (bilinearly
upsampled) answer; elsewhere the view's answer stands, and nothing outside the referent's zone (its
outline pushed out by the band) can be part of it. The full-resolution pieces are then given to the
referent they lie in. Tiles the band does not cross need no model call.

Other ways of constraining the full-resolution answer to the referent were measured on the bundled
demo model (`rs2sam2 bench context`, docs/benchmarks.md); `REFINEMENTS` keeps them for that
comparison. The kept one is `BAND`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from rasterio.features import rasterize
from shapely.geometry.base import BaseGeometry

from backend.engine.context import Referent
from backend.engine.tiling import Span
from backend.engine.vectorise import Region


@dataclass(frozen=True)
class Refinement:
    """How the full-resolution answer and the view's are combined near a referent, tile by tile.

    `native_in`: where the model is asked again at full resolution ("band", "zone" or "nowhere");
    `native_weight`: its weight against the view's probability there (1: it replaces the view's;
    2/3: it decides wherever it is confident, and the view tips the balance only where it is not);
    `min_agreement`: use it in a tile only when it covers at least this share of the referent's
    pixels there. A tile sees less than the view: asked "the largest field" it may name another
    field, and then it knows nothing about this one's outline.
    """

    name: str
    native_in: str
    native_weight: float = 1.0
    min_agreement: float = 0.0
    whole_answer: bool = True  # keep "best": every part of the view's answer (context.find_referents)

    def native_where(self, zone: np.ndarray, band: np.ndarray) -> np.ndarray | None:
        """Where the full-resolution answer counts in a tile core (None: nowhere, no model call)."""
        return {"zone": zone, "band": band}.get(self.native_in)

    def combine(
        self,
        native: np.ndarray | None,
        coarse: np.ndarray,
        where: np.ndarray,
        zone: np.ndarray,
        threshold: float,
    ) -> np.ndarray:
        """The probability of one phrase over a tile core, from the full-resolution answer (None when
        the model was not asked) and the view's upsampled one."""
        if native is None:
            return coarse
        if self.min_agreement > 0:
            referent = zone & (coarse > threshold)
            if not referent.any() or np.mean(native[referent] > threshold) < self.min_agreement:
                return coarse
        mixed = self.native_weight * native + (1 - self.native_weight) * coarse
        return np.where(where, mixed, coarse)


# Kept (best mIoU and boundary F of these on the demo model, docs/benchmarks.md):
BAND = Refinement("band", native_in="band", native_weight=2 / 3, min_agreement=0.5)
# The others, for that comparison:
LARGEST_PART = Refinement(  # as BAND, but keep "best" takes only the largest part of the view's answer
    "band, largest part", native_in="band", native_weight=2 / 3, min_agreement=0.5, whole_answer=False
)
BAND_ALWAYS = Refinement("band-always", native_in="band", native_weight=2 / 3)  # no agreement check
COMPONENTS = Refinement("components", native_in="zone")  # the full-resolution regions alone
UPSAMPLED = Refinement("upsampled", native_in="nowhere")  # no refinement: the view alone
REFINEMENTS = {r.name: r for r in (BAND, LARGEST_PART, BAND_ALWAYS, COMPONENTS, UPSAMPLED)}


@dataclass(frozen=True)
class PhraseZones:
    """Where one phrase's referents are: `zone` (may belong to one), `inside` (the view is sure)."""

    zone: BaseGeometry
    inside: BaseGeometry

    @classmethod
    def around(cls, referents: list[Referent], half_width: float) -> PhraseZones:
        outline = shapely.union_all([r.geometry for r in referents])
        return cls(outline.buffer(half_width), outline.buffer(-half_width))

    def touches(self, cols: Span, rows: Span) -> bool:
        return self.zone.intersects(shapely.box(cols.start, rows.start, cols.stop, rows.stop))

    def masks(self, cols: Span, rows: Span) -> tuple[np.ndarray, np.ndarray]:
        """(zone, band) as (h, w) bool over area pixels `rows` × `cols` (pixel-centre rule)."""
        shape = (rows.size, cols.size)
        to_window = Affine.translation(cols.start, rows.start)
        zone = _burn(self.zone, shape, to_window)
        return zone, zone & ~_burn(self.inside, shape, to_window)


def _burn(geometry: BaseGeometry, shape: tuple[int, int], transform: Affine) -> np.ndarray:
    if geometry.is_empty:
        return np.zeros(shape, bool)
    return rasterize([(geometry, 1)], out_shape=shape, transform=transform, dtype="uint8").astype(bool)


def assign_regions(regions: list[Region], referents: list[Referent], view_pixel: float) -> list[Region]:
    """One region per referent: the union of the full-resolution regions of its phrase that lie
    mostly (≥ half their area) inside its outline. A referent nothing was kept for keeps its outline
    from the view (`view_pixel`: area pixels per view pixel, to scale its mass)."""
    members: dict[int, list[Region]] = {i: [] for i in range(len(referents))}
    for region in regions:
        best, best_share = None, 0.5
        for i, referent in enumerate(referents):
            if referent.phrase_index != region.phrase_index:
                continue
            share = region.geometry.intersection(referent.geometry).area / max(region.geometry.area, 1e-12)
            if share >= best_share:
                best, best_share = i, share
        if best is not None:
            members[best].append(region)
    merged = []
    for i, referent in enumerate(referents):
        parts = members[i]
        if not parts:
            piece = referent.view_piece
            merged.append(
                Region(
                    referent.phrase_index,
                    referent.geometry,
                    piece.probability_sum * view_pixel,
                    max(1, round(piece.pixels * view_pixel)),
                )
            )
            continue
        geometry = parts[0].geometry if len(parts) == 1 else shapely.union_all([p.geometry for p in parts])
        merged.append(
            Region(
                referent.phrase_index,
                geometry,
                sum(p.probability_sum for p in parts),
                sum(p.pixels for p in parts),
            )
        )
    return merged
