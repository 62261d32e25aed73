"""RRSIS-D and RefSegRS readers on folders written in the exact public layouts."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from backend.errors import UserError
from tests.training.dataset_fixtures import uncompressed_rle, write_refsegrs, write_rrsisd
from training.data.refsegrs import RefSegRSDataset, read_phrase_file
from training.data.rrsisd import RRSISDDataset, decode_segmentation


@pytest.fixture(scope="module")
def rrsisd(tmp_path_factory):
    root = tmp_path_factory.mktemp("refer_data")
    return root, write_rrsisd(root)


@pytest.fixture(scope="module")
def refsegrs(tmp_path_factory):
    root = tmp_path_factory.mktemp("RefSegRS")
    return root, write_refsegrs(root)


@pytest.mark.parametrize("split,count", [("train", 4), ("val", 1), ("test", 3)])
def test_rrsisd_split_has_one_sample_per_sentence_with_exact_masks(rrsisd, split, count):
    root, expected = rrsisd
    dataset = RRSISDDataset(root, split)
    assert len(dataset) == count == len(expected[split])
    for index, (phrase, mask) in enumerate(expected[split]):
        sample = dataset[index]
        assert sample.phrase == phrase
        assert sample.image.shape == (32, 32, 3) and sample.image.dtype == np.uint8
        np.testing.assert_array_equal(sample.mask, mask)


def test_rrsisd_polygon_parts_are_merged(rrsisd):
    root, _ = rrsisd
    dataset = RRSISDDataset(root, "train")
    sample = next(dataset[i] for i in range(len(dataset)) if dataset[i].phrase == "the two roofs")
    assert sample.mask.sum() == 4 * 6 + 5 * 2  # both rectangles
    assert sample.mask[2:6, 3:9].all() and sample.mask[20:25, 10:12].all()


def test_rrsisd_sentences_of_one_image_are_adjacent_and_ids_unique(rrsisd):
    root, _ = rrsisd
    dataset = RRSISDDataset(root, "train")
    image_ids = [dataset[i].image_id for i in range(len(dataset))]
    assert image_ids == sorted(image_ids, key=int)
    assert len({dataset[i].sample_id for i in range(len(dataset))}) == len(dataset)


def test_rrsisd_accepts_the_rrsisd_folder_itself(rrsisd):
    root, _ = rrsisd
    assert len(RRSISDDataset(root / "rrsisd", "val")) == 1


def test_rrsisd_wrong_layout_is_a_user_error(tmp_path):
    (tmp_path / "rrsisd").mkdir()
    with pytest.raises(UserError, match="not an RRSIS-D folder"):
        RRSISDDataset(tmp_path, "train")


def test_rrsisd_refuses_pickled_objects(tmp_path, rrsisd):
    import shutil

    root, _ = rrsisd
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    with open(copy / "rrsisd" / "refs(unc).p", "wb") as handle:
        pickle.dump([{"split": "train", "when": __import__("datetime").date(2020, 1, 1)}], handle)
    with pytest.raises(UserError, match="only plain data"):
        RRSISDDataset(copy, "train")


def test_uncompressed_and_compressed_rle_decode_to_the_same_mask():
    from pycocotools import mask as coco_mask

    rng = np.random.default_rng(4)
    mask = rng.random((9, 13)) > 0.6
    compressed = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    np.testing.assert_array_equal(decode_segmentation(uncompressed_rle(mask), 9, 13), mask)
    np.testing.assert_array_equal(decode_segmentation(compressed, 9, 13), mask)


@pytest.mark.parametrize("split,count", [("train", 3), ("val", 1), ("test", 2)])
def test_refsegrs_split_counts_and_masks_above_50(refsegrs, split, count):
    root, expected = refsegrs
    dataset = RefSegRSDataset(root, split)
    assert len(dataset) == count
    for index, (phrase, mask) in enumerate(expected[split]):
        sample = dataset[index]
        assert sample.phrase == phrase
        np.testing.assert_array_equal(sample.mask, mask)
        assert sample.image.shape == (24, 24, 3)


def test_refsegrs_phrase_file_keeps_everything_after_the_first_space(tmp_path):
    path = tmp_path / "output_phrase_train.txt"
    path.write_text("12 the road  next to the  river\n\n7 car\r\n3\tthe white roof\n")
    assert read_phrase_file(path) == [
        ("12", "the road  next to the  river"),
        ("7", "car"),
        ("3", "the white roof"),
    ]


def test_refsegrs_missing_folder_or_empty_split_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not a RefSegRS folder"):
        RefSegRSDataset(tmp_path, "train")
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    (empty / "output_phrase_test.txt").write_text("\n")
    with pytest.raises(UserError, match="empty"):
        RefSegRSDataset(empty, "test")


def test_without_pycocotools_rrsisd_says_what_to_install(monkeypatch):
    """The backend the QGIS plugin installs has no pycocotools (it trains on regions): reading RRSIS-D
    there is one sentence, and nothing else of the training package needs it."""
    import sys

    monkeypatch.setitem(sys.modules, "pycocotools", None)  # import fails as if not installed
    with pytest.raises(UserError, match="reading RRSIS-D needs pycocotools"):
        decode_segmentation([[0, 0, 4, 0, 4, 4]], 8, 8)
