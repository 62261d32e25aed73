"""Writing results: GeoPackage / GeoJSON / Shapefile through pyogrio, and a probability GeoTIFF.

Everything is written to a temporary file beside the target and moved into place with os.replace
only when complete, so a failed run — a full disk, a file-size limit, a kill — leaves the target as it
was (absent or the previous file) and a reader never sees half a file. A failed write is one sentence
(`OutputWriteError`), never a traceback.
Existing outputs are never replaced unless `overwrite` is set; adding a new layer to an existing
GeoPackage works on a copy of it, so its other layers stay intact whatever happens.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyogrio
import rasterio
import shapely
from pyogrio import raw as pyogrio_raw
from rasterio._err import CPLE_BaseError
from rasterio.errors import RasterioError
from rasterio.windows import Window

from backend.engine.errors import EngineInputError, OutputExistsError, OutputWriteError
from backend.engine.features import FIELDS, Feature
from backend.engine.opening import check_structure
from backend.engine.segment import ProbabilitySink, SegmentResult

DRIVERS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON", ".shp": "ESRI Shapefile"}
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
LOW_SPACE_BYTES = 1 << 20  # below this much free space a failed write is put down to a full disk


def _failure_reason(exc: BaseException, folder: Path) -> str:
    """Why a write failed, in words: GDAL's own message after a full disk is often about its SQL."""
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return os.strerror(exc.errno).lower()
    try:
        if shutil.disk_usage(folder).free < LOW_SPACE_BYTES:
            return "no space left on the disk"
    except OSError:
        pass
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY:
            return f"the disk is full or a file reached this process's size limit of {limit:,} bytes"
    except (ImportError, OSError, ValueError):  # no such limit on this system
        pass
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return first[:200]


@contextmanager
def writing(target: Path) -> Iterator[None]:
    """Any failure to write `target` (or its staged copy) → OutputWriteError, one sentence."""
    try:
        yield
    except (OSError, RuntimeError, RasterioError, CPLE_BaseError) as exc:
        raise OutputWriteError(
            f"could not write {target.name}: {_failure_reason(exc, target.parent)}; nothing was written"
        ) from None


@dataclass(frozen=True)
class VectorTarget:
    """Where features go: a file, its driver and (GeoPackage only) a layer name."""

    path: Path
    driver: str
    layer: str | None

    @property
    def is_geopackage(self) -> bool:
        return self.driver == "GPKG"


def layer_name(text: str) -> str:
    """A safe layer name from free text (phrase or raster stem)."""
    name = re.sub(r"[^0-9A-Za-z_]+", "_", text).strip("_").lower()[:60]
    return name or "layer"


def resolve_target(path: str | os.PathLike, layer: str | None = None) -> VectorTarget:
    target = Path(path)
    driver = DRIVERS.get(target.suffix.lower())
    if driver is None:
        raise EngineInputError(
            f"cannot tell the output format of {target.name}: use .gpkg, .geojson or .shp", "bad_output"
        )
    if not target.parent.is_dir():
        raise EngineInputError(f"the output folder {target.parent} does not exist", "bad_output")
    if driver != "GPKG" and layer is not None:
        raise EngineInputError("layer names only apply to GeoPackage outputs", "bad_output")
    return VectorTarget(target, driver, layer)


def _existing_files(target: VectorTarget) -> list[Path]:
    if target.driver == "ESRI Shapefile":
        return [p for p in (target.path.with_suffix(s) for s in SHAPEFILE_PARTS) if p.exists()]
    return [target.path] if target.path.exists() else []


def check_writable(target: VectorTarget, layers: list[str], overwrite: bool) -> None:
    """Refuse, before any work is done, to replace an existing file or layer without `overwrite`."""
    if overwrite or not _existing_files(target):
        return
    if target.is_geopackage:
        try:
            existing = {str(name) for name, _ in pyogrio.list_layers(target.path)}
        except Exception:
            raise OutputExistsError(
                f"{target.path} exists and is not a GeoPackage; pass --overwrite to replace it"
            ) from None
        clash = sorted(existing.intersection(layers))
        if clash:
            raise OutputExistsError(
                f"layer {clash[0]!r} already exists in {target.path.name}; "
                "choose another layer or pass --overwrite"
            )
        return
    raise OutputExistsError(f"{target.path} already exists; pass --overwrite to replace it")


def _write_layer(
    path: Path, driver: str, layer: str | None, features: list[Feature], crs_wkt: str | None
) -> None:
    geometry = (
        shapely.to_wkb(np.array([f.geometry for f in features], dtype=object))
        if features
        else np.array([], dtype=object)
    )
    columns = {
        "phrase": np.array([f.phrase for f in features], dtype=object),
        "score": np.array([f.score for f in features], dtype=np.float64),
        "area": np.array([f.area for f in features], dtype=np.float64),
        "source": np.array([f.source for f in features], dtype=object),
        "model": np.array([f.model for f in features], dtype=object),
        "created": np.array([f.created for f in features], dtype=object),
    }
    with warnings.catch_warnings():
        # Rasters without CRS (allowed explicitly) give pixel-coordinate outputs without a CRS.
        warnings.filterwarnings("ignore", message="'crs' was not provided")
        _write_raw(path, driver, layer, geometry, columns, crs_wkt)


def _write_raw(path, driver, layer, geometry, columns, crs_wkt) -> None:
    pyogrio_raw.write(
        str(path),
        geometry,
        [columns[name] for name in FIELDS],
        list(FIELDS),
        layer=layer,
        driver=driver,
        geometry_type="MultiPolygon",
        promote_to_multi=True,
        crs=crs_wkt,
    )


