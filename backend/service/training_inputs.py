"""The raster and labels of a training or evaluation job, checked and prepared before it queues.

A raster comes as a GeoTIFF upload or a server-side path under the allowed roots (the same drivers
and confinement as /segment). Labels come as a GeoPackage or GeoJSON upload, or a server-side path.
They are read, reprojected onto the raster's CRS, and written again as the job's own GeoPackage with
one `phrase` column — features off the raster, with an empty geometry, or with a missing or blank
phrase are dropped and counted (`LabelReport`); nothing left is refused. What training reads is
therefore exactly what was checked here.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from fastapi import UploadFile

from backend.contract import LABEL_SUFFIXES, PHRASE_SEPARATOR, LabelReport
from backend.engine.confine import FILE_DRIVERS
from backend.engine.features import reproject
from backend.engine.opening import check_crs, check_georeference, check_structure, open_dataset
from backend.service.parsing import safe_name
from backend.service.security import ServiceError, resolve_allowed_path

UPLOAD_DRIVERS = ("GTiff",)
PHRASE_COLUMN = "phrase"  # the column of the job's own labels file


@dataclass(frozen=True)
class RasterFacts:
    path: Path
    crs_wkt: str
    bounds: tuple[float, float, float, float]


@dataclass(frozen=True)
class PreparedLabels:
    path: Path  # the job's GeoPackage, in the raster's CRS, column `phrase`
    report: LabelReport


async def save_upload(upload: UploadFile, folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path:
    """The upload as `folder/stem<suffix>` (the suffix its name has, if allowed, else the first)."""
    suffix = Path(safe_name(upload.filename)).suffix.lower()
    target = folder / f"{stem}{suffix if suffix in suffixes else suffixes[0]}"
    with open(target, "wb") as handle:
        shutil.copyfileobj(upload.file, handle, 1 << 20)
    if target.stat().st_size == 0:
        raise ServiceError(400, "empty_upload", f"the uploaded {stem.replace('_', ' ')} file is empty")
    return target


def chosen_source(upload: UploadFile | None, path: str | None, what: str, field: str) -> None:
    """Exactly one of an upload and a path."""
    if (upload is None) == (not path):
        raise ServiceError(
            400,
            "bad_request",
            f"send either a {what} file ({field}) or a server-side path, not both or neither",
        )


def server_path(path: str, roots: tuple[Path, ...]) -> Path:
    return resolve_allowed_path(path, roots)


def check_raster(path: Path, uploaded: bool, roots: tuple[Path, ...], name: str) -> RasterFacts:
    """Readable, georeferenced, a CRS the engine measures in; nothing read outside the roots."""
    drivers = UPLOAD_DRIVERS if uploaded else FILE_DRIVERS
    confine = (path.parent.resolve(),) if uploaded else tuple(root.resolve() for root in roots)
    dataset, _ = open_dataset(path, drivers, confine, name)
    with dataset:
        check_structure(dataset, name)
        if dataset.crs is None:
            raise ServiceError(400, "no_crs", f"{name} has no CRS; training needs a georeferenced raster")
        check_crs(dataset.crs, name)
        check_georeference(dataset.transform, name)
        return RasterFacts(path, dataset.crs.to_wkt(), tuple(dataset.bounds))


def prepare_labels(
    source: Path, raster: RasterFacts, phrase_field: str, target: Path, name: str
) -> PreparedLabels:
    """Read `source`, keep the usable features (in the raster's CRS), write them to `target`."""
    import pyogrio
    from pyogrio import raw

    try:
        meta, _, wkb, fields = raw.read(str(source))
    except Exception as exc:  # noqa: BLE001 - pyogrio raises several DataSource/DataLayer errors
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise ServiceError(
            400, "unreadable_labels", f"{name}: not a readable GeoPackage or GeoJSON ({reason})"
        ) from None
    columns = list(meta["fields"])
    if phrase_field not in columns:
        raise ServiceError(
            400,
            "no_phrase_field",
            f"{name}: there is no phrase field {phrase_field!r} (the fields: {', '.join(columns) or 'none'})",
        )
    if not meta.get("crs"):
        raise ServiceError(
            400, "no_labels_crs", f"{name}: no CRS, so the features cannot be placed on the raster"
        )
    geometries = _in_raster_crs(shapely.from_wkb(wkb), meta["crs"], raster.crs_wkt, name)
    kept, phrases, counts = [], [], {"outside": 0, "empty": 0, "no_phrase": 0}
    area = shapely.box(*raster.bounds)
    for geometry, text in zip(geometries, fields[columns.index(phrase_field)]):
        if geometry is None or geometry.is_empty or shapely.area(geometry) <= 0:
            counts["empty"] += 1
        elif not _phrases(text):
            counts["no_phrase"] += 1
        elif not area.contains(geometry.centroid):
            counts["outside"] += 1
        else:
            kept.append(shapely.make_valid(geometry))
            phrases.append(PHRASE_SEPARATOR.join(_phrases(text)))
    reprojected = None if _same_crs(meta["crs"], raster.crs_wkt) else str(meta["crs"])
    report = LabelReport(len(kept), reprojected_from=reprojected, **counts)
    if kept:
        pyogrio.raw.write(
            str(target),
            shapely.to_wkb(np.array(kept, dtype=object)),
            geometry_type="Unknown",
            field_data=[np.array(phrases, dtype=object)],
            fields=[PHRASE_COLUMN],
            crs=raster.crs_wkt,
            driver="GPKG",
        )
    return PreparedLabels(target, report)


def _phrases(text) -> list[str]:
    if text is None:
        return []
    return [part.strip() for part in str(text).split(PHRASE_SEPARATOR) if part.strip()]


def _same_crs(a: str, b: str) -> bool:
    from pyproj import CRS

    return CRS.from_user_input(a) == CRS.from_user_input(b)


def _in_raster_crs(geometries, source: str, target: str, name: str):
    from pyproj.exceptions import CRSError

    try:
        return reproject(geometries, source, target)
    except CRSError:
        raise ServiceError(400, "no_labels_crs", f"{name}: a CRS that PROJ does not know") from None


def label_problem(report: LabelReport, minimum: int, name: str) -> ServiceError | None:
    """None when enough labels are left; else the 400 that says what became of them."""
    dropped = []
    for count, why in (
        (report.outside, "off the raster"),
        (report.empty, "with no area"),
        (report.no_phrase, "without a phrase"),
    ):
        if count:
            dropped.append(f"{count} {why}")
    note = f" (dropped: {', '.join(dropped)})" if dropped else ""
    if report.used == 0:
        return ServiceError(400, "no_labels", f"no usable labelled feature is left in {name}{note}")
    if report.used < minimum:
        return ServiceError(
            400,
            "too_few_labels",
            f"only {report.used} usable labelled features are left in {name}{note}; the fine-tuning recipe "
            f"needs at least {minimum} (training/README.md: label 30–45 polygons or more, 5+ per kind)",
        )
    return None


def is_label_file(name: str) -> bool:
    return Path(name).suffix.lower() in LABEL_SUFFIXES
