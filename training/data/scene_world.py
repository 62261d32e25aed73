"""The world style's scenes (training/data/scene_style.py): objects placed at real sizes for the scene's
ground sampling distance, in the mix of a scene type, and painted with textures, sun shadows and a
simulated sensor (blur, noise, haze, colour cast), optionally recorded as 16-bit values.

Everything draws from the scene's one random generator, so a seed and a style give one scene.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter
from shapely import affinity
from shapely.geometry import LineString, Point, Polygon

from training.data.scene_geometry import (
    Layout,
    blob,
    crossing_line,
    rasterize_pixels,
    rotated_rect,
    smooth_noise,
)
from training.data.scene_style import GROUNDS, SCENE_TYPES, SceneStyle

AddObject = Callable[[str, Polygon | None], None]
RAISED = ("building", "vehicle", "tree")  # kinds that cast shadows
HAZE_RGB = np.array([205.0, 210.0, 218.0])


def draw_gsd(rng: np.random.Generator, style: SceneStyle, default: float) -> float:
    """The scene's metres per pixel: log-uniform in the style's range, or the caller's."""
    if style.gsd_range is None:
        return default
    low, high = style.gsd_range
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


class _Counts:
    """How many objects of each kind a scene gets: density per hectare × ground area, capped."""

    def __init__(self, rng: np.random.Generator, style: SceneStyle, size: int, gsd: float) -> None:
        names = sorted(style.scene_types)
        weights = np.array([style.scene_types[n] for n in names], float)
        self.scene_type = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        self.rng, self.style = rng, style
        self.side_m = size * gsd
        self.area_ha = self.side_m**2 / 10_000
        self.scale = rng.uniform(*style.density_scale)

    def density(self, kind: str) -> float:
        low, high = SCENE_TYPES[self.scene_type][kind]
        return self.rng.uniform(low, high) * self.scale * self.style.kind_weights.get(kind, 1.0)

    def count(self, kind: str) -> int:
        if kind not in self.style.palette:
            return 0
        return min(int(self.rng.poisson(self.density(kind) * self.area_ha)), self.style.max_per_kind)

    def chance(self, kind: str) -> bool:
        return kind in self.style.palette and self.rng.random() < min(1.0, self.density(kind))

    def roads(self) -> int:
        return min(int(self.rng.poisson(self.density("road") * self.side_m / 100)), 3)


def place_world(
    rng: np.random.Generator, layout: Layout, size: int, gsd: float, style: SceneStyle, add: AddObject
) -> None:
    """Land cover, then courts, buildings, pools, vehicles and trees, at sizes in metres."""
    counts = _Counts(rng, style, size, gsd)
    grid = rng.uniform(0, 90)  # fields and buildings of a place share an orientation, more or less

    def metres(kind: str, key: str) -> float:
        return rng.uniform(*style.sizes[kind][key]) / gsd

    for _ in range(counts.count("field")):
        add(
            "field",
            layout.place(
                lambda: rotated_rect(
                    *rng.uniform(0, 1, 2) * size,
                    metres("field", "side"),
                    metres("field", "side"),
                    grid + rng.uniform(-6, 6),
                ),
                tries=15,
                inside=0.2,
            ),
        )
    if counts.chance("river"):
        add(
            "river",
            layout.place(
                lambda: crossing_line(rng, size, 0.08)
                .buffer(metres("river", "half_width"))
                .intersection(layout.frame),
                inside=0,
            ),
        )
    for _ in range(counts.count("pond")):
        add("pond", layout.place(lambda: blob(rng, *rng.uniform(0, 1, 2) * size, metres("pond", "radius"))))
    roads = _place_roads(rng, layout, size, counts, add, lambda: metres("road", "half_width"))
    _place_built(rng, layout, size, counts, add, metres, grid, roads)


def _place_roads(rng, layout: Layout, size: int, counts: _Counts, add: AddObject, half_width) -> list:
    roads = []
    if "road" not in counts.style.palette:
        return roads
    for _ in range(counts.roads()):
        line = crossing_line(rng, size, 0.03)
        shape = layout.place(
            lambda line=line: line.buffer(half_width()).intersection(layout.frame), inside=0, keep_clear=False
        )
        if shape is not None:
            roads.append((line, shape))
            add("road", shape)
    return roads


