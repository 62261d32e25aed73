"""The synthetic scene generator and its round trip through the region reader."""

from __future__ import annotations

import re

import numpy as np
import pyogrio
import rasterio

from training.data.region import RegionConfig, RegionDataset
from training.data.synthetic import NOUNS, generate_scene, write_region


def test_scenes_are_deterministic_per_seed_and_differ_across_seeds():
    a, b, c = generate_scene(7, size=128), generate_scene(7, size=128), generate_scene(8, size=128)
    np.testing.assert_array_equal(a.image, b.image)
    assert [o.phrases for o in a.objects] == [o.phrases for o in b.objects]
    assert not np.array_equal(a.image, c.image)
    assert a.image.shape == (128, 128, 3) and a.image.dtype == np.uint8


def test_visible_footprints_do_not_overlap_and_every_phrase_names_its_kind():
    for seed in range(5):
        scene = generate_scene(seed, size=128)
        cover = np.zeros((128, 128), int)
        for obj in scene.objects:
            cover += scene.mask(obj)
            for phrase in obj.phrases:
                assert any(re.search(rf"\b{noun}\b", phrase) for noun in NOUNS[obj.kind]), phrase
        assert cover.max() <= 1
        phrases = [p for obj in scene.objects for p in obj.phrases]
        assert len(phrases) == len(set(phrases))  # a phrase never names two objects


def test_phrases_need_colour_size_position_and_relations():
    cues = {
        "colour": r"\b(red|white|grey|gray|blue|orange|black|yellow|green|brown|dark|dirt|unpaved)\b",
        "size": r"\b(large|big|largest|biggest|small|smallest|little)\b",
        "position": r"\b(left|right|top|bottom|leftmost|rightmost|topmost|bottommost)\b",
        "relation": r"\b(next to|near|beside) the\b",
    }
    phrases = [p for seed in range(20) for obj in generate_scene(seed, size=128).objects for p in obj.phrases]
    shares = {name: np.mean([bool(re.search(pattern, p)) for p in phrases]) for name, pattern in cues.items()}
    assert len(phrases) > 200
    for name, share in shares.items():
        assert share > 0.03, (name, shares)
    # Colour alone must not decide everything: many phrases carry no colour word at all.
    assert shares["colour"] < 0.9


def test_written_region_reads_back_with_exact_masks_and_georeferencing(tmp_path):
    scene = generate_scene(3, size=128, gsd=0.5, crs="EPSG:32631", origin=(400_000.0, 5_600_000.0))
    raster, vector = write_region(scene, tmp_path)
    with rasterio.open(raster) as dataset:
        assert (
            dataset.crs.to_epsg() == 32631 and dataset.transform.c == 400_000.0 and dataset.res == (0.5, 0.5)
        )
    info = pyogrio.read_info(vector)
    assert info["features"] == len(scene.objects) and "phrase" in list(info["fields"])
    dataset = RegionDataset(raster, vector, "all", RegionConfig(chip_size=128, whole_raster=True))
    expected = [(p, scene.mask(o)) for o in scene.objects for p in o.phrases]
    assert len(dataset) == len(expected)
    for index, (phrase, mask) in enumerate(expected):
        sample = dataset[index]
        assert sample.phrase == phrase
        np.testing.assert_array_equal(sample.mask, mask)
    np.testing.assert_array_equal(dataset[0].image, scene.image)
    assert not list(tmp_path.glob("*.part*"))  # temporary files are gone


def test_phrase_cues_name_what_a_phrase_needs_besides_kind_and_colour(monkeypatch):
    from training.data import synthetic
    from training.data.synthetic import phrase_cues

    assert phrase_cues("the dark lake") == ()
    assert phrase_cues("the leftmost grey road") == ("position",)
    assert phrase_cues("the biggest field beside the river") == ("size", "relation")
    assert phrase_cues("the car at the bottom near the road") == ("position", "relation")
    assert phrase_cues("the topmost red house") == ("position",)
    # Every generated phrase is classified by the cues the generator built it from.
    built: dict[str, tuple[str, ...]] = {}
    render = synthetic._render

    def recording_render(target, cues, rng, *style):
        phrase = render(target, cues, rng, *style)
        names = {cue.name for cue in cues}
        built[phrase] = tuple(
            kind
            for kind, present in (
                ("size", bool(names & {"large", "small"})),
                ("position", bool(names & {"left", "right", "top", "bottom"})),
                ("relation", any(name.startswith("near-") for name in names)),
            )
            if present
        )
        return phrase

    monkeypatch.setattr(synthetic, "_render", recording_render)
    for seed in range(5):
        generate_scene(seed, size=256)
    assert {cues for cues in built.values()} >= {(), ("size",), ("position",), ("relation",)}
    assert {phrase: phrase_cues(phrase) for phrase in built} == built
