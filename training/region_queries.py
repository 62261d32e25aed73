"""Scoring a model on a labelled region as a person uses it: every label is one query of the real
`rs2sam2 segment` over the 512-pixel block it lies in, and its IoU is that of the kept polygons against
the labelled one (0 when nothing is found). The protocol of `rs2sam2 bench region` (bench/region.py)
and of the service's evaluation jobs (`rs2sam2 evaluate --region`, training/cli_evaluate.py).

Protocols: "view" (the panel's: `--keep best`, the whole block seen at once, then refined) and "tiles"
(`--context tiles`: full resolution). Scores: the papers' metrics (training/metrics.py) overall, by
kind (the phrase's head noun, training/data/kinds.py) and by phrase.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from backend.errors import UserError

QUERY_BLOCK_PIXELS = 512  # one block is one query window
PROTOCOL_FLAGS = {"view": [], "tiles": ["--context", "tiles"]}
PHRASE_SEPARATOR = "|"


class QueryLabel(Protocol):
    """One labelled object: its phrase, polygon in the raster's CRS, kind and query window (bounds)."""

    phrase: str
    geometry: Any
    kind: str
    block: tuple[float, float, float, float]


@dataclass(frozen=True)
class Label:
    phrase: str
    geometry: Any  # shapely geometry in the raster's CRS
    kind: str
    block: tuple[float, float, float, float]  # minx, miny, maxx, maxy


@dataclass(frozen=True)
class QueryScore:
    kind: str
    phrase: str
    intersection: float  # in pixels of the raster
    union: float


def read_labels(
    raster: Path, vector: Path, phrase_field: str, block_pixels: int = QUERY_BLOCK_PIXELS
) -> list:
    """The labels of `vector` (reprojected onto the raster), one per phrase of a feature, each in the
    block of `block_pixels` raster pixels its centroid lies in (cut to the raster)."""
    import pyogrio
    import rasterio
    import shapely

    from backend.engine.features import reproject
    from training.data.kinds import phrase_kind

    with rasterio.open(raster) as dataset:
        transform, width, height, crs = dataset.transform, dataset.width, dataset.height, dataset.crs
    meta, _, wkb, fields = pyogrio.raw.read(str(vector))
    names = list(meta["fields"])
    if phrase_field not in names:
        raise UserError(f"{vector.name} has no field {phrase_field!r} (its fields: {', '.join(names)})")
    geometries = shapely.from_wkb(wkb)
    if meta.get("crs") and crs is not None:
        geometries = reproject(geometries, meta["crs"], crs)
    labels = []
    for geometry, text in zip(geometries, fields[names.index(phrase_field)]):
        if geometry is None or geometry.is_empty or text is None:
            continue
        col, row = ~transform * (geometry.centroid.x, geometry.centroid.y)
        if not (0 <= col < width and 0 <= row < height):
            continue
        c0, r0 = int(col // block_pixels) * block_pixels, int(row // block_pixels) * block_pixels
        c1, r1 = min(c0 + block_pixels, width), min(r0 + block_pixels, height)
        (x0, y0), (x1, y1) = transform * (c0, r1), transform * (c1, r0)
        block = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        for phrase in (p.strip() for p in str(text).split(PHRASE_SEPARATOR)):
            if phrase:
                labels.append(Label(phrase, shapely.make_valid(geometry), phrase_kind(phrase), block))
    return labels


def query_region(
    raster: Path,
    labels: Sequence[QueryLabel],
    model_flags: list[str],
    workdir: Path,
    protocol: str = "view",
    pixel_area: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
) -> list[QueryScore]:
    """One `rs2sam2 segment` call per block with every phrase labelled in it; a QueryScore per label.
    `model_flags`: e.g. ["--model", NAME] or ["--checkpoint", FILE, "--device", "cpu"]; `pixel_area`:
    map units² of one raster pixel (the scores' unit)."""
    blocks: dict[tuple, list] = {}
    for label in labels:
        blocks.setdefault(label.block, []).append(label)
    scores = []
    for k, (bounds, in_block) in enumerate(blocks.items()):
        found = _segment_block(
            raster, bounds, [label.phrase for label in in_block], model_flags, workdir, k, protocol
        )
        scores += [_score(label, bounds, found, pixel_area) for label in in_block]
        if progress is not None:
            progress(k + 1, len(blocks))
    return scores


def _segment_block(
    raster: Path,
    bounds: tuple,
    phrases: list[str],
    model_flags: list[str],
    workdir: Path,
    k: int,
    protocol: str,
) -> dict:
    """{phrase: the union of the polygons kept for it} from the real command line."""
    import pyogrio
    import shapely

    from backend.cli import main as rs2sam2

    out = Path(workdir) / f"query-{k}.gpkg"
    out.unlink(missing_ok=True)
    code = rs2sam2(
        ["segment", str(raster), *dict.fromkeys(phrases), "-o", str(out)]
        + ["--bbox", ",".join(f"{v:.3f}" for v in bounds), "--keep", "best", "--quiet"]
        + [*model_flags, *PROTOCOL_FLAGS[protocol]]
    )
    if code != 0:
        raise RuntimeError(f"rs2sam2 segment failed with exit code {code}")
    found: dict[str, Any] = {}
    if out.exists():
        meta, _, wkb, fields = pyogrio.raw.read(str(out))
        for phrase, geometry in zip(fields[list(meta["fields"]).index("phrase")], shapely.from_wkb(wkb)):
            found[phrase] = shapely.union(found[phrase], geometry) if phrase in found else geometry
    return found


def _score(label: QueryLabel, bounds: tuple, found: dict, pixel_area: float) -> QueryScore:
    import shapely

    truth = shapely.intersection(label.geometry, shapely.box(*bounds))
    guess = found.get(label.phrase)
    inter = 0.0 if guess is None else shapely.area(shapely.intersection(guess, truth))
    union = shapely.area(truth) if guess is None else shapely.area(shapely.union(guess, truth))
    return QueryScore(label.kind, label.phrase, inter / pixel_area, union / pixel_area)


def summarise(scores: Sequence[QueryScore]) -> dict:
    """The papers' metrics of some queries (training/metrics.py's summary)."""
    from training.metrics import SegmentationMetrics

    return SegmentationMetrics(
        [round(s.intersection) for s in scores], [round(s.union) for s in scores]
    ).summary()


def region_scores(scores: Sequence[QueryScore]) -> dict[str, Any]:
    """{"overall": summary, "by_kind": {kind: summary}, "by_phrase": {phrase: summary}}."""
    if not scores:
        raise UserError("no labelled feature lies on the raster: nothing to evaluate")
    by_kind: dict[str, list] = {}
    by_phrase: dict[str, list] = {}
    for score in scores:
        by_kind.setdefault(score.kind, []).append(score)
        by_phrase.setdefault(score.phrase, []).append(score)
    return {
        "overall": summarise(scores),
        "by_kind": {kind: summarise(group) for kind, group in sorted(by_kind.items())},
        "by_phrase": {phrase: summarise(group) for phrase, group in sorted(by_phrase.items())},
    }
