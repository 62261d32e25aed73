"""A PNG preview of a segmentation: the raster with each phrase's polygons outlined and labelled."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
import shapely
from PIL import Image, ImageDraw, ImageFont

# Distinct outline colours, one per phrase (cycled).
PHRASE_COLOURS = [
    (255, 221, 0),
    (0, 229, 255),
    (255, 64, 160),
    (120, 255, 80),
    (255, 140, 0),
    (170, 120, 255),
]


def _read_rgb(raster: Path) -> tuple[np.ndarray, rasterio.Affine]:
    with rasterio.open(raster) as dataset:
        bands = [1, 2, 3] if dataset.count >= 3 else [1, 1, 1]
        pixels = dataset.read(bands)
        transform = dataset.transform
    if pixels.dtype != np.uint8:  # stretch anything else to 8 bits for display
        lo, hi = np.percentile(pixels, (2, 98))
        pixels = np.clip((pixels - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype(np.uint8)
    return np.transpose(pixels, (1, 2, 0)), transform


def _rings(geometry: shapely.Geometry) -> list[np.ndarray]:
    rings = []
    for polygon in getattr(geometry, "geoms", [geometry]):
        rings.append(np.asarray(polygon.exterior.coords))
        rings.extend(np.asarray(interior.coords) for interior in polygon.interiors)
    return rings


def render_preview(
    raster: Path, features: Sequence[tuple[str, shapely.Geometry]], out_png: Path, scale: int = 2
) -> Path:
    """Draw (phrase, geometry-in-raster-CRS) pairs on the raster; written atomically to `out_png`."""
    image, transform = _read_rgb(raster)
    canvas = Image.fromarray(image).resize((image.shape[1] * scale, image.shape[0] * scale), Image.NEAREST)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    to_pixel = ~transform
    phrases = list(dict.fromkeys(phrase for phrase, _ in features))
    for phrase, geometry in features:
        colour = PHRASE_COLOURS[phrases.index(phrase) % len(PHRASE_COLOURS)]
        for ring in _rings(geometry):
            cols, rows = to_pixel * (ring[:, 0], ring[:, 1])
            draw.line(list(zip(np.asarray(cols) * scale, np.asarray(rows) * scale)), fill=colour, width=2)
        anchor = geometry.representative_point()
        col, row = to_pixel * (anchor.x, anchor.y)
        xy = (col * scale + 4, row * scale - 6)
        box = draw.textbbox(xy, phrase, font=font)
        draw.rectangle(box, fill=(0, 0, 0))
        draw.text(xy, phrase, fill=colour, font=font)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_png.parent, suffix=".png.part")
    os.close(fd)
    try:
        canvas.save(tmp, format="PNG")
        os.replace(tmp, out_png)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_png