def _place_built(rng, layout: Layout, size: int, counts: _Counts, add: AddObject, metres, grid, roads):
    """Courts, buildings, pools (beside buildings when there are some), vehicles (mostly on roads), trees."""
    for _ in range(counts.count("court")):
        add(
            "court",
            layout.place(
                lambda: rotated_rect(
                    *rng.uniform(0, 1, 2) * size,
                    metres("court", "length"),
                    metres("court", "width"),
                    grid + rng.choice([0, 90]) + rng.uniform(-5, 5),
                ),
                tries=15,
                inside=0.6,
            ),
        )
    buildings = _place_buildings(rng, layout, size, counts, add, metres, grid)
    _place_pools(rng, layout, size, counts, add, metres, buildings)
    _place_vehicles(rng, layout, size, counts, add, metres, roads)
    for _ in range(counts.count("tree")):
        add(
            "tree",
            layout.place(
                lambda: Point(*rng.uniform(0, 1, 2) * size).buffer(metres("tree", "radius"), quad_segs=6),
                tries=10,
                inside=0.6,
            ),
        )


def _place_buildings(rng, layout: Layout, size: int, counts: _Counts, add: AddObject, metres, grid) -> list:
    """Buildings, most aligned with the place's grid; returns their footprints."""
    buildings = []

    def building() -> Polygon:
        side = metres("building", "side")
        angle = grid + rng.choice([0, 90]) + rng.uniform(-5, 5) if rng.random() < 0.7 else rng.uniform(0, 180)
        return rotated_rect(*rng.uniform(0, 1, 2) * size, side, side * rng.uniform(0.45, 1.0), angle)

    for _ in range(counts.count("building")):
        shape = layout.place(building, tries=15, inside=0.5)
        if shape is not None:
            buildings.append(shape)
        add("building", shape)
    return buildings


def _place_pools(rng, layout: Layout, size: int, counts: _Counts, add: AddObject, metres, buildings) -> None:
    """Pools, mostly within a building's size of one, some with rounded corners."""

    def pool() -> Polygon:
        if buildings and rng.random() < 0.8:
            anchor = buildings[rng.integers(len(buildings))].centroid
            reach = metres("building", "side")
            centre = (anchor.x + rng.uniform(-reach, reach), anchor.y + rng.uniform(-reach, reach))
        else:
            centre = tuple(rng.uniform(0, 1, 2) * size)
        length, width = metres("pool", "length"), metres("pool", "width")
        shape = rotated_rect(*centre, length, width, rng.uniform(0, 180))
        if rng.random() < 0.5:  # rounded corners
            shape = shape.buffer(min(length, width) * rng.uniform(0, 0.3), quad_segs=4)
        return shape

    for _ in range(counts.count("pool")):
        add("pool", layout.place(pool, tries=15, inside=0.9))


def _place_vehicles(rng, layout: Layout, size: int, counts: _Counts, add: AddObject, metres, roads) -> None:
    """Vehicles, most on a road (along it, in a lane), the others anywhere at any angle."""

    def vehicle() -> Polygon:
        length, width = metres("vehicle", "length"), metres("vehicle", "width")
        if roads and rng.random() < 0.65:
            line, _ = roads[rng.integers(len(roads))]
            d = rng.uniform(0.05, 0.95) * line.length
            p, q = line.interpolate(d), line.interpolate(d + 1)
            angle = math.degrees(math.atan2(q.y - p.y, q.x - p.x))
            side = rng.choice([-1, 1]) * rng.uniform(0.1, 0.45) * metres("road", "half_width") * 2
            nx, ny = -math.sin(math.radians(angle)), math.cos(math.radians(angle))
            return rotated_rect(p.x + side * nx, p.y + side * ny, length, width, angle)
        return rotated_rect(*rng.uniform(0, 1, 2) * size, length, width, rng.uniform(0, 180))

    for _ in range(counts.count("vehicle")):
        add("vehicle", layout.place(vehicle, tries=15, inside=0.9))


# ---------------------------------------------------------------------------------------------
# painting


