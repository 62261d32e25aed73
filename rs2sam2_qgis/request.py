"""What one segmentation asks for: the parameter bundle shared by the dock and the Processing algorithm."""

from __future__ import annotations

from dataclasses import dataclass

KEEP_CHOICES = ("best", "all")


@dataclass(frozen=True)
class SegmentOptions:
    """The engine's knobs; None means "the engine's default" (sent as JSON null)."""

    threshold: float = 0.5
    simplify: float | None = None
    min_area: float | None = None
    keep: str = "best"
    tile_size: int | None = None
    overlap: int | None = None
    gsd: float | None = None

    def __post_init__(self):
        if self.keep not in KEEP_CHOICES:
            raise ValueError(f"keep must be one of {KEEP_CHOICES}")


@dataclass(frozen=True)
class AreaBox:
    """A rectangle in the raster's CRS (xmin, ymin, xmax, ymax)."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float

    def as_list(self) -> list[float]:
        return [self.xmin, self.ymin, self.xmax, self.ymax]


def build_params(
    phrases: list[str], options: SegmentOptions, bbox: AreaBox | None = None, bbox_crs: str | None = None
) -> dict:
    """The `params` JSON of docs/service-api.md."""
    params: dict = {
        "phrases": phrases,
        "threshold": options.threshold,
        "simplify": options.simplify,
        "min_area": options.min_area,
        "keep": options.keep,
        "tile_size": options.tile_size,
        "overlap": options.overlap,
        "gsd": options.gsd,
    }
    if bbox is not None:
        params["bbox"] = bbox.as_list()
        if bbox_crs:
            params["bbox_crs"] = bbox_crs
    return params


def split_phrases(text: str) -> list[str]:
    """One phrase per line; blank lines and surrounding spaces dropped, order and duplicates kept out."""
    phrases: list[str] = []
    for line in text.splitlines():
        phrase = line.strip()
        if phrase and phrase not in phrases:
            phrases.append(phrase)
    return phrases
