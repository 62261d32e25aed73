"""Augmentations keep the phrase true: the geometry and the words move together."""

from __future__ import annotations

import numpy as np
import pytest

from training.augment import AugmentConfig, apply_transform, augment, rewrite_phrase


@pytest.mark.parametrize(
    "transform,phrase,expected",
    [
        ("hflip", "the car on the left", "the car on the right"),
        ("hflip", "the leftmost building at the top", "the rightmost building at the top"),
        ("vflip", "the tree in the upper left corner", "the tree in the lower left corner"),
        ("vflip", "the pond above the road", "the pond below the road"),
        ("rot90", "the house at the top", "the house at the left"),
        ("rot90", "the car on the left", "the car on the bottom"),
        ("rot270", "the car on the left", "the car on the top"),
        ("rot180", "The building in the bottom right", "The building in the top left"),
        ("rot90", "the horizontal road", "the vertical road"),
        ("hflip", "the horizontal road", "the horizontal road"),
        (
            "hflip",
            "the car right next to the house on the left",
            "the car right next to the house on the right",
        ),
        (
            "vflip",
            "the tank on top of the building at the top",
            "the tank on top of the building at the bottom",
        ),
        ("rot90", "the red roof", "the red roof"),
    ],
)
def test_rewrites(transform, phrase, expected):
    assert rewrite_phrase(phrase, transform) == expected


@pytest.mark.parametrize(
    "transform,phrase",
    [
        ("rot90", "the pond above the road"),  # no word for "above" turned sideways
        ("rot90", "the upper building"),
        ("hflip", "the northwest field"),
    ],
)
def test_unsafe_rewrites_are_refused(transform, phrase):
    assert rewrite_phrase(phrase, transform) is None


def test_image_and_mask_move_like_the_words():
    image = np.zeros((6, 8, 3), np.uint8)
    mask = np.zeros((6, 8), bool)
    mask[0:2, 0:2] = True  # top left
    for transform, corner in [("hflip", (0, 7)), ("vflip", (5, 0)), ("rot90", (7, 0)), ("rot270", (0, 5))]:
        moved = apply_transform(mask, transform)
        assert moved[corner] and moved.sum() == 4
        assert apply_transform(image, transform).shape[:2] == moved.shape
    # rot90: "top left" becomes bottom left — the phrase says so too.
    assert rewrite_phrase("the object in the top left", "rot90") == "the object in the left bottom"


def test_black_boxes_cover_the_image_but_not_the_mask():
    rng = np.random.default_rng(0)
    image = np.full((64, 64, 3), 200, np.uint8)
    mask = np.ones((64, 64), bool)
    config = AugmentConfig(geometric_prob=0.0, black_box_prob=1.0)
    boxed, same_mask, phrase = augment(image, mask, "the field", rng, config)
    assert phrase == "the field" and same_mask.all() and (image == 200).all()  # input untouched
    black = (boxed == 0).all(axis=2)
    assert 4 <= black.sum() <= 60 * 4  # 20–60 boxes of 2×2 pixels at 64 px (32/1024 · 64), overlaps allowed
    assert np.array_equal(black, black & ~(boxed == 200).all(axis=2))


def test_augment_is_deterministic_per_generator():
    image = np.random.default_rng(1).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    mask = np.zeros((16, 16), bool)
    mask[:4, :4] = True
    config = AugmentConfig(geometric_prob=1.0, black_box_prob=0.5)
    a = augment(image, mask, "the car on the left", np.random.default_rng(5), config)
    b = augment(image, mask, "the car on the left", np.random.default_rng(5), config)
    assert a[2] == b[2] and np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    # Whatever transform was drawn, the phrase still tells where the object is.
    for seed in range(30):
        _, moved, phrase = augment(image, mask, "the car on the left", np.random.default_rng(seed), config)
        rows, cols = np.nonzero(moved)
        side = phrase.split()[-1]
        centre = {
            "left": cols.mean() < 8,
            "right": cols.mean() > 8,
            "top": rows.mean() < 8,
            "bottom": rows.mean() > 8,
        }
        assert centre[side], (seed, phrase)
