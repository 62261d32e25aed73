"""A procedural generator of aerial-like scenes with referring phrases, written out as GeoTIFF +
GeoPackage in the custom-region format (so training on it goes through the region reader).

Scenes hold fields, water (ponds, a river), roads, buildings, vehicles and trees of several colours,
sizes and positions (and, in the world style, sports courts and swimming pools, at real sizes for a
ground sampling distance drawn per scene: training/data/scene_style.py). Every phrase names exactly
one object, using only as much as is needed to tell
it apart from the others of its kind — colour, size, position or a relation to a landmark — plus
sometimes a redundant attribute, with varied wording. Everything a model could learn by accident
(object order, exact colours, sizes, where things are) is randomised per scene, so a model trained
on some scenes is tested honestly on new ones.

    scene = generate_scene(seed=3, size=256)                  # the classic style
    scene = generate_scene(seed=3, size=128, style="world")   # every kind, 0.2–2 m, sensor effects
    raster_path, vector_path = write_region(scene, folder)
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyogrio
import rasterio
import shapely
from affine import Affine
from shapely import affinity
from shapely.geometry import LineString, Point, Polygon, box

from training.data.scene_geometry import Layout as _Layout
from training.data.scene_geometry import blob as _blob
from training.data.scene_geometry import crossing_line as _crossing_line
from training.data.scene_geometry import rasterize_pixels
from training.data.scene_geometry import rotated_rect as _rotated_rect
from training.data.scene_geometry import smooth_noise as _smooth_noise
from training.data.scene_style import CLASSIC_PALETTE, KINDS, SceneStyle, get_style
from training.data.scene_world import draw_gsd, paint_world, place_world, sixteen_bit

TEXT_COLUMN = "phrase"  # the region reader's default text column
PHRASE_SEPARATOR = "|"
REFERENCE_SIZE = 256  # object sizes below are in pixels of a 256-pixel scene and scale with `size`

# The classic style's colours (kind → colour name → mean RGB); every style's are in scene_style.py.
PALETTE = CLASSIC_PALETTE
__all__ = ["KINDS", "PALETTE", "Scene", "SceneObject", "generate_scene", "phrase_cues", "write_region"]

# kind → (nouns, colour word variants). Each phrase picks one noun; colour words may have synonyms.
NOUNS: dict[str, list[str]] = {
    "field": ["field", "farmland", "crop field"],
    "pond": ["pond", "lake"],
    "river": ["river", "stream"],
    "road": ["road", "street"],
    "building": ["building", "house", "roof"],
    "vehicle": ["car", "vehicle"],
    "tree": ["tree"],
    "court": ["court", "sports court"],
    "pool": ["pool", "swimming pool"],
}
COLOUR_WORDS: dict[str, list[str]] = {
    "grey": ["grey", "gray"],
    "dark": ["dark"],
    "dirt": ["dirt", "unpaved"],
}
LANDMARK_KINDS = ("river", "pond", "road", "court", "pool")
# The words of the cues that tell objects of one kind apart (besides colour).
SIZE_WORDS = {"large": ("large", "big", "largest", "biggest"), "small": ("small", "smallest", "little")}
POSITION_WORDS = {
    "left": ("on the left", "leftmost", "furthest to the left"),
    "right": ("on the right", "rightmost", "furthest to the right"),
    "top": ("at the top", "topmost", "nearest the top"),
    "bottom": ("at the bottom", "bottommost", "nearest the bottom"),
}
RELATION_WORDS = ("next to", "near", "beside")


def phrase_cues(phrase: str) -> tuple[str, ...]:
    """Which cue types a generated phrase uses besides kind and colour: a subset of ("size",
    "position", "relation"), in that order (for breaking results down by what a phrase asks)."""
    text = f" {phrase} "
    found = {
        "size": any(f" {w} " in text for words in SIZE_WORDS.values() for w in words),
        "position": any(f" {w} " in text for words in POSITION_WORDS.values() for w in words),
        "relation": any(f" {w} the " in text for w in RELATION_WORDS),
    }
    return tuple(name for name, present in found.items() if present)


@dataclass
class SceneObject:
    kind: str
    colour: str
    polygon: Polygon  # visible footprint, pixel coordinates (x right, y down)
    phrases: list[str] = field(default_factory=list)


@dataclass
class Scene:
    image: np.ndarray  # (size, size, 3) uint8
    transform: Affine  # pixel → map coordinates
    crs: str
    objects: list[SceneObject]
    seed: int
    raster: np.ndarray | None = None  # (size, size, 3) uint16 when the scene is recorded as 16-bit
    style: str = "classic"

    @property
    def size(self) -> int:
        return self.image.shape[0]

    @property
    def gsd(self) -> float:
        return abs(self.transform.a)

    def mask(self, obj: SceneObject) -> np.ndarray:
        return rasterize_pixels(obj.polygon, self.size)

    @property
    def referable(self) -> list[SceneObject]:
        return [obj for obj in self.objects if obj.phrases]


# ---------------------------------------------------------------------------------------------
# painting (classic)


def _paint(
    image: np.ndarray, region: np.ndarray, rgb, rng: np.random.Generator, noise: float, texture=None
) -> None:
    colour = np.asarray(rgb, float) + rng.normal(0, 10, 3)  # per-object hue jitter
    values = colour[None, :] + rng.normal(0, noise, (int(region.sum()), 3))
    if texture is not None:
        values += texture[region][:, None]
    image[region] = np.clip(values, 0, 255)


# ---------------------------------------------------------------------------------------------
# the scene


def generate_scene(
    seed: int,
    size: int = 256,
    gsd: float = 0.5,
    crs: str = "EPSG:32633",
    origin: tuple[float, float] | None = None,
    max_phrases: int = 3,
    kinds: tuple[str, ...] | None = None,
    style: SceneStyle | str | None = None,
) -> Scene:
    """A random aerial-like scene of `size`×`size` pixels at `gsd` map units per pixel.

    Deterministic in `seed` (and the style). `origin` is the map coordinate of the top-left corner
    (random in UTM zone 33N when omitted, so scenes do not overlap). `kinds` keeps only those object
    kinds (e.g. the large land-cover ones for a quick learning check). `style`: "classic" (default;
    sizes relative to the scene, one look), "world", or a `SceneStyle` (training/data/scene_style.py);
    a style with a GSD range draws the scene's GSD from it and ignores `gsd`.
    """
    style = get_style(style)
    rng = np.random.default_rng(seed)
    layout = _Layout(rng, size)
    placed: list[tuple[str, str, Polygon]] = []  # painter's order
    palette = style.palette if style.world else PALETTE

    def add(kind: str, shape: Polygon | None, colour: str | None = None) -> None:
        if shape is not None and (kinds is None or kind in kinds):
            placed.append((kind, colour or str(rng.choice(list(palette[kind]))), shape))

    raster = None
    if style.world:
        gsd = draw_gsd(rng, style, gsd)
        place_world(rng, layout, size, gsd, style, add)
        image = paint_world(rng, size, gsd, placed, style)
        if rng.random() < style.sixteen_bit_share:
            raster = sixteen_bit(rng, image)
        rules = _PhraseRules(style.near_m / gsd, style.position_words, style.roof_phrasing)
        objects = _visible_objects(placed, size, min_area=style.min_pixels)
    else:
        roads = _place_land_cover(rng, layout, size, add)
        _place_small_objects(rng, layout, size, add, roads)
        image = _paint_scene(rng, size, placed)
        rules = _PhraseRules(near=_near_distance(size))
        objects = _visible_objects(placed, size)
    for obj in objects:
        obj.phrases = _describe(obj, objects, size, rng, max_phrases, rules)
    if origin is None:
        origin = (float(rng.integers(300_000, 700_000)), float(rng.integers(4_500_000, 5_500_000)))
    transform = Affine(gsd, 0, origin[0], 0, -gsd, origin[1])
    return Scene(image, transform, crs, objects, seed, raster=raster, style=style.name)


def _place_land_cover(rng: np.random.Generator, layout: _Layout, size: int, add) -> list[LineString]:
    """Large land cover first: fields, water, roads (the roads' centre lines are returned)."""
    s = size / REFERENCE_SIZE
    for _ in range(rng.integers(0, 4)):
        add(
            "field",
            layout.place(
                lambda: _rotated_rect(
                    *rng.uniform(0.15, 0.85, 2) * size, *rng.uniform(45, 100, 2) * s, rng.uniform(0, 90)
                ),
                inside=0.7,
            ),
        )
    if rng.random() < 0.5:
        add(
            "river",
            layout.place(
                lambda: _crossing_line(rng, size, 0.08)
                .buffer(rng.uniform(5, 10) * s)
                .intersection(layout.frame),
                inside=0,
            ),
        )
    for _ in range(rng.integers(0, 3)):
        add(
            "pond",
            layout.place(lambda: _blob(rng, *rng.uniform(0.15, 0.85, 2) * size, rng.uniform(10, 26) * s)),
        )
    roads = []
    for _ in range(rng.integers(1, 3)):
        line = _crossing_line(rng, size, 0.03)
        shape = layout.place(
            lambda line=line: line.buffer(rng.uniform(3.5, 6) * s).intersection(layout.frame),
            inside=0,
            keep_clear=False,
        )
        if shape is not None:
            roads.append(line)
            add("road", shape)
    return roads


def _place_small_objects(rng: np.random.Generator, layout: _Layout, size: int, add, roads: list) -> None:
    """Buildings, vehicles (mostly on roads), trees — after the land cover, in this order."""
    s = size / REFERENCE_SIZE
    for _ in range(rng.integers(3, 8)):
        add(
            "building",
            layout.place(
                lambda: _rotated_rect(
                    *rng.uniform(0.08, 0.92, 2) * size, *rng.uniform(10, 34, 2) * s, rng.uniform(0, 90)
                )
            ),
        )
    for _ in range(rng.integers(2, 7)):

        def vehicle() -> Polygon:
            length, width = rng.uniform(9, 14) * s, rng.uniform(4.5, 6.5) * s
            if roads and rng.random() < 0.7:
                line = roads[rng.integers(len(roads))]
                d = rng.uniform(0.1, 0.9) * line.length
                p, q = line.interpolate(d), line.interpolate(d + 1)
                angle = math.degrees(math.atan2(q.y - p.y, q.x - p.x))
                return _rotated_rect(p.x, p.y, length, width, angle)
            return _rotated_rect(*rng.uniform(0.08, 0.92, 2) * size, length, width, rng.uniform(0, 180))

        add("vehicle", layout.place(vehicle))
    for _ in range(rng.integers(3, 10)):
        add(
            "tree",
            layout.place(lambda: Point(*rng.uniform(0.05, 0.95, 2) * size).buffer(rng.uniform(3.5, 10) * s)),
        )


def _paint_scene(rng: np.random.Generator, size: int, placed) -> np.ndarray:
    base = np.array(rng.choice([(120, 130, 80), (150, 140, 100), (105, 125, 75)]), float)
    ground = (
        base[None, None, :] + 25 * _smooth_noise(rng, size, 6)[:, :, None] + rng.normal(0, 6, (size, size, 3))
    )
    image = np.clip(ground, 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    for kind, colour, shape in placed:
        region = rasterize_pixels(shape, size)
        rgb = PALETTE[kind][colour]
        texture = None
        if kind == "field":  # crop rows in a random direction
            angle = rng.uniform(0, math.pi)
            texture = 12 * np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * rng.uniform(0.5, 1.2))
        elif kind in ("pond", "river"):
            texture = 8 * _smooth_noise(rng, size, 8)
        elif kind == "building":  # a gable: one half of the roof darker; plus a shadow first
            shadow = rasterize_pixels(affinity.translate(shape, 2, 2), size) & ~region
            image[shadow] = (image[shadow] * 0.55).astype(np.uint8)
            centre = shape.centroid
            texture = np.where((xx - centre.x) * rng.choice([-1, 1]) > 0, -18.0, 0.0)
        elif kind == "tree":  # darker rim
            centre = shape.centroid
            radius = math.sqrt(shape.area / math.pi)
            texture = -25 * np.clip(np.hypot(xx - centre.x, yy - centre.y) / max(radius, 1), 0, 1) ** 2
        _paint(image, region, rgb, rng, noise=7, texture=texture)
    # Global illumination, so exact colours are not a giveaway.
    gain = rng.uniform(0.85, 1.15, 3) * rng.uniform(0.85, 1.1)
    return np.clip(image * gain, 0, 255).astype(np.uint8)


def _visible_objects(placed, size: int, min_area: float | None = None) -> list[SceneObject]:
    """Each object's footprint minus whatever was painted over it; objects mostly hidden, or smaller
    than `min_area` pixels (default: 12 pixels of a 256-pixel scene, scaled), are dropped."""
    objects = []
    frame = box(0, 0, size, size)
    if min_area is None:
        min_area = 12 * (size / REFERENCE_SIZE) ** 2
    for index, (kind, colour, shape) in enumerate(placed):
        later = [other for _, _, other in placed[index + 1 :] if other.intersects(shape)]
        visible = shape.intersection(frame)
        if later:
            visible = visible.difference(shapely.union_all(later))
        visible = visible.buffer(0)
        if visible.area < min_area or visible.area < 0.6 * shape.intersection(frame).area:
            continue
        objects.append(SceneObject(kind, colour, visible))
    return objects


# ---------------------------------------------------------------------------------------------
# referring phrases


@dataclass(frozen=True)
class _Cue:
    """One way of narrowing the candidates: a filter (colour, relation) or an extreme (size, position)."""

    name: str
    words: tuple[str, ...]  # word variants, chosen at rendering
    placement: str  # "adjective" (before the noun) or "suffix"


def _near_distance(size: int) -> float:
    return 10 * size / REFERENCE_SIZE


@dataclass(frozen=True)
class _PhraseRules:
    """What phrases of a scene may use: the "near" distance in pixels, position words (not in scenes
    cut into chips, where the scene's left is not the chip's), roof wordings for buildings."""

    near: float
    positions: bool = True
    roofs: bool = False


def _extreme(target: SceneObject, candidates: list[SceneObject], key, margin: float) -> bool:
    """True when target's key exceeds every other candidate's by `margin`."""
    others = [key(obj) for obj in candidates if obj is not target]
    return not others or key(target) - max(others) >= margin


EXTREMES = ("large", "small", "left", "right", "top", "bottom")


def _cue_options(
    target: SceneObject, objects: list[SceneObject], size: int, rules: _PhraseRules
) -> list[tuple[_Cue, object]]:
    """Cues that hold for the target, each with a function narrowing a candidate list.

    Filters (colour, relation) keep the candidates sharing the cue; extremes (size, position) return
    [target] when the target stands out among at least two candidates, else None (not applicable).
    """
    options: list[tuple[_Cue, object]] = []
    colour_words = tuple(COLOUR_WORDS.get(target.colour, [target.colour]))
    options.append(
        (
            _Cue("colour", colour_words, "adjective"),
            lambda cands: [o for o in cands if o.colour == target.colour],
        )
    )

    options.append((_Cue("large", SIZE_WORDS["large"], "adjective"), _size_extreme(target, larger=True)))
    options.append((_Cue("small", SIZE_WORDS["small"], "adjective"), _size_extreme(target, larger=False)))
    if rules.positions:
        options += _position_cues(target, size)
    options += _relation_cues(target, objects, rules.near)
    return options


def _size_extreme(target: SceneObject, larger: bool):
    def narrow(cands):
        others = [o.polygon.area for o in cands if o is not target]
        if not others:
            return None
        ok = target.polygon.area >= 1.8 * max(others) if larger else target.polygon.area <= 0.55 * min(others)
        return [target] if ok else None

    return narrow


def _position_cues(target: SceneObject, size: int) -> list[tuple[_Cue, object]]:
    """Position cues ("on the left" …): the target is the extreme one on its half, by a margin."""
    options: list[tuple[_Cue, object]] = []
    margin = 0.12 * size
    centre = target.polygon.centroid
    axes = {  # name → (key growing toward that side, is the target on that half, word variants)
        "left": (lambda o: -o.polygon.centroid.x, centre.x < size / 2, POSITION_WORDS["left"]),
        "right": (lambda o: o.polygon.centroid.x, centre.x > size / 2, POSITION_WORDS["right"]),
        "top": (lambda o: -o.polygon.centroid.y, centre.y < size / 2, POSITION_WORDS["top"]),
        "bottom": (lambda o: o.polygon.centroid.y, centre.y > size / 2, POSITION_WORDS["bottom"]),
    }
    for name, (key, on_half, words) in axes.items():
        if not on_half:
            continue

        def narrow(cands, key=key):
            if len(cands) < 2:
                return None
            return [target] if _extreme(target, cands, key, margin) else None

        options.append((_Cue(name, words, "suffix"), narrow))

    return options


def _relation_cues(target: SceneObject, objects: list[SceneObject], near: float) -> list[tuple[_Cue, object]]:
    """Relation cues ("near the river" …): a landmark of another kind, unique in the scene, within
    `near` pixels."""
    options: list[tuple[_Cue, object]] = []
    for landmark in objects:
        if landmark is target or landmark.kind not in LANDMARK_KINDS or landmark.kind == target.kind:
            continue
        if (
            sum(o.kind == landmark.kind for o in objects) != 1
            or target.polygon.distance(landmark.polygon) > near
        ):
            continue
        noun = NOUNS[landmark.kind][0]
        words = tuple(f"{prep} the {noun}" for prep in RELATION_WORDS)

        def narrow(cands, landmark=landmark):
            # Candidates within twice the distance count as "near" too, so the phrase stays unambiguous.
            return [o for o in cands if o.polygon.distance(landmark.polygon) <= 2 * near]

        options.append((_Cue(f"near-{landmark.kind}", words, "suffix"), narrow))
    return options


def _render(target: SceneObject, cues: list[_Cue], rng: np.random.Generator, roofs: bool = False) -> str:
    noun = str(rng.choice(NOUNS[target.kind]))
    leading, adjectives, suffixes = [], [], []
    for cue in cues:
        word = str(rng.choice(cue.words))
        if cue.placement == "adjective":
            (leading if cue.name in ("large", "small") else adjectives).append(word)
        elif word.endswith("most") and " " not in word:  # "leftmost" reads before the noun
            leading.append(word)
        else:
            suffixes.append(word)
    if roofs and target.kind == "building" and len(adjectives) == 1 and rng.random() < 0.4:
        # "the blue-roofed building", "the building with a blue roof"
        colour = adjectives.pop()
        if rng.random() < 0.5:
            adjectives.append(f"{colour}-roofed")
            noun = "building"
        else:
            noun = "building"
            suffixes.insert(0, f"with a {colour} roof")
    return " ".join(["the", *leading, *adjectives, noun, *suffixes])


def _describe(
    target: SceneObject,
    objects: list[SceneObject],
    size: int,
    rng: np.random.Generator,
    max_phrases: int,
    rules: _PhraseRules,
) -> list[str]:
    """Up to `max_phrases` distinct phrases that each pick out only the target among its kind, each
    using a minimal set of cues (dropping any cue would make it ambiguous) with at most one extreme."""
    same_kind = [obj for obj in objects if obj.kind == target.kind]
    options = _cue_options(target, objects, size, rules)

    def resolves(combo: tuple[int, ...]) -> bool:
        candidates = same_kind
        # Filters first (colour, relations), then the extreme among what is left.
        for i in sorted(combo, key=lambda i: options[i][0].name in EXTREMES):
            candidates = options[i][1](candidates)
            if candidates is None:
                return False
        return candidates == [target]

    combos: list[tuple[int, ...]] = [()] + [(i,) for i in range(len(options))]
    combos += [(i, j) for i in range(len(options)) for j in range(i + 1, len(options))]
    phrases: list[str] = []
    for combo_index in rng.permutation(len(combos)):
        combo = combos[combo_index]
        if sum(options[i][0].name in EXTREMES for i in combo) > 1 or not resolves(combo):
            continue
        if any(resolves(tuple(j for j in combo if j != i)) for i in combo):
            continue  # not minimal
        cues = [options[i][0] for i in combo]
        names = {cue.name for cue in cues}
        if "colour" not in names and (not cues or rng.random() < 0.3):
            cues = [options[0][0], *cues]  # a redundant colour now and then (and for "the <unique kind>")
        phrase = _render(target, cues, rng, rules.roofs)
        if phrase not in phrases:
            phrases.append(phrase)
        if len(phrases) >= max_phrases:
            break
    return phrases


# ---------------------------------------------------------------------------------------------
# writing


def write_region(scene: Scene, folder: str | Path, name: str | None = None) -> tuple[Path, Path]:
    """Write the scene as `<name>.tif` (3-band GeoTIFF: 8-bit, or 16-bit when the scene was recorded so)
    and `<name>.gpkg` (one polygon per object, with
    the `phrase` column holding its phrases joined by `|`, empty for objects without one, plus `kind`
    and `colour`). Both files are written to temporary names first, then moved into place."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = name or f"synthetic-{scene.seed}"
    raster_path, vector_path = folder / f"{name}.tif", folder / f"{name}.gpkg"
    _write_scene_raster(scene, folder, raster_path)
    _write_scene_objects(scene, folder / f".{name}.part.gpkg", vector_path)  # GDAL wants .gpkg
    return raster_path, vector_path


def _write_scene_raster(scene: Scene, folder: Path, raster_path: Path) -> None:
    fd, tmp_raster = tempfile.mkstemp(dir=folder, suffix=".tif.part")
    os.close(fd)
    try:
        profile = dict(
            driver="GTiff",
            width=scene.size,
            height=scene.size,
            count=3,
            dtype="uint8" if scene.raster is None else "uint16",
            crs=scene.crs,
            transform=scene.transform,
            compress="deflate",
        )
        with rasterio.open(tmp_raster, "w", **profile) as dataset:
            dataset.write(np.moveaxis(scene.image if scene.raster is None else scene.raster, -1, 0))
        os.replace(tmp_raster, raster_path)
    finally:
        if os.path.exists(tmp_raster):
            os.remove(tmp_raster)


def _write_scene_objects(scene: Scene, tmp_vector: Path, vector_path: Path) -> None:
    t = scene.transform
    map_geoms = [
        shapely.transform(
            obj.polygon,
            lambda xy: np.c_[t.a * xy[:, 0] + t.b * xy[:, 1] + t.c, t.d * xy[:, 0] + t.e * xy[:, 1] + t.f],
        )
        for obj in scene.objects
    ]
    map_geoms = [
        geom if geom.geom_type == "MultiPolygon" else shapely.MultiPolygon([geom]) for geom in map_geoms
    ]
    try:
        pyogrio.raw.write(
            str(tmp_vector),
            geometry=shapely.to_wkb(np.array(map_geoms, dtype=object)),
            field_data=[
                np.array([PHRASE_SEPARATOR.join(o.phrases) for o in scene.objects], dtype=object),
                np.array([o.kind for o in scene.objects], dtype=object),
                np.array([o.colour for o in scene.objects], dtype=object),
            ],
            fields=[TEXT_COLUMN, "kind", "colour"],
            layer="objects",
            driver="GPKG",
            geometry_type="MultiPolygon",
            crs=scene.crs,
        )
        os.replace(tmp_vector, vector_path)
    finally:
        if tmp_vector.exists():
            tmp_vector.unlink()
