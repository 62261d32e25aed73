"""The small-region recipe: what it chooses and why (recipe, validation or none with a warning, steps
from the number of labels), its chips (many per label, native/window/context views, negatives) and its
photometric changes that keep colour words true; end to end through `rs2sam2 train`."""

from __future__ import annotations

import colorsys

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from affine import Affine

from backend.cli import main as rs2sam2
from backend.errors import UserError
from training.augment import AugmentConfig, augment, photometric
from training.config import TrainConfig
from training.data.kinds import phrase_kind
from training.data.region import RegionConfig, RegionDataset
from training.data.scene_style import CLASSIC_PALETTE, WORLD_PALETTE
from training.recipe import RunData, choose_recipe, choose_steps, open_run_data

CRS = "EPSG:32633"
KIND_NOUNS = ("car", "building", "pond")


def write_region(folder, count: int, side: int = 256, seed: int = 0):
    """A uint8 raster (1 m pixels) and `count` 6×6-pixel labelled squares: "the <colour> <noun> k"."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    transform = Affine(1.0, 0, 500_000.0, 0, -1.0, 5_000_000.0)
    raster = folder / "region.tif"
    with rasterio.open(
        raster,
        "w",
        driver="GTiff",
        width=side,
        height=side,
        count=3,
        dtype="uint8",
        crs=CRS,
        transform=transform,
    ) as dataset:
        dataset.write(rng.integers(0, 255, (3, side, side), dtype=np.uint8))
    cols, rows = rng.integers(4, side - 10, count), rng.integers(4, side - 10, count)
    boxes = [shapely.box(*(transform * (c, r + 6)), *(transform * (c + 6, r))) for c, r in zip(cols, rows)]
    phrases = [f"the red {KIND_NOUNS[k % 3]} {k}" for k in range(count)]
    vector = folder / "labels.gpkg"
    pyogrio.raw.write(
        str(vector),
        geometry=shapely.to_wkb(np.array(boxes, dtype=object)),
        field_data=[np.array(phrases, dtype=object)],
        fields=["description"],
        crs=CRS,
        geometry_type="Polygon",
    )
    return raster, vector


def config_for(raster, vector, out, **changes) -> TrainConfig:
    return TrainConfig(
        data=(f"region:{raster},{vector},description",), preset="test", out=str(out), **changes
    )


def test_auto_picks_the_small_region_recipe_for_few_labels_only():
    config = TrainConfig(data=("region:a.tif,b.gpkg",), preset="test", out="x")
    assert choose_recipe(config, 45)[0] == "small-region"
    assert choose_recipe(config, 501)[0] == "standard"
    assert choose_recipe(config, None)[0] == "standard"  # not only regions (e.g. synthetic, RRSIS-D)
    assert choose_recipe(config.replace(recipe="standard"), 45) == ("standard", "asked for with --recipe")


def test_a_region_too_small_to_hold_out_a_val_split_trains_on_every_label_and_warns(tmp_path):
    raster, vector = write_region(tmp_path / "small", 12)
    data = open_run_data(config_for(raster, vector, tmp_path / "run"), 32, tmp_path / "cache")
    assert data.recipe == "small-region" and data.val is None and data.labels == 12
    assert len(data.train) == 12 * 8  # every label, 8 chips each per epoch (--chips-per-feature)
    assert any("validation: none" in note for note in data.notes)
    assert data.warnings and "too small to hold out a validation split" in data.warnings[0]
    assert data.photometric_prob == 0.8


def test_a_region_with_enough_labels_in_its_val_blocks_holds_them_out(tmp_path):
    raster, vector = write_region(tmp_path / "large", 200, side=1536)  # 9 blocks of 512 px
    config = config_for(raster, vector, tmp_path / "run")
    data = open_run_data(config, 32, tmp_path / "cache")
    assert data.recipe == "small-region" and data.val is not None and not data.warnings
    # Whole blocks are held out until at least 30 phrases are, never more than a quarter of the labels.
    assert 30 <= len(data.val) <= 50 and len(data.train) == (200 - len(data.val)) * 8
    assert any(f"spatial blocks holding {len(data.val)} of the 200" in note for note in data.notes)
    # A region that would have to give more than a quarter of its labels holds out none.
    assert open_run_data(config.replace(min_val_samples=60), 32, tmp_path / "cache").val is None


def test_the_step_count_follows_the_number_of_labels_unless_given(tmp_path):
    raster, vector = write_region(tmp_path / "r", 30)
    config = config_for(raster, vector, tmp_path / "run")
    data = open_run_data(config, 32, tmp_path / "cache")
    assert choose_steps(config, data, 10) == (1200, "40 per labelled training phrase × 30")
    assert choose_steps(config.replace(steps_per_label=5), data, 10)[0] == 500  # the floor
    assert choose_steps(config.replace(steps_per_label=500), data, 10)[0] == 6000  # the ceiling
    assert choose_steps(config.replace(max_steps=77), data, 10) == (77, "--max-steps")
    assert choose_steps(config.replace(epochs=3), data, 10)[0] == 30
    standard = RunData("standard", data.train, None, 30, 0.0)
    with pytest.raises(UserError, match="give --max-steps or --epochs"):
        choose_steps(config.replace(recipe="standard"), standard, 10)


def _chips(raster, vector, **changes):
    config = RegionConfig(chip_size=32, text_column="description", **changes)
    return RegionDataset(raster, vector, "all", config, random_chips=True)


def test_many_chips_per_label_each_drawn_anew(tmp_path):
    raster, vector = write_region(tmp_path, 6)
    dataset = _chips(raster, vector, chips_per_feature=4)
    assert len(dataset) == 24 and dataset.phrase_count == 6
    images = [dataset[i].image for i in range(4)]  # label 0's four chips of this epoch
    assert {dataset[i].phrase for i in range(4)} == {"the red car 0"}
    assert all(not np.array_equal(images[0], other) for other in images[1:])
    assert all(dataset[i].mask.any() for i in range(len(dataset)))  # no negatives asked for


def test_negatives_are_chips_around_another_object_of_the_phrases_kind(tmp_path):
    raster, vector = write_region(tmp_path, 9)
    dataset = _chips(raster, vector, chips_per_feature=8, negative_share=0.5)
    empty = [i for i in range(len(dataset)) if not dataset[i].mask.any()]
    assert 0.25 * len(dataset) <= len(empty) <= 0.6 * len(dataset)
    # A negative chip is centred on another object of the same kind (cars among cars): its pixels are
    # those of another car's chip, never of a building's or pond's.
    sample = dataset[empty[0]]
    label = int(sample.phrase.split()[-1])
    assert phrase_kind(sample.phrase) == KIND_NOUNS[label % 3].replace("car", "vehicle")


def test_native_chips_keep_the_rasters_resolution_and_context_chips_scale(tmp_path):
    raster, vector = write_region(tmp_path, 4)
    native = _chips(raster, vector, views=("native",), gsd_jitter=(1.0, 1.0), chips_per_feature=6)
    context = _chips(raster, vector, views=("context",), context=(1.5, 1.5), min_chip_fraction=0.1)
    # A 6×6-pixel square: at most 36 chip pixels in a 1:1 native chip (fewer when the chip cuts it);
    # a context chip of 1.5 × 6 = 9 raster pixels scaled to 32 makes it about 12× larger.
    areas = [native[i].mask.sum() for i in range(len(native))]
    assert max(areas) <= 49 and np.median(areas) >= 20
    assert context[0].mask.sum() > 300
    # zoom: as native, at twice the scale (the engine's search for objects too small for its view)
    zoom = _chips(raster, vector, views=("zoom",), gsd_jitter=(1.0, 1.0), chips_per_feature=6)
    zoomed = [zoom[i].mask.sum() for i in range(len(zoom))]
    assert max(zoomed) <= 4 * 49 and np.median(zoomed) >= 4 * 20


@pytest.mark.parametrize("palette", [CLASSIC_PALETTE, WORLD_PALETTE])
def test_photometric_changes_keep_every_colour_word_true(palette):
    config = AugmentConfig(photometric_prob=1.0)
    for kind, colours in palette.items():
        for name, rgb in colours.items():
            patch = np.empty((24, 24, 3), np.uint8)
            patch[:] = rgb
            hue = colorsys.rgb_to_hsv(*(np.array(rgb) / 255))[0]
            for seed in range(40):
                out = photometric(patch, np.random.default_rng(seed), config).reshape(-1, 3).astype(int)
                mean = out.mean(axis=0)
                # At every pixel the bands keep their order: the dominant band stays dominant.
                order = np.argsort(rgb, kind="stable")
                assert (np.diff(out[:, order], axis=1) >= 0).all(), (kind, name, seed)
                if max(rgb) - min(rgb) >= 40 and max(mean) < 250:  # a clearly coloured patch
                    new_hue = colorsys.rgb_to_hsv(*(mean / 255))[0]
                    assert min(abs(new_hue - hue), 1 - abs(new_hue - hue)) < 0.06, (kind, name, seed)


def test_photometric_augmentation_keeps_the_phrase_and_the_mask():
    image = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    mask = np.zeros((16, 16), bool)
    mask[2:6, 2:6] = True
    config = AugmentConfig(geometric_prob=0.0, black_box_prob=0.0, photometric_prob=1.0)
    out, same_mask, phrase = augment(image, mask, "the yellow car", np.random.default_rng(3), config)
    assert phrase == "the yellow car" and np.array_equal(same_mask, mask) and not np.array_equal(out, image)


@pytest.mark.parametrize(
    "phrase,kind",
    [
        ("the blue-roofed building", "building"),
        ("the yellow car", "vehicle"),
        ("the building beside the pond", "building"),
        ("the house with a red roof", "building"),
        ("the dark lake", "pond"),
        ("the green tennis court", "court"),
        ("the swimming pools near the road", "pool"),
        ("the big crop field", "field"),
        ("the parking lot", "lot"),
    ],
)
def test_the_kind_of_a_phrase_is_its_head_noun(phrase, kind):
    assert phrase_kind(phrase) == kind


def test_rs2sam2_train_on_a_small_region_says_what_it_chose_and_why(tmp_path, capsys):
    raster, vector = write_region(tmp_path / "mine", 12)
    out = tmp_path / "run"
    code = rs2sam2(
        ["train", "--data", f"region:{raster},{vector},description", "--preset", "test", "--out", str(out)]
        + ["--device", "cpu", "--no-progress", "--batch-size", "2", "--chips-per-feature", "2"]
        + ["--steps-per-label", "1", "--auto-steps-min", "2", "--auto-steps-max", "3"]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "recipe: small-region (the training regions hold 12 labelled phrases (≤ 500))" in err
    assert "validation: none" in err and "too small to hold out a validation split" in err
    assert "steps: 3 (1 per labelled training phrase × 12, kept within 2–3)" in err
    assert (out / "final.safetensors").exists() and not (out / "best.safetensors").exists()
    assert not (out / "val_log.csv").read_text().splitlines()[1:]  # no validation rows