class _Painter:
    """Paints a world scene: ground, then every object with its shadow and texture."""

    def __init__(self, rng: np.random.Generator, size: int, gsd: float, style: SceneStyle) -> None:
        self.rng, self.size, self.gsd, self.style = rng, size, gsd, style
        self.strength = rng.uniform(*style.texture)
        self.yy, self.xx = np.mgrid[0:size, 0:size].astype(float)
        azimuth = rng.uniform(0, 2 * math.pi)
        elevation = math.radians(rng.uniform(35, 75))
        # Shadow length in pixels per metre of height, along the direction away from the sun.
        self.shadow_step = (
            math.cos(azimuth) / math.tan(elevation) / gsd,
            math.sin(azimuth) / math.tan(elevation) / gsd,
        )
        self.shadow_darkness = rng.uniform(0.4, 0.7)

    def ground(self) -> np.ndarray:
        rng, size = self.rng, self.size
        base = np.array(GROUNDS[rng.integers(len(GROUNDS))], float) + rng.normal(0, 8, 3)
        cells = int(np.clip(size * self.gsd / 40, 2, 16))
        variation = 25 * self.strength * smooth_noise(rng, size, cells)[:, :, None]
        grain = rng.normal(0, 4 + 4 * self.strength, (size, size, 3))
        return base[None, None, :] + variation + grain

    def shadow(self, image: np.ndarray, kind: str, shape: Polygon, region: np.ndarray) -> None:
        height = self.rng.uniform(*self.style.sizes[kind]["height"])
        dx, dy = self.shadow_step[0] * height, self.shadow_step[1] * height
        cast = rasterize_pixels(affinity.translate(shape, dx, dy).union(shape).convex_hull, self.size)
        cast &= ~region
        image[cast] *= self.shadow_darkness

    def texture(self, kind: str, shape: Polygon) -> np.ndarray | None:
        rng, s = self.rng, self.strength
        xx, yy = self.xx, self.yy
        if kind == "field":
            spacing = rng.uniform(1.5, 6.0) / self.gsd  # crop rows, when the pixels can show them
            if spacing < 2.2 or rng.random() < 0.25:
                return 14 * s * smooth_noise(rng, self.size, int(rng.integers(3, 9)))
            angle = rng.uniform(0, math.pi)
            phase = (xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / spacing
            return 12 * s * np.sin(phase)
        if kind in ("pond", "river"):
            return 8 * s * smooth_noise(rng, self.size, 8)
        if kind == "building":
            return _roof(rng, shape, xx, yy, s)
        if kind == "tree":
            centre, radius = shape.centroid, math.sqrt(shape.area / math.pi)
            rim = np.clip(np.hypot(xx - centre.x, yy - centre.y) / max(radius, 1), 0, 1) ** 2
            return -30 * s * rim + rng.normal(0, 6 * s, (self.size, self.size))
        if kind == "road":
            return rng.normal(0, 3 * s, (self.size, self.size))
        return None

    def details(self, image: np.ndarray, kind: str, shape: Polygon, region: np.ndarray) -> None:
        """Court lines, pool rims, windscreens: drawn when the object is large enough in pixels."""
        rng = self.rng
        if kind == "court" and math.sqrt(shape.area) > 14:
            lines = shape.buffer(-0.12 * math.sqrt(shape.area)).boundary
            centre = _long_axis_line(shape, across=True)
            mask = rasterize_pixels(lines.union(centre).buffer(max(0.5, 0.08 / self.gsd)), self.size) & region
            image[mask] = 235
        elif kind == "pool":
            rim = region & ~rasterize_pixels(shape.buffer(-max(0.7, 0.4 / self.gsd)), self.size)
            image[rim] = 215 + rng.normal(0, 5, (int(rim.sum()), 3))
        elif kind == "vehicle" and shape.length > 20:
            front = shape.intersection(_front_half(shape, rng)).buffer(-0.15 * math.sqrt(shape.area))
            glass = rasterize_pixels(front, self.size) & region
            image[glass] = image[glass] * 0.35 + 15


def _long_axis_line(shape: Polygon, across: bool = False) -> LineString:
    """The line through the centroid along the minimum rotated rectangle's long (or short) axis."""
    corners = np.asarray(shape.minimum_rotated_rectangle.exterior.coords)[:4]
    edges = [corners[1] - corners[0], corners[2] - corners[1]]
    long_edge = max(edges, key=lambda e: float(np.hypot(*e)))
    direction = np.array([-long_edge[1], long_edge[0]]) if across else long_edge
    direction = direction / max(float(np.hypot(*direction)), 1e-9) * math.sqrt(shape.area) * 2
    c = np.array([shape.centroid.x, shape.centroid.y])
    return LineString([c - direction, c + direction])


def _front_half(shape: Polygon, rng: np.random.Generator) -> Polygon:
    """The half of the plane on one end of the shape's long axis (a car's windscreen end)."""
    axis = np.asarray(_long_axis_line(shape).coords)
    end = axis[int(rng.integers(2))]
    centre = np.array([shape.centroid.x, shape.centroid.y])
    return Point(*(centre + (end - centre) * 0.45)).buffer(math.sqrt(shape.area) * 0.45)


def _roof(rng: np.random.Generator, shape: Polygon, xx, yy, strength: float) -> np.ndarray:
    """Gable (two faces, one darker, split along the ridge), flat (even, a few dark boxes) or hipped."""
    style = rng.choice(["gable", "flat", "hip"], p=[0.5, 0.3, 0.2])
    axis = np.asarray(_long_axis_line(shape).coords)
    (x0, y0), (x1, y1) = axis
    side = (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0)  # which side of the ridge
    if style == "gable":
        return np.where(side > 0, -22.0 * strength, 6.0 * strength)
    centre = shape.centroid
    if style == "hip":
        reach = max(math.hypot(x1 - x0, y1 - y0), 1)
        along = ((xx - centre.x) * (x1 - x0) + (yy - centre.y) * (y1 - y0)) / reach
        return -14 * strength * np.sign(side) + 8 * strength * np.tanh(along / 3)
    texture = np.zeros_like(xx)
    radius = math.sqrt(shape.area)
    for _ in range(int(rng.integers(0, 4))):
        bx, by = centre.x + rng.uniform(-0.3, 0.3) * radius, centre.y + rng.uniform(-0.3, 0.3) * radius
        texture[(abs(xx - bx) < radius * 0.08) & (abs(yy - by) < radius * 0.06)] = -45 * strength
    return texture


def paint_world(rng: np.random.Generator, size: int, gsd: float, placed, style: SceneStyle) -> np.ndarray:
    """The scene's 8-bit image (what a camera with the style's sensor would record)."""
    painter = _Painter(rng, size, gsd, style)
    image = painter.ground()
    for kind, colour, shape in placed:
        region = rasterize_pixels(shape, size)
        if not region.any():
            continue
        if style.shadows and kind in RAISED:
            painter.shadow(image, kind, shape, region)
        colour_rgb = np.asarray(style.palette[kind][colour], float) + rng.normal(0, 9, 3)
        values = colour_rgb[None, :] + rng.normal(0, 6, (int(region.sum()), 3))
        texture = painter.texture(kind, shape)
        if texture is not None:
            values += texture[region][:, None]
        image[region] = values
        painter.details(image, kind, shape, region)
    return sensor(rng, image, style)


def sensor(rng: np.random.Generator, image: np.ndarray, style: SceneStyle) -> np.ndarray:
    """Colour cast and brightness, haze, the optics' blur and noise; 8-bit out."""
    cast = rng.uniform(1 - style.colour_cast, 1 + style.colour_cast, 3) * rng.uniform(0.85, 1.12)
    haze = rng.uniform(*style.haze)
    image = (image * cast) * (1 - haze) + haze * HAZE_RGB
    sigma = rng.uniform(*style.blur)
    if sigma > 0.2:
        eight_bit = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
        image = np.asarray(eight_bit.filter(ImageFilter.GaussianBlur(sigma)), float)
    noise = rng.uniform(*style.sensor_noise)
    image = image + rng.normal(0, 1, image.shape) * noise * np.sqrt(np.clip(image, 1, 255) / 128)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def sixteen_bit(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """The same scene as a 16-bit sensor would store it: linear values, an offset, a 12-bit-like range."""
    gamma = rng.uniform(1.8, 2.3)
    scale = rng.uniform(900, 3500) * rng.uniform(0.92, 1.08, 3)
    offset = rng.uniform(40, 300)
    linear = (image.astype(float) / 255) ** gamma
    values = offset + linear * scale + rng.normal(0, rng.uniform(1, 6), image.shape)
    return np.clip(np.round(values), 0, 65535).astype(np.uint16)
