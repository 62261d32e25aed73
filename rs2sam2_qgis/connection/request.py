"""What one segmentation asks for: the parameter bundle shared by the dock and the Processing algorithm.

The options themselves (names, defaults, bounds) come from `contract.OPTIONS`; so does the `params`
JSON they travel in.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import contract

# The options a person sets in QGIS (the panel and Processing); None means "the engine's default".
SegmentOptions = contract.options_class(
    "SegmentOptions", contract.PROCESSING, check_choices=True, module=__name__
)


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
    phrases: list[str], options, bbox: AreaBox | None = None, bbox_crs: str | None = None
) -> dict:
    """The `params` JSON of docs/service-api.md."""
    return contract.segment_params_json(
        phrases, options, bbox.as_list() if bbox is not None else None, bbox_crs
    )


def split_phrases(text: str) -> list[str]:
    """One phrase per line; blank lines and surrounding spaces dropped, order and duplicates kept out."""
    phrases: list[str] = []
    for line in text.splitlines():
        phrase = line.strip()
        if phrase and phrase not in phrases:
            phrases.append(phrase)
    return phrases
