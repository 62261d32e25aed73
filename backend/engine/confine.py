"""Keeping a run to the files it was given.

GDAL opens far more than files: virtual file systems (`/vsicurl/`, `/vsizip/`, `/vsistdin/` …),
connection strings (`PG:`, `MEM:::DATAPOINTER=…`, `WMS:` …) and formats that point at other files or
at network services (a VRT's sources, an ERS header's data file, a WMS description that fetches tiles).
With `EngineOptions.confine_to` set — the service always sets it: its allowed roots for a server-side
path, its upload folder for an upload — a raster is opened only with the drivers of plain raster files
(`FILE_DRIVERS`), and every file GDAL says it uses for it (sidecars, a VRT's sources, recursively) must
be a real file inside one of those folders, symlinks resolved. Anything else is refused before a pixel
is read, with code `path_not_allowed`.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from pathlib import Path

from backend.engine.errors import EngineInputError

PATH_NOT_ALLOWED = "path_not_allowed"
# Formats of plain raster files (no network service, no connection string, no database server).
# VRT is among them because its sources are checked here one by one.
FILE_DRIVERS: tuple[str, ...] = (
    "GTiff",
    "COG",
    "VRT",
    "JP2OpenJPEG",
    "JPEG",
    "PNG",
    "GIF",
    "BMP",
    "WEBP",
    "HFA",
    "ENVI",
    "EHdr",
    "ERS",
    "NITF",
    "PCIDSK",
    "SAGA",
    "RST",
    "GPKG",
)
MAX_VRT_DEPTH = 8  # VRTs of VRTs: deeper nesting is refused rather than followed
MAX_VRT_BYTES = 16 * 2**20  # a VRT is a small XML file; a larger one is not read whole
# A GDAL virtual file system, a URL, or a connection string ("PG:…", "MEM:::…", "NETCDF:…"): never a
# path. (One letter before the colon is a Windows drive, "C:\\data\\scene.tif": a path.)
_NOT_A_PLAIN_PATH = re.compile(r"^/vsi|^[A-Za-z][A-Za-z0-9_+.-]+:|://", re.IGNORECASE)


class NotConfinedError(EngineInputError):
    code = PATH_NOT_ALLOWED


def plain_path_problem(text: str) -> str | None:
    """Why `text` is not a plain file path GDAL would read as a file (None when it is one)."""
    if "\x00" in text:
        return "a path must not contain NUL characters"
    if _NOT_A_PLAIN_PATH.search(text):
        return "GDAL virtual file systems (/vsicurl/, /vsizip/ …), URLs and connection strings are refused"
    return None


def inside(path: Path, roots: Iterable[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def confined_file(text: str, roots: tuple[Path, ...], what: str) -> Path:
    """`text` as a real regular file inside `roots` (symlinks resolved), or NotConfinedError."""
    problem = plain_path_problem(text)
    if problem is not None:
        raise NotConfinedError(f"{what} is not a plain file: {problem}")
    real = Path(os.path.realpath(text))
    if not inside(real, roots) or not real.is_file():
        raise NotConfinedError(f"{what} refers to a file outside the allowed folders")
    return real


def check_dataset_files(files: Iterable[str], roots: tuple[Path, ...], name: str) -> None:
    """Every file GDAL reports for a dataset (itself, sidecars, a VRT's sources) inside `roots`."""
    for used in files:
        confined_file(used, roots, name)


def vrt_sources(vrt: Path) -> list[str]:
    """The source datasets a VRT names (SourceFilename, SourceDataset), as paths GDAL would open."""
    if vrt.stat().st_size > MAX_VRT_BYTES:
        raise NotConfinedError(f"{vrt.name} is a VRT larger than {MAX_VRT_BYTES // 2**20} MB")
    try:
        root = ElementTree.parse(vrt).getroot()
    except ElementTree.ParseError:
        raise NotConfinedError(f"{vrt.name} is not a well-formed VRT") from None
    sources = []
    for element in root.iter():
        if element.tag == "PixelFunctionLanguage" and (element.text or "").strip().lower() == "python":
            raise NotConfinedError(f"{vrt.name} runs Python code, which this run does not allow")
        if element.tag in ("SourceFilename", "SourceDataset"):
            text = (element.text or "").strip()
            relative = element.get("relativeToVRT", element.get("relativetoVRT", "0")) == "1"
            sources.append(str(vrt.parent / text) if relative and not plain_path_problem(text) else text)
    return sources


def check_confined(
    path: Path,
    files: Iterable[str],
    driver: str,
    roots: tuple[Path, ...],
    open_source,
    depth: int = 0,
    name: str | None = None,
) -> None:
    """`path` (opened by `driver`, using `files`) reads nothing outside `roots`.

    `open_source(path) -> (files, driver)` opens a VRT's source the way the run would (same drivers);
    sources are checked recursively, so a VRT inside the roots cannot reach a service or a file outside.
    """
    check_dataset_files(files, roots, name or path.name)
    if driver != "VRT":
        return
    if depth >= MAX_VRT_DEPTH:
        raise NotConfinedError(f"{path.name} nests VRTs more than {MAX_VRT_DEPTH} deep")
    for source in vrt_sources(path):
        real = confined_file(source, roots, path.name)
        source_files, source_driver = open_source(real)
        check_confined(real, source_files, source_driver, roots, open_source, depth + 1)
