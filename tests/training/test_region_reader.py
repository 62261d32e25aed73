"""Custom-region reader: real GeoTIFFs and vector files (GeoPackage, Shapefile, GeoJSON) in several CRSs."""

from __future__ import annotations

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer

from backend.errors import UserError
from training.data.region import RegionConfig, RegionDataset

ORIGIN = (500_000.0, 5_000_064.0)
RASTER_CRS = "EPSG:32633"
TRANSFORM = Affine(1.0, 0, ORIGIN[0], 0, -1.0, ORIGIN[1])
# (col0, row0, col1, row1) pixel boxes, half-open, with their phrases.
BOXES = [
    ((4, 4, 12, 10), "the red roof|the building in the corner"),
    ((40, 30, 50, 44), "the pond"),
    ((20, 50, 26, 56), None),
    ((50, 2, 60, 8), "  |the car| "),
]


def pixel_box_polygon(col0, row0, col1, row1):
    (x0, y0), (x1, y1) = TRANSFORM @ (col0, row0), TRANSFORM @ (col1, row1)
    return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def write_raster(path, size=64, dtype="uint8"):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 200, (4, size, size)).astype(dtype)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=4,
        dtype=dtype,
        crs=RASTER_CRS,
        transform=TRANSFORM,
    ) as dataset:
        dataset.write(data)
    return data


def write_vector(path, crs, boxes=BOXES, column="phrase", driver=None):
    geometries = [pixel_box_polygon(*b) for b, _ in boxes]
    if crs != RASTER_CRS:
        transformer = Transformer.from_crs(RASTER_CRS, crs, always_xy=True)
        geometries = [
            shapely.transform(g.segmentize(0.5), lambda xy: np.c_[transformer.transform(xy[:, 0], xy[:, 1])])
            for g in geometries
        ]
    texts = np.array([text for _, text in boxes], dtype=object)
    pyogrio.raw.write(
        str(path),
        geometry=shapely.to_wkb(np.array(geometries, dtype=object)),
        field_data=[texts],
        fields=[column],
        crs=crs,
        geometry_type="Polygon",
        driver=driver,
    )
    return path


def expected_mask(col0, row0, col1, row1, size=64):
    mask = np.zeros((size, size), bool)
    mask[row0:row1, col0:col1] = True
    return mask


@pytest.mark.parametrize(
    "suffix,crs", [(".gpkg", RASTER_CRS), (".shp", "EPSG:3857"), (".geojson", "EPSG:4326")]
)
def test_whole_raster_masks_are_exact_in_any_vector_crs_and_format(tmp_path, suffix, crs):
    raster = tmp_path / "scene.tif"
    data = write_raster(raster)
    vector = write_vector(tmp_path / f"labels{suffix}", crs)
    dataset = RegionDataset(raster, vector, "all", RegionConfig(chip_size=64, whole_raster=True))
    # Features without a phrase are skipped; empty parts of "a|b" lists too.
    assert [dataset[i].phrase for i in range(len(dataset))] == [
        "the red roof",
        "the building in the corner",
        "the pond",
        "the car",
    ]
    expectations = [BOXES[0][0], BOXES[0][0], BOXES[1][0], BOXES[3][0]]
    for index, box in enumerate(expectations):
        sample = dataset[index]
        np.testing.assert_array_equal(sample.mask, expected_mask(*box))
        np.testing.assert_array_equal(sample.image, np.moveaxis(data[:3], 0, -1))


def test_text_column_is_configurable_and_missing_column_is_named(tmp_path):
    raster = tmp_path / "scene.tif"
    write_raster(raster)
    vector = write_vector(tmp_path / "labels.gpkg", RASTER_CRS, column="descr")
    assert len(RegionDataset(raster, vector, "all", RegionConfig(text_column="descr"))) == 4
    with pytest.raises(UserError, match="no text column 'phrase'.*descr"):
        RegionDataset(raster, vector, "all")


def test_polygons_outside_the_raster_are_a_user_error(tmp_path):
    raster = tmp_path / "scene.tif"
    write_raster(raster)
    vector = write_vector(
        tmp_path / "labels.gpkg", RASTER_CRS, boxes=[*BOXES, ((100, 100, 110, 110), "far away")]
    )
    with pytest.raises(UserError, match="1 of 4 labelled features .* outside the raster"):
        RegionDataset(raster, vector, "all")


