"""Tiny seeded GeoTIFFs with a real CRS for engine tests."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning

UTM_ORIGIN = (500_000.0, 5_000_000.0)  # top-left corner in EPSG:32633
PIXEL = 2.0  # metres


def background(height: int, width: int, bands: int = 3, seed: int = 0) -> np.ndarray:
    """Dull grey-ish noise far from every stand-in colour."""
    rng = np.random.default_rng(seed)
    return rng.integers(90, 150, size=(bands, height, width), dtype=np.uint8)


def write_geotiff(
    path: Path,
    data: np.ndarray,
    crs: str | None = "EPSG:32633",
    transform: Affine | None = None,
    nodata: float | None = None,
    colorinterp=None,
) -> Path:
    if transform is None:
        transform = Affine(PIXEL, 0, UTM_ORIGIN[0], 0, -PIXEL, UTM_ORIGIN[1])
    profile = dict(
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # rasters without CRS are made on purpose
        dst = rasterio.open(path, "w", **profile)
    with dst:
        dst.write(data)
        if colorinterp is not None:
            dst.colorinterp = colorinterp
    return path


def paint(data: np.ndarray, rows: slice, cols: slice, colour: tuple[int, ...]) -> None:
    for band, value in enumerate(colour):
        data[band, rows, cols] = value


def pixel_box(col0: float, row0: float, col1: float, row1: float, transform: Affine):
    """The map-coordinate box of pixel columns [col0, col1) and rows [row0, row1)."""
    from shapely.geometry import box

    x0, y0 = transform @ (col0, row0)
    x1, y1 = transform @ (col1, row1)
    return box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


# -- rasters that are wrong in one way each (the robustness tests; docs/robustness.md) -------------
def good_scene(path: Path, size: int = 100) -> Path:
    """A valid GeoTIFF with a red square, which the colour stand-in finds."""
    data = background(size, size)
    paint(data, slice(size // 5, size // 2), slice(size // 5, size // 2), (255, 0, 0))
    return write_geotiff(path, data)


def cut_short(source: Path, path: Path, keep: int = 5000) -> Path:
    """The first `keep` bytes of a valid file: an upload or copy that stopped midway."""
    path.write_bytes(source.read_bytes()[:keep])
    return path


def declaring_huge(path: Path, side: int = 1_000_000) -> Path:
    """A GeoTIFF of a few hundred bytes whose header declares side × side pixels (one sparse strip)."""
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=side,
        height=side,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=Affine(1, 0, UTM_ORIGIN[0], 0, -1, UTM_ORIGIN[1]),
        tiled=False,
        blockysize=side,
        sparse_ok=True,
    ):
        pass
    return path


def corrupt_blocks(path: Path, size: int = 128) -> Path:
    """A deflate-compressed tiled GeoTIFF whose compressed pixel blocks are overwritten with noise: the
    header and the file size are right, the pixels cannot be decoded."""
    data = background(size, size)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=Affine(PIXEL, 0, UTM_ORIGIN[0], 0, -PIXEL, UTM_ORIGIN[1]),
        tiled=True,
        blockxsize=64,
        blockysize=64,
        compress="deflate",
    ) as dst:
        dst.write(data)
    with rasterio.open(path) as src:
        offset = int(src.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
        length = int(src.get_tag_item("BLOCK_SIZE_0_0", "TIFF", bidx=1))
    raw = bytearray(path.read_bytes())
    noise = np.random.default_rng(1).integers(0, 256, length, dtype=np.uint8)
    raw[offset : offset + length] = noise.tobytes()
    path.write_bytes(bytes(raw))
    return path


def unresolvable_crs(path: Path) -> Path:
    """A GeoTIFF whose GeoKeys name a projected CRS that does not exist (EPSG:121, from a mangled
    header the property tests found): GDAL reads it as a local CRS that has no projection."""
    good_scene(path, size=50)
    raw = bytearray(path.read_bytes())
    # ProjectedCSTypeGeoKey (3072), stored in the key directory itself (location 0), count 1, 32633
    key = (3072).to_bytes(2, "little") + b"\x00\x00\x01\x00" + (32633).to_bytes(2, "little")
    at = raw.find(key)
    assert at > 0, "the GeoKey directory was not where expected"
    raw[at + 6 : at + 8] = (121).to_bytes(2, "little")
    path.write_bytes(bytes(raw))
    return path


def broken_geotransform(path: Path, pixel: float = 0.0) -> Path:
    """A GeoTIFF with a CRS whose geotransform gives pixels of size `pixel` (0, NaN …)."""
    transform = Affine(pixel, 0, UTM_ORIGIN[0], 0, -pixel, UTM_ORIGIN[1])
    return write_geotiff(path, background(20, 20), transform=transform)


def zero_band_vrt(path: Path) -> Path:
    """A VRT with a size and a CRS but not one band."""
    path.write_text(
        '<VRTDataset rasterXSize="50" rasterYSize="50"><SRS>EPSG:32633</SRS>'
        "<GeoTransform>500000, 2, 0, 5000000, 0, -2</GeoTransform></VRTDataset>"
    )
    return path


def vrt_of(path: Path, source: str, relative: bool = False, size: int = 100) -> Path:
    """A three-band VRT reading `source` (a path, a /vsi… name, a URL)."""
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource>'
        f'<SourceFilename relativeToVRT="{int(relative)}">{source}</SourceFilename>'
        f"<SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>"
        for b in (1, 2, 3)
    )
    path.write_text(
        f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}"><SRS>EPSG:32633</SRS>'
        f"<GeoTransform>500000, 2, 0, 5000000, 0, -2</GeoTransform>{bands}</VRTDataset>"
    )
    return path
