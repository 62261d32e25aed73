"""Engine geometry checked exactly with the colour stand-in model (translation-consistent)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from pyproj import Geod
from rasterio.enums import ColorInterp

from backend.engine.options import AreaOfInterest, EngineOptions
from backend.engine.raster import ArraySource
from backend.engine.segment import segment
from backend.engine.tiling import plan_tiles
from tests.engine.rasters import PIXEL, UTM_ORIGIN, background, paint, pixel_box, write_geotiff
from tests.engine.standin import ColourModel

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)
UTM = Affine(PIXEL, 0, UTM_ORIGIN[0], 0, -PIXEL, UTM_ORIGIN[1])


def scene(height: int = 150, width: int = 200) -> np.ndarray:
    data = background(height, width)
    paint(data, slice(50, 80), slice(45, 75), RED)  # straddles the corner of 64-px tiles (overlap 8)
    paint(data, slice(100, 140), slice(120, 190), RED)  # a red ring with a hole…
    paint(data, slice(110, 130), slice(140, 170), (120, 120, 120))
    paint(data, slice(10, 30), slice(150, 160), BLUE)
    return data


def union_of(features, phrase):
    return shapely.union_all([f.geometry for f in features if f.phrase == phrase])


def test_tiles_cover_the_area_and_cores_partition_it():
    tiles = plan_tiles(200, 150, 64, 8)
    hits = np.zeros((150, 200), int)
    for tile in tiles:
        assert tile.cols.size == 64 and tile.rows.size == 64
        assert tile.cols.start <= tile.core_cols.start and tile.core_cols.stop <= tile.cols.stop
        hits[tile.core_rows.start : tile.core_rows.stop, tile.core_cols.start : tile.core_cols.stop] += 1
    assert (hits == 1).all()


def test_tiled_result_equals_single_window(tmp_path):
    path = write_geotiff(tmp_path / "scene.tif", scene())
    phrases = ["the red roofs", "a blue pool"]
    options = EngineOptions(simplify=0, min_area=0, keep="all")
    tiled = segment(
        path, phrases, ColourModel(64), EngineOptions(simplify=0, min_area=0, tile_size=64, overlap=8)
    )
    single = segment(path, phrases, ColourModel(256), options)
    assert tiled.tiles > 4 and single.tiles == 1
    assert sorted((f.phrase, round(f.score, 6), round(f.area, 3)) for f in tiled.features) == sorted(
        (f.phrase, round(f.score, 6), round(f.area, 3)) for f in single.features
    )
    for phrase in phrases:
        assert (
            union_of(tiled.features, phrase).symmetric_difference(union_of(single.features, phrase)).area == 0
        )


def test_object_across_a_tile_corner_is_one_polygon_on_its_footprint(tmp_path):
    path = write_geotiff(tmp_path / "scene.tif", scene())
    result = segment(path, ["red"], ColourModel(64), EngineOptions(tile_size=64, overlap=8, keep="all"))
    expected_square = pixel_box(45, 50, 75, 80, UTM)
    expected_ring = pixel_box(120, 100, 190, 140, UTM).difference(pixel_box(140, 110, 170, 130, UTM))
    assert len(result.features) == 2
    square, ring = sorted((f.geometry for f in result.features), key=lambda g: g.area)
    assert square.geom_type in ("Polygon", "MultiPolygon") and len(shapely.get_parts(square)) == 1
    assert square.hausdorff_distance(expected_square) <= PIXEL
    assert len(shapely.get_parts(ring)) == 1 and len(shapely.get_parts(ring)[0].interiors) == 1  # hole kept
    assert ring.symmetric_difference(expected_ring).area <= 1e-6
    feature = next(f for f in result.features if f.geometry is square)
    assert feature.area == pytest.approx(30 * 30 * PIXEL**2)
    assert feature.score == pytest.approx(1.0)
    assert (
        feature.source == "scene.tif" and feature.model == "colour-standin" and feature.created.endswith("Z")
    )


def test_footprint_in_epsg4326_and_geodesic_area(tmp_path):
    degree = 1e-4
    transform = Affine(degree, 0, 15.0, 0, -degree, 45.0)
    path = write_geotiff(tmp_path / "geo.tif", scene(), crs="EPSG:4326", transform=transform)
    result = segment(
        path, ["red"], ColourModel(64), EngineOptions(tile_size=64, overlap=8, keep="best", context="tiles")
    )
    (feature,) = result.features
    expected = pixel_box(120, 100, 190, 140, transform).difference(pixel_box(140, 110, 170, 130, transform))
    assert feature.geometry.hausdorff_distance(expected) <= degree
    geodesic = abs(Geod(ellps="WGS84").geometry_area_perimeter(expected)[0])
    assert feature.area == pytest.approx(geodesic, rel=1e-3)
    # (70·7.9 m)·(40·11.1 m) minus (30·7.9 m)·(20·11.1 m) ≈ 192,000 m²: square metres, not degrees²
    assert 185_000 < feature.area < 200_000


def test_keep_best_in_tiles_mode_returns_the_largest_object_per_phrase(tmp_path):
    path = write_geotiff(tmp_path / "scene.tif", scene())
    result = segment(
        path,
        ["red", "blue"],
        ColourModel(64),
        EngineOptions(tile_size=64, overlap=8, keep="best", context="tiles"),
    )
    assert [f.phrase for f in result.features] == ["red", "blue"]
    assert result.features[0].area == pytest.approx((70 * 40 - 30 * 20) * PIXEL**2)


def test_nodata_pixels_never_become_polygons(tmp_path):
    data = scene()
    data[:, 40:90, 40:90] = 0  # nodata, which the stand-in would call "black"…
    paint(data, slice(100, 120), slice(10, 30), (1, 1, 1))  # …and a real near-black object
    path = write_geotiff(tmp_path / "nodata.tif", data, nodata=0)
    result = segment(
        path, ["black", "red"], ColourModel(64), EngineOptions(tile_size=64, overlap=8, min_area=0)
    )
    black = [f for f in result.features if f.phrase == "black"]
    assert len(black) == 1 and black[0].geometry.hausdorff_distance(pixel_box(10, 100, 30, 120, UTM)) <= PIXEL
    # pure red (255, 0, 0) has 0 in two bands but is not nodata: only all-bands-nodata pixels are
    assert any(f.phrase == "red" for f in result.features)


def test_uint16_single_band_is_stretched_and_replicated(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(1000, 1500, size=(1, 120, 130)).astype(np.uint16)
    data[0, 20:60, 30:90] = 40000  # bright → white after the percentile stretch
    data[0, 0:5, 0:5] = 0  # nodata
    path = write_geotiff(tmp_path / "single.tif", data, nodata=0)
    result = segment(path, ["white building"], ColourModel(64), EngineOptions(tile_size=64, overlap=8))
    (feature,) = result.features
    assert feature.geometry.hausdorff_distance(pixel_box(30, 20, 90, 60, UTM)) <= PIXEL


def test_bands_follow_colour_interpretation(tmp_path):
    data = scene()[::-1].copy()  # stored as B, G, R
    path = write_geotiff(
        tmp_path / "bgr.tif", data, colorinterp=[ColorInterp.blue, ColorInterp.green, ColorInterp.red]
    )
    result = segment(
        path, ["red"], ColourModel(64), EngineOptions(tile_size=64, overlap=8, keep="best", context="tiles")
    )
    assert result.features[0].area == pytest.approx((70 * 40 - 30 * 20) * PIXEL**2)
    # Bands 1, 2, 3 taken as R, G, B, as asked: the stored blue (band 3 → B=0, band 1 → R=255) reads
    # as red, so "red" finds the blue square, and none of the red objects.
    explicit = segment(
        path, ["red"], ColourModel(64), EngineOptions(tile_size=64, overlap=8, bands=(1, 2, 3))
    )
    (feature,) = explicit.features
    assert feature.geometry.hausdorff_distance(pixel_box(150, 10, 160, 30, UTM)) <= PIXEL
    assert not any(f.geometry.intersects(pixel_box(120, 100, 190, 140, UTM)) for f in explicit.features)


def test_bbox_in_raster_crs_and_in_epsg4326(tmp_path):
    path = write_geotiff(tmp_path / "scene.tif", scene())
    box = pixel_box(100, 90, 200, 150, UTM)  # holds the ring, not the square
    opts = EngineOptions(tile_size=64, overlap=8, area=AreaOfInterest(box.bounds))
    local = segment(path, ["red"], ColourModel(64), opts)
    assert len(local.features) == 1 and local.features[0].geometry.within(box.buffer(0.01))
    from pyproj import Transformer

    to_geo = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    lon0, lat0 = to_geo.transform(box.bounds[0] + 1, box.bounds[1] + 1)
    lon1, lat1 = to_geo.transform(box.bounds[2] - 1, box.bounds[3] - 1)
    geo = segment(
        path,
        ["red"],
        ColourModel(64),
        EngineOptions(tile_size=64, overlap=8, area=AreaOfInterest((lon0, lat0, lon1, lat1), "EPSG:4326")),
    )
    assert len(geo.features) == 1
    assert geo.features[0].geometry.symmetric_difference(local.features[0].geometry).area == 0


def test_gsd_resamples_on_read(tmp_path):
    path = write_geotiff(tmp_path / "scene.tif", scene())
    model = ColourModel(64)
    options = EngineOptions(tile_size=64, overlap=8, gsd=4.0, keep="best", context="tiles")
    result = segment(path, ["red"], model, options)
    assert all(shape == (64, 64, 3) for shape in model.shapes)
    assert result.tiles == 4  # 100×75 pixels at 4 m instead of 200×150 at 2 m
    expected = pixel_box(120, 100, 190, 140, UTM).difference(pixel_box(140, 110, 170, 130, UTM))
    assert result.features[0].geometry.hausdorff_distance(expected) <= 4.0 * 1.5


def test_in_memory_array_source():
    source = ArraySource(scene(), UTM, "EPSG:32633", name="memory")
    result = segment(source, ["blue"], ColourModel(64), EngineOptions(tile_size=64, overlap=8))
    (feature,) = result.features
    assert feature.source == "memory"
    assert feature.geometry.hausdorff_distance(pixel_box(150, 10, 160, 30, UTM)) <= PIXEL


def test_area_smaller_than_a_tile_is_padded_to_the_model_scale(tmp_path):
    path = write_geotiff(tmp_path / "small.tif", scene(40, 30))
    model = ColourModel(64)
    segment(path, ["red"], model, EngineOptions())
    assert model.shapes == [(64, 64, 3)]


def test_geojson_form_matches_the_service_contract(tmp_path):
    path = write_geotiff(tmp_path / "scene.tif", scene())
    collection = segment(path, ["blue"], ColourModel(64), EngineOptions(tile_size=64, overlap=8)).to_geojson()
    assert collection["type"] == "FeatureCollection"
    assert collection["crs"]["properties"]["name"] == "EPSG:32633"
    assert "UTM zone 33N" in collection["crs_wkt"]
    (feature,) = collection["features"]
    assert set(feature["properties"]) == {"phrase", "score", "area", "source", "model", "created"}
    assert (
        shapely.geometry.shape(feature["geometry"]).hausdorff_distance(pixel_box(150, 10, 160, 30, UTM))
        <= PIXEL
    )
    assert collection["stats"]["tiles"] == 12 and collection["stats"]["model"] == "colour-standin"


def test_a_run_keeps_only_what_it_can_output(tmp_path):
    """Interior specks are dropped and keep=best holds one interior piece per phrase (bounded memory)."""
    from backend.engine.segment import SegmentRun

    data = background(256, 256)
    for row in range(8, 250, 16):
        for col in range(8, 250, 16):
            paint(data, slice(row, row + 6), slice(col, col + 6), RED)  # 6×6 objects
    data[:, 3, 3] = RED  # a one-pixel speck
    path = write_geotiff(tmp_path / "many.tif", data)
    for keep, expected_interior in (("all", None), ("best", 1)):
        opts = EngineOptions(tile_size=64, overlap=8, keep=keep, min_area=10 * PIXEL**2, context="tiles")
        with SegmentRun(path, ["red"], ColourModel(64), opts) as run:
            pieces = run.predict()
            interior = [p for p in pieces if not p.on_seam]
            assert all(p.pixels >= 10 for p in interior)  # the speck never got stored
            if expected_interior is not None:
                assert len(interior) == expected_interior
            features = run.finish(pieces, 0.0).features
        assert len(features) == (16 * 16 if keep == "all" else 1)


def test_simplify_keeps_polygons_valid_and_polygonal():
    from backend.engine.features import simplify_polygons

    shell = [(0, 0), (40, 0), (40, 40), (0, 40)]
    thin_hole = [(1, 1), (1.3, 1), (1.3, 39), (1, 39)]  # collapses at tolerance 1
    staircase = shapely.Polygon([(0, 0), (10, 0)] + [(10 - i, i) for i in range(1, 11)] + [(0, 10)])
    out = simplify_polygons(np.array([shapely.Polygon(shell, [thin_hole]), staircase], dtype=object), 1.0)
    assert all(g.is_valid and g.geom_type in ("Polygon", "MultiPolygon") for g in out)
    assert out[0].area == pytest.approx(1600, abs=15)
    assert len(shapely.get_coordinates(out[1])) < len(shapely.get_coordinates(staircase))
    assert out[1].hausdorff_distance(staircase) <= 1.0
