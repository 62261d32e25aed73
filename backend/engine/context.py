"""View mode, first step: the whole area seen at once, and the objects the phrases name in it.

The area is read once, shrunk so that its longest side fits the model's input (aspect kept) and
padded bottom/right with black to the model's square, as tiles smaller than the input are and as
training chips are filled beyond a raster's edge; the model resizes a square without distortion.
The answer in that view says *which* object a phrase names ("the largest field" among the fields of
the area, not of one tile); `backend.engine.refine` then draws its outline at full resolution.
See docs/method.md, "What area the model sees".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from backend.contract import AREA_TOO_LARGE, MAX_CONTEXT_SHRINK
from backend.engine.errors import EngineInputError
from backend.engine.tiling import Span
from backend.engine.vectorise import Piece, tile_pieces


@dataclass(frozen=True)
class ContextGrid:
    """How an area of `area_width` × `area_height` pixels maps onto the view the model gets."""

    area_width: int
    area_height: int
    width: int  # the shrunk area inside the model's input (the rest is padding)
    height: int
    input_size: int

    @property
    def scale_x(self) -> float:
        """Area pixels per view pixel, along x (≥ 1; exactly 1 when the area fits as it is)."""
        return self.area_width / self.width

    @property
    def scale_y(self) -> float:
        return self.area_height / self.height

    @property
    def shrink(self) -> float:
        return max(self.scale_x, self.scale_y)

    @property
    def is_native(self) -> bool:
        """The area fits the input at full resolution: the view is already the final answer."""
        return self.width == self.area_width and self.height == self.area_height

    def to_area(self, geometry: BaseGeometry) -> BaseGeometry:
        """View pixel coordinates → area pixel coordinates."""
        if self.is_native:
            return geometry
        sx, sy = self.scale_x, self.scale_y
        return shapely.transform(geometry, lambda xy: xy * np.array([sx, sy]))


class AreaTooLargeError(EngineInputError):
    code = AREA_TOO_LARGE


def plan_context(area_width: int, area_height: int, input_size: int) -> ContextGrid:
    """The view of an area: longest side → the input size (never enlarged); too large → a clear error."""
    longest = max(area_width, area_height)
    if longest > MAX_CONTEXT_SHRINK * input_size:
        raise AreaTooLargeError(
            f"the area is {area_width}×{area_height} pixels: seen whole at the model's {input_size}-pixel "
            f"input it would shrink {longest / input_size:.1f}× (view mode allows at most "
            f"{MAX_CONTEXT_SHRINK}×, {MAX_CONTEXT_SHRINK * input_size} pixels per side), too small to tell "
            "objects apart; choose a smaller area or a coarser gsd, or use context 'tiles' to search it "
            "tile by tile"
        )
    if longest <= input_size:
        return ContextGrid(area_width, area_height, area_width, area_height, input_size)
    factor = input_size / longest
    width = min(input_size, max(1, round(area_width * factor)))
    height = min(input_size, max(1, round(area_height * factor)))
    return ContextGrid(area_width, area_height, width, height, input_size)


@dataclass(frozen=True)
class Referent:
    """One object a phrase names, as found in the view: its outline in view and area pixels."""

    phrase_index: int
    view_piece: Piece  # in view pixels, with its probability mass there
    geometry: BaseGeometry  # the same outline in area pixels
    fine: bool = False  # found by the full-resolution pass (view_mode: too small for the view)


def find_referents(
    phrase_index: int,
    probability: np.ndarray,
    valid: np.ndarray,
    grid: ContextGrid,
    threshold: float,
    keep: str,
    min_area_pixels: float,
    whole_answer: bool = True,
) -> list[Referent]:
    """The objects of one phrase in the view, parts smaller than the minimum area left out.

    keep "all": every part on its own. keep "best": the one object the phrase names — the view's
    whole answer, in as many parts as it has (the view is one question, and a model trained on whole
    images outlines one object in all its visible parts, e.g. a river cut by a road); with
    `whole_answer` off, only its part with the largest probability mass (the rule tiles mode needs to
    choose among the answers of different tiles; kept for the comparison in docs/benchmarks.md).
    """
    pieces = tile_pieces(
        phrase_index,
        probability,
        valid,
        threshold,
        Span(0, grid.width),
        Span(0, grid.height),
        grid.width,
        grid.height,
    )
    view_pixel = grid.scale_x * grid.scale_y  # area pixels per view pixel
    pieces = [p for p in pieces if p.pixels * view_pixel >= min_area_pixels]
    if keep == "best" and len(pieces) > 1:
        if not whole_answer:
            pieces = [max(pieces, key=lambda p: p.probability_sum)]
        else:
            geometry = shapely.union_all([p.geometry for p in pieces])
            mass, pixels = sum(p.probability_sum for p in pieces), sum(p.pixels for p in pieces)
            pieces = [Piece(phrase_index, geometry, mass, pixels, on_seam=False)]
    return [Referent(phrase_index, piece, grid.to_area(piece.geometry)) for piece in pieces]


def upsample(probability: np.ndarray, grid: ContextGrid, cols: Span, rows: Span) -> np.ndarray:
    """The view's (h, w) probability bilinearly resampled onto area pixels `rows` × `cols`.

    Pixel centres map to pixel centres (edge values held), so it agrees with how the view was shrunk.
    """
    if grid.is_native:
        return probability[rows.start : rows.stop, cols.start : cols.stop]
    x = (np.arange(cols.start, cols.stop) + 0.5) / grid.scale_x - 0.5
    y = (np.arange(rows.start, rows.stop) + 0.5) / grid.scale_y - 0.5
    x0, fx = _cell(x, grid.width)
    y0, fy = _cell(y, grid.height)
    top = probability[y0][:, x0] * (1 - fx) + probability[y0][:, x0 + 1] * fx
    bottom = probability[y0 + 1][:, x0] * (1 - fx) + probability[y0 + 1][:, x0 + 1] * fx
    return (top * (1 - fy)[:, None] + bottom * fy[:, None]).astype(np.float32)


def _cell(coords: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(left index, fraction) of each coordinate between cell centres, clamped at the edges."""
    if size == 1:
        return np.zeros(coords.shape, int), np.zeros(coords.shape)
    clamped = np.clip(coords, 0, size - 1)
    left = np.minimum(np.floor(clamped).astype(int), size - 2)
    return left, clamped - left


def band_half_width(grid: ContextGrid) -> float:
    """How far (area pixels) the view's outline may be from the true one: two view pixels (shrinking
    blurs an edge over about two), at least 2."""
    return max(2.0, math.ceil(2 * grid.shrink))
