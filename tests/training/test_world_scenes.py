"""The generator's world style and options: deterministic, object sizes follow the ground sampling
distance, every kind appears, 16-bit scenes read back through the region reader, and the classic
style's output for a seed is what it always was (the demo's sample scene depends on it)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import rasterio

from backend.bundled import DEMO_SCENE
from training.data.region import RegionConfig, RegionDataset
from training.data.scene_style import KINDS, WORLD
from training.data.synthetic import NOUNS, POSITION_WORDS, generate_scene, write_region


def test_world_scenes_are_deterministic_per_seed_and_style():
    a, b = generate_scene(4, size=96, style="world"), generate_scene(4, size=96, style="world")
    np.testing.assert_array_equal(a.image, b.image)
    assert a.gsd == b.gsd and [(o.kind, o.colour, o.phrases) for o in a.objects] == [
        (o.kind, o.colour, o.phrases) for o in b.objects
    ]
    assert not np.array_equal(a.image, generate_scene(5, size=96, style="world").image)
    # Another option, another scene from the same seed.
    plain = WORLD.replace(shadows=False, sensor_noise=(0.0, 0.0), blur=(0.0, 0.0))
    assert not np.array_equal(a.image, generate_scene(4, size=96, style=plain).image)


def test_classic_output_is_unchanged_the_demo_scene_regenerates_exactly():
    # The demo's sample scene: seed 3000031 of the classic land-cover generator (scripts/make_demo_model.py).
    scene = generate_scene(3_000_031, size=128, kinds=("field", "pond", "river", "road"))
    with rasterio.open(DEMO_SCENE) as dataset:
        np.testing.assert_array_equal(np.moveaxis(dataset.read(), 0, -1), scene.image)
        assert dataset.dtypes[0] == "uint8"


def _vehicle_lengths_m(gsd: float) -> list[float]:
    style = WORLD.replace(gsd_range=None, kind_weights={"vehicle": 3.0}, scene_types={"town": 1.0})
    lengths = []
    for seed in range(6):
        scene = generate_scene(seed, size=160, gsd=gsd, style=style, kinds=("vehicle",))
        for obj in scene.objects:
            rect = obj.polygon.minimum_rotated_rectangle
            x, y = rect.exterior.coords.xy
            sides = [np.hypot(x[i + 1] - x[i], y[i + 1] - y[i]) for i in range(2)]
            lengths.append(max(sides) * gsd)  # pixels × metres per pixel
    return lengths


@pytest.mark.parametrize("gsd", [0.25, 0.5])
def test_object_sizes_are_in_metres_so_pixels_follow_the_gsd(gsd):
    lengths = _vehicle_lengths_m(gsd)
    assert len(lengths) >= 5
    # Cars are 3.8–5.2 m long whatever the GSD: twice the pixels at half the GSD (a hidden part of a
    # car can only shorten it).
    assert 3.0 <= np.median(lengths) <= 5.3 and max(lengths) <= 5.3


def test_the_gsd_is_drawn_per_scene_within_the_styles_range():
    gsds = [generate_scene(seed, size=64, style="world").gsd for seed in range(12)]
    assert all(0.2 <= g <= 2.0 for g in gsds) and max(gsds) / min(gsds) > 2


def test_world_scenes_hold_every_kind_with_phrases_naming_it():
    seen: dict[str, int] = {}
    for seed in range(14):
        for obj in generate_scene(seed, size=160, style="world").referable:
            seen[obj.kind] = seen.get(obj.kind, 0) + 1
            for phrase in obj.phrases:
                assert any(re.search(rf"\b{noun}\b", phrase) for noun in NOUNS[obj.kind]), phrase
    assert set(seen) == set(KINDS), seen


def test_scenes_for_chips_have_no_position_words():
    style = WORLD.replace(position_words=False)
    words = [w for variants in POSITION_WORDS.values() for w in variants]
    phrases = [
        p for seed in range(10) for o in generate_scene(seed, 128, style=style).objects for p in o.phrases
    ]
    assert len(phrases) > 50
    assert not [p for p in phrases if any(f" {w}" in f" {p} " for w in words)]


def test_sixteen_bit_scenes_are_written_as_uint16_and_read_back_by_the_region_reader(tmp_path):
    style = WORLD.replace(sixteen_bit_share=1.0)
    scene = generate_scene(2, size=96, style=style)
    assert scene.raster is not None and scene.raster.dtype == np.uint16 and scene.raster.max() > 255
    raster, vector = write_region(scene, tmp_path)
    with rasterio.open(raster) as dataset:
        assert dataset.dtypes == ("uint16",) * 3
    dataset = RegionDataset(raster, vector, "all", RegionConfig(chip_size=96, whole_raster=True))
    sample = dataset[0]
    assert sample.image.dtype == np.uint8 and sample.image.shape == (96, 96, 3)
    # The reader's 2–98 % stretch recovers the scene (up to the sensor's curve): bright stays bright.
    brightness = sample.image.astype(float).mean(axis=2).ravel()
    assert np.corrcoef(brightness, scene.image.astype(float).mean(axis=2).ravel())[0, 1] > 0.9
    expected = [(p, scene.mask(o)) for o in scene.objects for p in o.phrases]
    for index, (phrase, mask) in enumerate(expected):
        assert dataset[index].phrase == phrase
        np.testing.assert_array_equal(dataset[index].mask, mask)
