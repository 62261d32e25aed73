"""View mode (`context="view"`): the whole area answered at once, the objects found outlined at the
raster's resolution. `SegmentRun` uses it for interactive requests (keep "best" by default).

1. `context`: the area read once at the model's input size; the referents of each phrase in it;
2. `refine`: the tiles of the area's own tile grid that the referents' zones cross, at full
   resolution (a model call only where the outline band crosses a tile core), as pieces that merge
   across tile seams exactly as in tiles mode;
3. the merged regions are given to their referents: one region per referent.

Coarse to fine for small objects (keep "best"): a view shrunk more than `FINE_PASS_SHRINK` times turns a
car into a pixel or two, so a phrase whose view answer is missing or smaller than `SMALL_IN_VIEW`
view pixels is also asked of every tile at full resolution. Those candidates are scored by their own
probability mass and by the view's support around them (the view still says *where* in the area the
phrase points, even when it cannot outline the object), and the best replaces the view's answer.
(A probability raster, `sink`, still holds the view's refined answer for such a phrase.)
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import shapely

from backend.engine.context import (
    ContextGrid,
    Referent,
    band_half_width,
    find_referents,
    plan_context,
    upsample,
)
from backend.engine.predict import ProbabilitySink, predict_window
from backend.engine.raster import RasterView
from backend.engine.refine import BAND, PhraseZones, Refinement, assign_regions
from backend.engine.tiling import Tile, plan_tiles
from backend.engine.vectorise import Piece, Region, merge_pieces, tile_pieces
from backend.errors import CancelledError
from backend.model.api import PhraseSegmenter

# The view is fine enough for every object below this shrink (area pixels per view pixel).
FINE_PASS_SHRINK = 2.0
# A view answer smaller than this many view pixels (6×6) cannot be trusted to outline its object, or to
# have found it at all: such a phrase is also asked at full resolution.
SMALL_IN_VIEW = 36
# The full-resolution pass reads tiles of input/FINE_ZOOM raster pixels, which the model enlarges to its
# input: a zoom above 1 shows a small object larger than the raster's own resolution does.
# Measured on `rs2sam2 bench region` (45 queries of region B, view protocol): zoom 2 over 1 lifts
# vehicles 13.0 → 17.7 % mIoU with the bundled model and 13.8 → 17.7 % fine-tuned, the rest unchanged.
FINE_ZOOM = 2.0
# How much a full-resolution candidate's score leans on the view: mass × (VIEW_FLOOR + support), where
# support is the view's highest probability around it (0–1). A floor above 0 lets a candidate the view
# did not see at all still win when nothing better is found.
VIEW_FLOOR = 0.25


class ViewSegmentation:
    """One view-mode run over a prepared `RasterView` (planned at once: a too-large area is refused
    before anything is read)."""

    def __init__(
        self,
        view: RasterView,
        model: PhraseSegmenter,
        phrases: list[str],
        threshold: float,
        keep: str,
        tile_size: int,
        overlap: int,
        min_area_pixels: float,
        refinement: Refinement = BAND,
    ):
        self.view, self.model, self.phrases = view, model, phrases
        self.threshold, self.keep, self.min_area_pixels = threshold, keep, min_area_pixels
        self.refinement = refinement
        self.grid: ContextGrid = plan_context(view.width, view.height, model.input_size)
        self.tile_size, self.overlap = tile_size, overlap
        self.tiles: list[Tile] = plan_tiles(view.width, view.height, tile_size, overlap)
        self.referents: list[Referent] = []
        self._valid = np.zeros((0, 0), bool)  # the view's valid pixels, once seen
        self.model_calls = 0
        self.model_seconds = 0.0
        self.fine_phrases: list[int] = []  # phrases also asked at full resolution (small in the view)
        self._fine_pieces: list[Piece] = []

    def predict(
        self,
        progress: Callable[[int, int], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        sink: ProbabilitySink | None = None,
    ) -> list[Piece]:
        """See the whole area, find the referents, refine them; the full-resolution pieces."""
        if progress:
            progress(0, 1)
        _check(cancel)
        seen = self._see_whole()
        self.referents = [
            referent
            for index, probability in enumerate(seen)
            for referent in find_referents(
                index,
                probability,
                self._valid,
                self.grid,
                self.threshold,
                self.keep,
                self.min_area_pixels,
                self.refinement.whole_answer,
            )
        ]
        if self.grid.is_native:  # the view was at full resolution: its answer is the final one
            if sink is not None:
                sink.write(0, 0, np.stack(seen))
            if progress:
                progress(1, 1)
            return []
        searched = self._fine_pass(seen, cancel, progress)
        zones = self._zones()
        todo = [
            t for t in self.tiles if sink is not None or any(z.touches(*_core(t)) for z in zones.values())
        ]
        before = 1 + searched  # the view and the tiles of the full-resolution search
        if progress:
            progress(before, before + len(todo))
        pieces: list[Piece] = []
        for done, tile in enumerate(todo, start=before + 1):
            _check(cancel)
            pieces += self._refine_tile(tile, seen, zones, sink)
            if progress:
                progress(done, before + len(todo))
        return pieces + self._fine_pieces

    # ---- coarse to fine: small objects

    def _too_small_in_view(self) -> list[int]:
        """Phrases whose view answer is missing or too small to outline (keep "best", coarse views)."""
        if self.keep != "best" or self.grid.shrink <= FINE_PASS_SHRINK:
            return []
        size = {i: 0 for i in range(len(self.phrases))}
        for referent in self.referents:
            size[referent.phrase_index] += referent.view_piece.pixels
        return [i for i, pixels in size.items() if pixels < SMALL_IN_VIEW]

    def _fine_pass(
        self,
        seen: list[np.ndarray],
        cancel: Callable[[], bool] | None,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Ask the small phrases of every tile at full resolution; the best candidate of each, judged
        with the view's support, replaces its view answer (which stands when nothing is found). Returns
        the tiles searched (progress counts them after the view's one step)."""
        self.fine_phrases = self._too_small_in_view()
        if not self.fine_phrases:
            return 0
        pieces: list[Piece] = []
        side = max(16, round(self.tile_size / FINE_ZOOM))
        tiles = (
            self.tiles
            if side == self.tile_size
            else plan_tiles(
                self.view.width, self.view.height, side, max(1, round(side * self.overlap / self.tile_size))
            )
        )
        for done, tile in enumerate(tiles, start=2):
            _check(cancel)
            if progress:
                progress(done - 1, 1 + len(tiles))
            cols, rows = _core(tile)
            image, valid = self.view.read(tile.cols.start, tile.rows.start, tile.cols.size, tile.rows.size)
            core = tile.core_slices
            if not valid[core].any():
                continue
            asked = [self.phrases[i] for i in self.fine_phrases]
            answers = self._predict(image, valid, asked, side)
            size = (self.view.width, self.view.height)
            for index, answer in zip(self.fine_phrases, answers):
                pieces += tile_pieces(index, answer[core], valid[core], self.threshold, cols, rows, *size)
        candidates = [r for r in merge_pieces(pieces) if r.pixels >= self.min_area_pixels]
        view_pixel = self.grid.scale_x * self.grid.scale_y
        for index in self.fine_phrases:
            mine = [r for r in candidates if r.phrase_index == index]
            if not mine:
                continue
            scores = [r.probability_sum * (VIEW_FLOOR + self._support(seen[index], r.geometry)) for r in mine]
            score = max(scores)
            best = mine[scores.index(score)]
            self.referents = [r for r in self.referents if r.phrase_index != index]
            view_geometry = shapely.transform(
                best.geometry, lambda xy: xy / np.array([self.grid.scale_x, self.grid.scale_y])
            )
            piece = Piece(index, view_geometry, best.probability_sum / view_pixel, 0, on_seam=False)
            self.referents.append(Referent(index, piece, best.geometry, fine=True))
            self._fine_pieces += [
                p for p in pieces if p.phrase_index == index and p.geometry.intersects(best.geometry)
            ]
        return len(tiles)

    def _support(self, probability: np.ndarray, geometry: shapely.Geometry) -> float:
        """The view's highest probability within two view pixels of an outline in area pixels."""
        minx, miny, maxx, maxy = geometry.bounds
        sx, sy = self.grid.scale_x, self.grid.scale_y
        x0, x1 = max(0, int(minx / sx) - 2), min(self.grid.width, int(np.ceil(maxx / sx)) + 2)
        y0, y1 = max(0, int(miny / sy) - 2), min(self.grid.height, int(np.ceil(maxy / sy)) + 2)
        window = probability[y0:y1, x0:x1]
        return float(window.max()) if window.size else 0.0

    def regions(self, merged: list[Region]) -> list[Region]:
        """The merged full-resolution regions → one region per referent."""
        return assign_regions(merged, self.referents, self.grid.scale_x * self.grid.scale_y)

    def _see_whole(self) -> list[np.ndarray]:
        """The model's answer for every phrase on the whole area, at the view's size (h', w')."""
        grid = self.grid
        if grid.is_native:
            image, valid = self.view.read(0, 0, grid.width, grid.height)
        else:
            image, valid = self.view.read_whole(grid.width, grid.height)
        self._valid = valid
        if not valid.any():
            return [np.zeros(valid.shape, np.float32) for _ in self.phrases]
        # An area that fits the input is the whole image: a model that resizes its input (the paper's)
        # sees it whole, as its reference does, rather than padded (backend/engine/predict.py).
        return self._predict(image, valid, self.phrases, grid.input_size, whole_image=grid.is_native)

    def _zones(self) -> dict[int, PhraseZones]:
        half_width = band_half_width(self.grid)
        by_phrase: dict[int, list[Referent]] = {}
        for referent in self.referents:
            if referent.fine:  # outlined at full resolution already
                continue
            by_phrase.setdefault(referent.phrase_index, []).append(referent)
        return {index: PhraseZones.around(refs, half_width) for index, refs in by_phrase.items()}

    def _refine_tile(
        self, tile: Tile, seen: list[np.ndarray], zones: dict[int, PhraseZones], sink: ProbabilitySink | None
    ) -> list[Piece]:
        cols, rows = _core(tile)
        image, valid = self.view.read(tile.cols.start, tile.rows.start, tile.cols.size, tile.rows.size)
        core = tile.core_slices
        valid_core = valid[core]
        masks = {i: zone.masks(cols, rows) for i, zone in zones.items() if zone.touches(cols, rows)}
        native_where = {i: self.refinement.native_where(zone, band) for i, (zone, band) in masks.items()}
        asked = [i for i, where in native_where.items() if where is not None and where.any()]
        native: dict[int, np.ndarray] = {}
        if asked and valid_core.any():
            answers = self._predict(image, valid, [self.phrases[i] for i in asked], self.tile_size)
            native = {i: answer[core] for i, answer in zip(asked, answers)}
        combined = []
        for index, probability in enumerate(seen):
            coarse = upsample(probability, self.grid, cols, rows)
            if index in native:
                zone = masks[index][0]
                coarse = self.refinement.combine(
                    native[index], coarse, native_where[index], zone, self.threshold
                )
            combined.append(coarse * valid_core)
        if sink is not None:
            sink.write(cols.start, rows.start, np.stack(combined))
        pieces = []
        for index, (zone, _band) in masks.items():
            constrained = np.where(zone, combined[index], 0.0)
            pieces += tile_pieces(
                index, constrained, valid_core, self.threshold, cols, rows, self.view.width, self.view.height
            )
        return pieces

    def _predict(
        self, image: np.ndarray, valid: np.ndarray, phrases: list[str], side: int, whole_image: bool = False
    ) -> list[np.ndarray]:
        started = time.perf_counter()
        answers = predict_window(self.model, image, valid, phrases, side, whole_image=whole_image)
        self.model_seconds += time.perf_counter() - started
        self.model_calls += 1
        return answers


def _core(tile: Tile):
    return tile.core_cols, tile.core_rows


def _check(cancel: Callable[[], bool] | None) -> None:
    if cancel is not None and cancel():
        raise CancelledError("the run was cancelled")
