"""How a synthetic scene looks: the generator's options, bundled as a `SceneStyle`, and the named styles.

`classic` is the generator as it was first written (object sizes relative to the scene, one look, 8-bit);
its output for a seed never changes (tests and the demo's sample scene depend on it). `world` is what
the bundled demo model trains on: every kind at real sizes in metres, so objects shrink and grow with a
ground sampling distance drawn per scene (0.2–2 m), town, village, farmland and water scenes with their
own mix of kinds, wider colour palettes, textures, sun shadows of any direction and length, sensor blur,
noise, haze and colour casts, and a share of 16-bit rasters. A style is a frozen dataclass: derive a
variant with `style.replace(...)` (e.g. the region benchmark's own palettes, sizes and proportions).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

RGB = tuple[int, int, int]

# The classic palette: kind → colour name → mean RGB; several colours per kind so colour words matter.
CLASSIC_PALETTE: dict[str, dict[str, RGB]] = {
    "field": {"green": (92, 140, 60), "yellow": (200, 180, 90), "brown": (140, 105, 70)},
    "pond": {"blue": (45, 85, 150), "dark": (35, 55, 70)},
    "river": {"blue": (50, 95, 155)},
    "road": {"grey": (128, 128, 128), "dark": (70, 70, 75), "dirt": (165, 135, 100)},
    "building": {
        "red": (175, 55, 45),
        "white": (225, 225, 220),
        "grey": (140, 140, 145),
        "blue": (60, 95, 175),
        "orange": (215, 130, 50),
    },
    "vehicle": {
        "red": (200, 40, 40),
        "white": (240, 240, 240),
        "black": (25, 25, 30),
        "blue": (40, 70, 200),
        "yellow": (230, 210, 40),
    },
    "tree": {"dark green": (30, 75, 35), "light green": (110, 170, 70), "orange": (205, 120, 40)},
}

# The world palette: the classic colours plus more of what aerial images show, and two more kinds.
WORLD_PALETTE: dict[str, dict[str, RGB]] = {
    "field": {
        **CLASSIC_PALETTE["field"],
        "light green": (150, 185, 95),
        "dark green": (55, 95, 45),
    },
    "pond": {**CLASSIC_PALETTE["pond"], "green": (70, 110, 80), "brown": (110, 95, 70)},
    "river": {**CLASSIC_PALETTE["river"], "brown": (125, 105, 75), "green": (65, 105, 90)},
    "road": {**CLASSIC_PALETTE["road"], "light": (185, 182, 175)},
    "building": {
        **CLASSIC_PALETTE["building"],
        "brown": (120, 80, 55),
        "green": (70, 125, 80),
        "black": (40, 40, 45),
        "yellow": (215, 195, 90),
    },
    "vehicle": {**CLASSIC_PALETTE["vehicle"], "silver": (175, 178, 185), "green": (35, 115, 55)},
    "tree": {**CLASSIC_PALETTE["tree"], "red": (160, 50, 40), "yellow": (200, 180, 50)},
    "court": {"green": (60, 130, 75), "blue": (50, 95, 160), "red": (165, 65, 55), "orange": (200, 110, 60)},
    "pool": {"blue": (40, 120, 200), "turquoise": (60, 180, 190)},
}
KINDS = tuple(WORLD_PALETTE)  # every kind any style can draw

# Real sizes in metres (world styles): ranges drawn per object.
WORLD_SIZES_M: dict[str, dict[str, tuple[float, float]]] = {
    "field": {"side": (45.0, 220.0)},
    "pond": {"radius": (6.0, 35.0)},
    "river": {"half_width": (5.0, 18.0)},
    "road": {"half_width": (3.0, 7.0)},
    "building": {"side": (7.0, 38.0), "height": (3.0, 14.0)},
    "vehicle": {"length": (3.8, 5.2), "width": (1.7, 2.1), "height": (1.4, 1.9)},
    "tree": {"radius": (1.5, 6.0), "height": (3.0, 14.0)},
    "court": {"length": (20.0, 36.0), "width": (10.0, 19.0)},
    "pool": {"length": (4.0, 14.0), "width": (3.0, 7.0)},
}

# Scene types (world styles): kind → objects per hectare (range, drawn per scene); river: chance per
# scene; road: roads per 100 m of scene side.
SCENE_TYPES: dict[str, dict[str, tuple[float, float]]] = {
    "farmland": {
        "field": (1.0, 5.0),
        "pond": (0.0, 0.6),
        "river": (0.3, 0.3),
        "road": (0.2, 0.6),
        "building": (0.3, 3.0),
        "vehicle": (0.2, 3.0),
        "tree": (3.0, 30.0),
        "court": (0.0, 0.05),
        "pool": (0.0, 0.3),
    },
    "village": {
        "field": (0.0, 1.0),
        "pond": (0.0, 0.8),
        "river": (0.15, 0.15),
        "road": (0.4, 1.0),
        "building": (6.0, 22.0),
        "vehicle": (4.0, 25.0),
        "tree": (10.0, 60.0),
        "court": (0.1, 1.0),
        "pool": (0.5, 5.0),
    },
    "town": {
        "field": (0.0, 0.2),
        "pond": (0.0, 0.4),
        "river": (0.1, 0.1),
        "road": (0.8, 1.6),
        "building": (15.0, 45.0),
        "vehicle": (15.0, 70.0),
        "tree": (2.0, 20.0),
        "court": (0.0, 0.8),
        "pool": (0.0, 1.5),
    },
    "water": {
        "field": (0.5, 2.0),
        "pond": (0.8, 4.0),
        "river": (0.7, 0.7),
        "road": (0.1, 0.5),
        "building": (0.0, 4.0),
        "vehicle": (0.0, 4.0),
        "tree": (5.0, 40.0),
        "court": (0.0, 0.1),
        "pool": (0.0, 0.5),
    },
}

# Ground colours (world styles): grass, dry grass, bare soil, paved/urban, sand.
GROUNDS: tuple[RGB, ...] = ((110, 130, 75), (150, 140, 100), (125, 105, 80), (135, 132, 125), (180, 165, 130))


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType({key: MappingProxyType(dict(value)) for key, value in mapping.items()})


@dataclass(frozen=True)
class SceneStyle:
    """The generator's options. `world=False` is the classic generator and ignores the rest."""

    name: str = "classic"
    world: bool = False
    gsd_range: tuple[float, float] | None = None  # metres per pixel, drawn log-uniformly per scene
    palette: Mapping[str, Mapping[str, RGB]] = field(default_factory=lambda: _frozen(CLASSIC_PALETTE))
    sizes: Mapping[str, Mapping[str, tuple[float, float]]] = field(
        default_factory=lambda: _frozen(WORLD_SIZES_M)
    )
    scene_types: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({"farmland": 1.0, "village": 1.0, "town": 1.0, "water": 0.6})
    )
    density_scale: tuple[float, float] = (0.5, 1.5)  # per-scene multiplier of every density
    kind_weights: Mapping[str, float] = field(default_factory=dict)  # per-kind density multiplier
    max_per_kind: int = 10
    texture: tuple[float, float] = (0.4, 1.4)  # per-scene strength of textures
    shadows: bool = True
    sensor_noise: tuple[float, float] = (1.0, 7.0)  # σ of per-pixel noise, 8-bit levels
    blur: tuple[float, float] = (0.0, 1.1)  # σ of the sensor's blur, pixels
    haze: tuple[float, float] = (0.0, 0.2)  # share of a bright haze colour mixed in
    colour_cast: float = 0.08  # per-channel gain drawn in 1 ± this (colours stay what they are called)
    sixteen_bit_share: float = 0.0  # share of scenes written as 16-bit rasters
    min_pixels: float = 12.0  # objects with less visible area get no phrase
    near_m: float = 12.0  # "near"/"beside" distance, metres
    roof_phrasing: bool = True  # "the blue-roofed building", "the building with a blue roof"
    position_words: bool = True  # False for scenes cut into chips (positions are the scene's)

    def replace(self, **changes: Any) -> SceneStyle:
        return dataclasses.replace(self, **changes)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self.palette)


CLASSIC = SceneStyle()
WORLD = SceneStyle(
    name="world",
    world=True,
    gsd_range=(0.2, 2.0),
    palette=_frozen(WORLD_PALETTE),
    sixteen_bit_share=0.25,
)
STYLES: dict[str, SceneStyle] = {"classic": CLASSIC, "world": WORLD}


def get_style(style: SceneStyle | str | None) -> SceneStyle:
    if style is None:
        return CLASSIC
    if isinstance(style, SceneStyle):
        return style
    if style not in STYLES:
        raise KeyError(f"unknown scene style {style!r}; known: {', '.join(STYLES)}")
    return STYLES[style]