def test_chips_contain_the_whole_feature_and_vary_per_epoch_only_in_training(tmp_path):
    raster = tmp_path / "scene.tif"
    write_raster(raster)
    vector = write_vector(tmp_path / "labels.gpkg", RASTER_CRS)
    config = RegionConfig(chip_size=32, context=(1.5, 2.5), min_chip_fraction=0.1)
    train = RegionDataset(raster, vector, "all", config, random_chips=True)
    pond = 2  # sample index of "the pond": a 10×14 pixel feature
    first = train[pond]
    assert first.mask.shape == (32, 32) and first.image.shape == (32, 32, 3)
    # The chip side is 1.5–2.5 × the 14-pixel extent, resampled to 32 pixels: the feature covers
    # 10×14 source pixels → between (32/35)² and (32/21)² times that many chip pixels, never cut off.
    assert 140 * (32 / 35) ** 2 * 0.8 <= first.mask.sum() <= 140 * (32 / 21) ** 2 * 1.2
    assert (
        not first.mask[0].any()
        and not first.mask[-1].any()
        and not first.mask[:, 0].any()
        and not first.mask[:, -1].any()
    )
    np.testing.assert_array_equal(train[pond].image, first.image)  # same epoch → same chip
    train.set_epoch(1)
    assert not np.array_equal(train[pond].image, first.image)
    # Evaluation chips (the default for "all" and "val") are centred and the same every epoch.
    fixed = RegionDataset(raster, vector, "all", config)
    chip = fixed[pond]
    fixed.set_epoch(1)
    np.testing.assert_array_equal(fixed[pond].image, chip.image)
    rows, cols = np.nonzero(chip.mask)
    assert abs((rows.min() + rows.max()) / 2 - 15.5) <= 1 and abs((cols.min() + cols.max()) / 2 - 15.5) <= 1


def test_target_gsd_sets_the_chip_scale(tmp_path):
    raster = tmp_path / "scene.tif"
    write_raster(raster)
    vector = write_vector(tmp_path / "labels.gpkg", RASTER_CRS)
    # 2 map units per output pixel on a 1-unit raster: the 10×14 pond covers 5×7 chip pixels.
    dataset = RegionDataset(
        raster,
        vector,
        "all",
        RegionConfig(chip_size=32, target_gsd=2.0, gsd_jitter=(1.0, 1.0)),
        random_chips=True,
    )  # a random offset: no pixel centre on the pond's edges
    assert dataset[2].mask.sum() == 35


def test_spatial_split_puts_whole_blocks_in_train_or_val(tmp_path):
    raster = tmp_path / "scene.tif"
    write_raster(raster, size=128)
    rng = np.random.default_rng(3)
    boxes = []
    for k in range(40):
        col, row = rng.integers(0, 120, 2)
        boxes.append(((int(col), int(row), int(col) + 4, int(row) + 4), f"object {k}"))
    vector = write_vector(tmp_path / "labels.gpkg", RASTER_CRS, boxes=boxes)
    config = RegionConfig(chip_size=16, block_pixels=32, val_fraction=0.25, seed=5)
    train = RegionDataset(raster, vector, "train", config)
    val = RegionDataset(raster, vector, "val", config)
    train_phrases = {train._samples[i][1] for i in range(len(train))}
    val_phrases = {val._samples[i][1] for i in range(len(val))}
    assert len(train) + len(val) == 40 and not train_phrases & val_phrases and val_phrases
    block = {text: ((b[0] + 2) // 32, (b[1] + 2) // 32) for b, text in boxes}
    assert not {block[p] for p in train_phrases} & {block[p] for p in val_phrases}


def test_non_uint8_rasters_are_stretched_to_bytes(tmp_path):
    raster = tmp_path / "scene16.tif"
    write_raster(raster, dtype="uint16")
    vector = write_vector(tmp_path / "labels.gpkg", RASTER_CRS)
    sample = RegionDataset(raster, vector, "all", RegionConfig(chip_size=64, whole_raster=True))[0]
    assert sample.image.dtype == np.uint8 and sample.image.max() == 255 and sample.image.min() == 0
