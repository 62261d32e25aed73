"""The engine's entry point: a raster and phrases in, features in the raster's CRS out.

`SegmentRun` is a prepared run (raster opened, options resolved, tiles planned). In tiles mode its
tiles can be predicted all at once or a shard at a time (torchrun ranks); in view mode the whole area
is seen at once and the objects found are refined at full resolution (`view_mode`). Its pieces are
merged into features once; `segment()` does all of it for the common case. The CLI, the service and
Python callers share it.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from rasterio.crs import CRS

from backend.contract import option_problems, option_values, resolve_defaults
from backend.engine.context import plan_context
from backend.engine.errors import EngineInputError, PhraseError
from backend.engine.features import Feature, build_features, utc_now_iso
from backend.engine.limits import RunLimits
from backend.engine.options import (
    DEFAULT_MIN_AREA_PIXELS,
    DEFAULT_OVERLAP_FRACTION,
    DEFAULT_SIMPLIFY_PIXELS,
    EngineOptions,
)
from backend.engine.predict import ProbabilitySink, predict_window
from backend.engine.raster import RasterInput, RasterView
from backend.engine.refine import BAND, Refinement
from backend.engine.tiling import Tile, plan_tiles
from backend.engine.vectorise import Piece, merge_pieces, tile_pieces
from backend.engine.view_mode import ViewSegmentation
from backend.errors import CancelledError
from backend.model.api import PhraseSegmenter, default_threshold_of

ProgressCallback = Callable[[int, int], None]  # (tiles done, tiles total)
CancelCheck = Callable[[], bool]  # True → stop before the next tile
# Control characters and lone surrogates: nothing a person types; they would reach layer names and
# attribute tables (a lone surrogate cannot even be written as UTF-8).
_CONTROL_CATEGORIES = ("Cc", "Cs")


@dataclass
class SegmentResult:
    """Features of one run plus what a caller needs to place and describe them."""

    features: list[Feature]
    crs: CRS | None
    phrases: list[str]
    source: str
    model: str
    tiles: int
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)  # features per phrase

    def to_geojson(self) -> dict:
        """The FeatureCollection of docs/service-api.md (coordinates in the raster's CRS)."""
        return {
            "type": "FeatureCollection",
            "crs": {"type": "name", "properties": {"name": self.crs.to_string()}} if self.crs else None,
            "crs_wkt": self.crs.to_wkt() if self.crs else None,
            "features": [
                {
                    "type": "Feature",
                    "geometry": feature.geometry.__geo_interface__,
                    "properties": feature.properties(),
                }
                for feature in self.features
            ],
            "stats": {"tiles": self.tiles, "seconds": round(self.seconds, 3), "model": self.model},
        }


def clean_phrases(phrases: Sequence[str], limits: RunLimits | None = None) -> list[str]:
    """Phrases with their whitespace tidied; an empty list, a blank phrase, a phrase with control
    characters, or more or longer phrases than `limits` allow are the caller's mistake."""
    limits = limits or RunLimits()
    if isinstance(phrases, str):
        phrases = [phrases]
    if not phrases:
        raise PhraseError("give at least one phrase", "empty_phrase")
    limits.check_phrase_count(len(phrases))
    cleaned = []
    for number, phrase in enumerate(phrases, start=1):
        if not isinstance(phrase, str) or not phrase.strip():
            raise PhraseError(f"phrase {number} is empty", "empty_phrase")
        limits.check_phrase_length(number, phrase)
        tidy = " ".join(phrase.split())
        if any(unicodedata.category(char) in _CONTROL_CATEGORIES for char in tidy):
            raise PhraseError(f"phrase {number} contains control characters")
        cleaned.append(tidy)
    return cleaned


def check_options(options: EngineOptions, **resolved) -> None:
    """The contract's bounds for every option (with `resolved` defaults filled in), as one error."""
    values = {**option_values(options), **resolved}
    problems = option_problems(values)
    if problems:
        code, clause = problems[0]
        raise EngineInputError(clause, code)


class KeptPieces:
    """Pieces that lie inside one tile core: already whole objects, so they can be judged at once.

    Specks below the minimum area are dropped, and with keep="best" only the best piece per phrase
    is kept; the memory of a run then grows with the objects it will output, not with the raster.
    """

    def __init__(self, keep: str, min_pixels: float):
        self.keep = keep
        self.min_pixels = min_pixels
        self._all: list[Piece] = []
        self._best: dict[int, Piece] = {}

    def add(self, piece: Piece) -> None:
        if piece.pixels < self.min_pixels:
            return
        if self.keep == "all":
            self._all.append(piece)
            return
        best = self._best.get(piece.phrase_index)
        if best is None or piece.probability_sum > best.probability_sum:
            self._best[piece.phrase_index] = piece

    def pieces(self) -> list[Piece]:
        return self._all if self.keep == "all" else list(self._best.values())


class SegmentRun:
    """One prepared run. Use as a context manager (it holds the raster open).

    `context` (resolved from the options: view for keep "best", tiles for keep "all" unless given)
    decides what the model sees: in tiles mode every tile of `tiles` on its own (they can be sharded
    across torchrun ranks); in view mode the whole area at once, then the objects found refined at
    full resolution (`view_mode`, one process). `refinement` is for benchmarks comparing ways of
    refining (backend.engine.refine.REFINEMENTS).
    """

    def __init__(
        self,
        source: RasterInput,
        phrases: Sequence[str],
        model: PhraseSegmenter,
        options: EngineOptions,
        name: str | None = None,
        refinement: Refinement = BAND,
    ):
        self.phrases = clean_phrases(phrases, options.limits)
        self.model = model
        self.options = options
        check_options(options)  # the contract's bounds first: a tile size of 10⁹.5 is not a number of pixels
        self.tile_size = int(options.tile_size or model.input_size)
        overlap = options.overlap
        self.overlap = int(round(self.tile_size * DEFAULT_OVERLAP_FRACTION) if overlap is None else overlap)
        check_options(options, tile_size=self.tile_size, overlap=self.overlap)
        options.limits.check_tile_size(self.tile_size, model.input_size)
        self.context: str = resolve_defaults(option_values(options))["context"]
        # The person's threshold, else the model's own (the paper family's reproduces its reference).
        self.threshold = default_threshold_of(model) if options.threshold is None else options.threshold
        self.view = RasterView(source, options, name, check_area=self._check_area)
        try:
            self._plan(refinement)
        except BaseException:
            self.view.close()
            raise

    def _check_area(self, width: int, height: int) -> None:
        """View mode sees the whole area at once: one too large for that is refused from the header."""
        if self.context == "view":
            plan_context(width, height, self.model.input_size)

    def _plan(self, refinement: Refinement) -> None:
        self.tiles: list[Tile] = plan_tiles(self.view.width, self.view.height, self.tile_size, self.overlap)
        pixel = self.view.pixel_size
        options = self.options
        self.simplify = DEFAULT_SIMPLIFY_PIXELS * pixel if options.simplify is None else options.simplify
        self.min_area = (
            DEFAULT_MIN_AREA_PIXELS * pixel * pixel if options.min_area is None else options.min_area
        )
        self.view_mode: ViewSegmentation | None = None
        if self.context == "view":  # planned now: an area too large for one view is refused at once
            self.view_mode = ViewSegmentation(
                self.view,
                self.model,
                self.phrases,
                self.threshold,
                options.keep,
                self.tile_size,
                self.overlap,
                self.min_area / pixel**2,
                refinement,
            )
        self._model_seconds = 0.0

    @property
    def crs(self) -> CRS | None:
        return self.view.crs

    @property
    def model_seconds(self) -> float:
        """Time inside model.predict (benchmarks compare it with the total)."""
        return self.view_mode.model_seconds if self.view_mode is not None else self._model_seconds

    def predict(
        self,
        tiles: Iterable[Tile] | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
        sink: ProbabilitySink | None = None,
    ) -> list[Piece]:
        """Run the model over `tiles` (default all) and return the vectorised pieces of their cores.

        In view mode the whole area is one question: `tiles` must be None.
        """
        if self.view_mode is not None:
            if tiles is not None:
                raise ValueError("a view-mode run covers the whole area at once; it has no tiles to choose")
            return self.view_mode.predict(progress, cancel, sink)
        todo = list(self.tiles if tiles is None else tiles)
        seam: list[Piece] = []
        kept = KeptPieces(self.options.keep, self.min_area / (self.view.pixel_size**2))
        if progress:
            progress(0, len(todo))
        for done, tile in enumerate(todo, start=1):
            if cancel is not None and cancel():
                raise CancelledError("the run was cancelled")
            for piece in self._predict_one(tile, sink):
                if piece.on_seam:
                    seam.append(piece)  # may continue in another tile: kept whatever its size
                else:
                    kept.add(piece)
            if progress:
                progress(done, len(todo))
        return seam + kept.pieces()

    def _predict_one(self, tile: Tile, sink: ProbabilitySink | None) -> list[Piece]:
        image, valid = self.view.read(tile.cols.start, tile.rows.start, tile.cols.size, tile.rows.size)
        core = tile.core_slices
        core_shape = (tile.core_rows.size, tile.core_cols.size)
        if not valid[core].any():  # all nodata: nothing can be found here, skip the model
            if sink is not None:
                sink.write(
                    tile.core_cols.start,
                    tile.core_rows.start,
                    np.zeros((len(self.phrases), *core_shape), np.float32),
                )
            return []
        started = time.perf_counter()
        # One tile covering the whole area is the whole image: a model that resizes its input (the
        # paper's) sees it whole, as its reference does, rather than padded.
        whole = len(self.tiles) == 1 and image.shape[:2] == (self.view.height, self.view.width)
        probabilities = [
            p[core]
            for p in predict_window(self.model, image, valid, self.phrases, self.tile_size, whole_image=whole)
        ]
        self._model_seconds += time.perf_counter() - started
        pieces: list[Piece] = []
        for phrase_index, probability in enumerate(probabilities):
            pieces += tile_pieces(
                phrase_index,
                probability,
                valid[core],
                self.threshold,
                tile.core_cols,
                tile.core_rows,
                self.view.width,
                self.view.height,
            )
        if sink is not None:
            sink.write(tile.core_cols.start, tile.core_rows.start, np.stack(probabilities))
        return pieces

    def finish(self, pieces: list[Piece], seconds: float, created: str | None = None) -> SegmentResult:
        """Merge pieces across tiles (in view mode: one region per object found) into features."""
        regions = merge_pieces(pieces)
        if self.view_mode is not None:
            regions = self.view_mode.regions(regions)
        features = build_features(
            regions,
            self.phrases,
            self.view.transform,
            self.view.crs,
            self.simplify,
            self.min_area,
            self.options.keep,
            self.view.name,
            self.model.model_id,
            created or utc_now_iso(),
        )
        counts = {phrase: sum(f.phrase == phrase for f in features) for phrase in self.phrases}
        return SegmentResult(
            features,
            self.view.crs,
            self.phrases,
            self.view.name,
            self.model.model_id,
            self.view_mode.model_calls if self.view_mode is not None else len(self.tiles),
            seconds,
            counts,
        )

    def close(self) -> None:
        self.view.close()

    def __enter__(self) -> SegmentRun:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def segment(
    source: RasterInput,
    phrases: Sequence[str],
    model: PhraseSegmenter,
    options: EngineOptions | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    sink: ProbabilitySink | None = None,
    name: str | None = None,
    refinement: Refinement = BAND,
) -> SegmentResult:
    """Segment `source` by `phrases` with `model`, as features in the raster's CRS (see SegmentRun).

    `name` is recorded as the features' `source` (default: the raster's file name).
    """
    started = time.perf_counter()
    with SegmentRun(source, phrases, model, options or EngineOptions(), name, refinement) as run:
        pieces = run.predict(progress=progress, cancel=cancel, sink=sink)
        return run.finish(pieces, time.perf_counter() - started)
