"""Geometry and noise helpers shared by the synthetic scene generators (classic and world styles):
shapes in pixel coordinates (x right, y down), rejection-sampled placement, rasterising, smooth noise."""

from __future__ import annotations

import math

import numpy as np
from rasterio.features import rasterize
from shapely import affinity
from shapely.geometry import LineString, Polygon, box


def rasterize_pixels(polygon, size: int) -> np.ndarray:
    """(size, size) bool of a pixel-coordinate geometry (pixel-centre rule, same as the region reader)."""
    if polygon.is_empty:
        return np.zeros((size, size), bool)
    return rasterize([(polygon, 1)], out_shape=(size, size), dtype="uint8").astype(bool)


def rotated_rect(cx: float, cy: float, w: float, h: float, angle: float) -> Polygon:
    return affinity.rotate(box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), angle, origin=(cx, cy))


def blob(rng: np.random.Generator, cx: float, cy: float, radius: float) -> Polygon:
    angles = np.linspace(0, 2 * math.pi, 24, endpoint=False)
    radii = radius * (
        1 + 0.25 * np.sin(angles * rng.integers(2, 4) + rng.uniform(0, 6)) + rng.uniform(-0.1, 0.1, 24)
    )
    return Polygon(np.c_[cx + radii * np.cos(angles), cy + radii * np.sin(angles)]).buffer(0)


def crossing_line(rng: np.random.Generator, size: float, wiggle: float) -> LineString:
    """A line crossing the scene edge to edge, horizontally, vertically or diagonally, optionally bent."""
    t = np.linspace(-0.1, 1.1, 8) * size
    offset = rng.uniform(0.15, 0.85) * size
    bend = rng.uniform(-wiggle, wiggle) * np.sin(np.linspace(0, math.pi * rng.uniform(0.5, 2), 8)) * size
    style = rng.choice(["horizontal", "vertical", "diagonal"])
    if style == "horizontal":
        points = np.c_[t, offset + bend]
    elif style == "vertical":
        points = np.c_[offset + bend, t]
    else:
        slope = rng.choice([-1, 1]) * rng.uniform(0.5, 1.5)
        points = np.c_[t, offset + slope * (t - size / 2) + bend]
    return LineString(points)


class Layout:
    """Places objects without overlapping what is already there (rejection sampling)."""

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.rng, self.size = rng, size
        self.frame = box(0, 0, size, size)
        self.occupied: list[Polygon] = []

    def place(self, make, tries: int = 40, inside: float = 0.95, keep_clear: bool = True):
        for _ in range(tries):
            shape = make()
            if shape.is_empty or shape.intersection(self.frame).area < inside * shape.area:
                continue
            if keep_clear and any(shape.intersects(other) for other in self.occupied):
                continue
            self.occupied.append(shape)
            return shape
        return None


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1] (bilinear upsampling of a coarse random grid)."""
    grid = rng.uniform(-1, 1, (cells + 1, cells + 1))
    coords = np.linspace(0, cells, size, endpoint=False)
    i0 = coords.astype(int)
    f = coords - i0
    rows = grid[i0] * (1 - f)[:, None] + grid[i0 + 1] * f[:, None]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]