def _verify(staged: Path, target: VectorTarget, counts: dict[str, int]) -> None:
    """Read the staged file back before it replaces anything: GDAL's SQLite may report success for a
    GeoPackage cut short by a full disk or a file-size limit (seen: a 64 KB file, "written")."""
    try:
        for name, count in counts.items():
            layer = name if target.is_geopackage else None
            if pyogrio.read_info(staged, layer=layer)["features"] != count:
                raise OSError(f"layer {name or staged.name} did not keep its {count} feature(s)")
    except (RuntimeError, OSError) as exc:
        raise OSError(f"the written file does not read back ({exc})") from None


def write_features(
    result: SegmentResult, target: VectorTarget, layers: dict[str, list[Feature]], overwrite: bool = False
) -> Path:
    """Write `layers` (name → features; one entry for non-GeoPackage targets) atomically."""
    check_writable(target, list(layers), overwrite)
    crs_wkt = result.crs.to_wkt() if result.crs is not None else None
    with writing(target.path):
        workdir = Path(tempfile.mkdtemp(prefix=f".{target.path.stem}.", dir=target.path.parent))
        try:
            staged = workdir / target.path.name
            if target.is_geopackage and target.path.exists():
                shutil.copy2(target.path, staged)  # work on a copy: other layers survive any failure
            for name, features in layers.items():
                _write_layer(staged, target.driver, name if target.is_geopackage else None, features, crs_wkt)
            _verify(staged, target, {name: len(features) for name, features in layers.items()})
            if target.driver == "ESRI Shapefile":
                for part in SHAPEFILE_PARTS:
                    if staged.with_suffix(part).exists():
                        os.replace(staged.with_suffix(part), target.path.with_suffix(part))
            else:
                os.replace(staged, target.path)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return target.path


def planned_layers(source: str, phrases: list[str], target: VectorTarget, per_phrase: bool) -> list[str]:
    """Layer names of a run, known before it starts: one for the run (the raster's name or the
    given name), or one per phrase. Non-GeoPackage targets have a single unnamed layer ("")."""
    if not target.is_geopackage:
        return [""]
    base = target.layer or layer_name(Path(source).stem)
    return [f"{base}_{layer_name(p)}" for p in phrases] if per_phrase else [base]


def default_layers(result: SegmentResult, target: VectorTarget, per_phrase: bool) -> dict[str, list[Feature]]:
    names = planned_layers(result.source, result.phrases, target, per_phrase)
    if len(names) == 1:
        return {names[0]: result.features}
    return {name: [f for f in result.features if f.phrase == p] for name, p in zip(names, result.phrases)}


class ProbabilityGeoTIFF(ProbabilitySink):
    """A float32 GeoTIFF with one band per phrase, written tile core by tile core, moved into place on
    commit."""

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        transform,
        crs,
        phrases: list[str],
        overwrite: bool = False,
    ):
        self.path = Path(path)
        if self.path.suffix.lower() not in (".tif", ".tiff"):
            raise EngineInputError("the probability raster must be a .tif file", "bad_output")
        if not self.path.parent.is_dir():
            raise EngineInputError(f"the output folder {self.path.parent} does not exist", "bad_output")
        if self.path.exists() and not overwrite:
            raise OutputExistsError(f"{self.path} already exists; pass --overwrite to replace it")
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=".tif.part", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        with writing(self.path), self._discarded_on_failure():
            self._dataset = self._create(width, height, transform, crs, phrases)

    @contextmanager
    def _discarded_on_failure(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.discard()
            raise

    def _create(self, width: int, height: int, transform, crs, phrases: list[str]):
        dataset = rasterio.open(
            self._tmp,
            "w",
            driver="GTiff",
            width=width,
            height=height,
            count=len(phrases),
            dtype="float32",
            transform=transform,
            crs=crs,
            tiled=True,
            blockxsize=256,
            blockysize=256,
            compress="deflate",
            BIGTIFF="IF_SAFER",
        )
        for band, phrase in enumerate(phrases, start=1):
            dataset.set_band_description(band, phrase)
        return dataset

    def write(self, col: int, row: int, probabilities: np.ndarray) -> None:
        _, height, width = probabilities.shape
        with writing(self.path):
            self._dataset.write(probabilities.astype(np.float32), window=Window(col, row, width, height))

    def finish(self) -> None:
        """Flush the last blocks to the temporary file (a full disk shows here) and read it back; not
        yet in place."""
        with writing(self.path):
            if not self._dataset.closed:
                expected = (self._dataset.count, self._dataset.height, self._dataset.width)
                self._dataset.close()
                with rasterio.open(self._tmp) as written:
                    if (written.count, written.height, written.width) != expected:
                        raise OSError("the written file does not read back")
                    try:  # every pixel block inside the file (from the header: nothing is decoded)
                        check_structure(written, self.path.name)
                    except EngineInputError as exc:
                        raise OSError(str(exc)) from None

    def commit(self) -> Path:
        """Move the finished file into place (after the vector output: a failed run writes neither)."""
        self.finish()
        with writing(self.path):
            os.replace(self._tmp, self.path)
        return self.path

    def discard(self) -> None:
        dataset = getattr(self, "_dataset", None)
        if dataset is not None and not dataset.closed:
            try:
                dataset.close()
            except (RasterioError, CPLE_BaseError, OSError):
                pass  # flushing a file that is being thrown away may fail on a full disk
        self._tmp.unlink(missing_ok=True)
