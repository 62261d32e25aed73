"""How much one run may ask of the model, checked in one place for every entry point.

Every run passes through `SegmentRun`, which checks the bounds of its `EngineOptions.limits` before
a pixel is read or a tile is planned: the command line and Python callers get `RunLimits()` (what a
person's own machine may be asked: no cap on phrases or pixels, since batch runs stream mosaics of any
size tile by tile), the service the bounds of `rs2sam2 serve`'s settings (`SERVICE_LIMITS` unless
changed), so one request cannot occupy a shared model for hours. Each bound has its own error code
(the service's 400 codes, docs/service-api.md) and one sentence saying what to change.

Bounds only a shared server has — jobs queued, a wall-clock limit per job, the upload size — live in
the service (`backend/service/config.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from backend.engine.errors import EngineInputError

TOO_MANY_PHRASES = "too_many_phrases"
PHRASE_TOO_LONG = "phrase_too_long"
BAD_TILING = "bad_tiling"
BAD_GSD = "bad_gsd"
TOO_MANY_PIXELS = "too_many_pixels"
AREA_TOO_SMALL = "area_too_small"

# The smallest area a run accepts, per side in pixels of the run's grid: below it there is no object
# to outline (the default minimum polygon is 2 × 2 pixels) and the model would see a speck padded
# to its whole input. A 1-pixel raster is a mistake, not a question.
MIN_AREA_SIDE = 4


@dataclass(frozen=True)
class RunLimits:
    """The bounds of one run. None: no bound."""

    max_phrases: int | None = None  # phrases per run: each one is a model call per tile
    max_phrase_chars: int = 500  # characters per phrase (the text encoders read far fewer tokens)
    # The tile side must lie within [input / tile_factor, input × tile_factor]: a larger tile is shrunk
    # that much before the model sees it (and its probability maps are held whole in memory: a 10⁹-pixel
    # tile was a MemoryError), a smaller one is blown up and multiplies the model calls per pixel.
    tile_factor: float = 16.0
    max_pixels: int | None = None  # width × height of the area at the run's resolution (gsd)
    gsd_range: tuple[float, float] = (0.001, 100_000.0)  # m/pixel a run may resample to

    def check_phrase_count(self, count: int) -> None:
        if self.max_phrases is not None and count > self.max_phrases:
            raise EngineInputError(
                f"{count} phrases were given and at most {self.max_phrases} are allowed in one run; "
                "send them in several runs",
                TOO_MANY_PHRASES,
            )

    def check_phrase_length(self, number: int, phrase: str) -> None:
        if len(phrase) > self.max_phrase_chars:
            raise EngineInputError(
                f"phrase {number} is longer than {self.max_phrase_chars} characters", PHRASE_TOO_LONG
            )

    def tile_range(self, input_size: int) -> tuple[int, int]:
        """The smallest and largest tile side allowed for a model with this input size."""
        return max(1, math.ceil(input_size / self.tile_factor)), int(input_size * self.tile_factor)

    def check_tile_size(self, tile_size: int, input_size: int) -> None:
        low, high = self.tile_range(input_size)
        if not low <= tile_size <= high:
            raise EngineInputError(
                f"the tile size must be between {low} and {high} pixels for this model (its input is "
                f"{input_size} pixels; tiles may be at most {self.tile_factor:g}× smaller or larger)",
                BAD_TILING,
            )

    def check_gsd(self, gsd: float | None) -> None:
        low, high = self.gsd_range
        if gsd is not None and not low <= gsd <= high:
            raise EngineInputError(f"the gsd must be between {low:g} and {high:g} m/pixel", BAD_GSD)

    def check_area(self, width: int, height: int) -> None:
        """The area about to be read, in pixels of the run's grid: checked before any pixel is read."""
        if width < MIN_AREA_SIDE or height < MIN_AREA_SIDE:
            raise EngineInputError(
                f"the area is {width}×{height} pixels and must be at least {MIN_AREA_SIDE}×{MIN_AREA_SIDE}: "
                "choose a larger area or a finer gsd",
                AREA_TOO_SMALL,
            )
        if self.max_pixels is not None and width * height > self.max_pixels:
            raise EngineInputError(
                f"the area is {width}×{height} pixels ({_megapixels(width * height)} megapixels) and at most "
                f"{_megapixels(self.max_pixels)} megapixels are allowed in one run: choose a smaller area "
                "or a coarser gsd",
                TOO_MANY_PIXELS,
            )

    def check_settings(self) -> list[str]:
        """What is wrong with the limits themselves (a server's settings), as clauses."""
        problems = []
        if self.max_phrases is not None and self.max_phrases < 1:
            problems.append("the phrase limit must be at least 1")
        if self.max_phrase_chars < 1:
            problems.append("the phrase length limit must be at least 1")
        if not (math.isfinite(self.tile_factor) and self.tile_factor >= 1):
            problems.append("the tile factor must be at least 1")
        if self.max_pixels is not None and self.max_pixels < MIN_AREA_SIDE**2:
            problems.append(f"the pixel limit must be at least {MIN_AREA_SIDE**2}")
        low, high = self.gsd_range
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
            problems.append("the gsd range must be two positive numbers MIN,MAX with MIN ≤ MAX")
        return problems


def _megapixels(pixels: int) -> str:
    value = pixels / 1e6
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


# What `rs2sam2 serve` allows unless its settings say otherwise (docs/service-api.md, "Limits").
SERVICE_LIMITS = RunLimits(max_phrases=32, tile_factor=4.0, max_pixels=100_000_000)
