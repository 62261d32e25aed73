"""View mode (context="view"): the phrase is answered for the whole area, the object found is outlined
at the raster's resolution. Checked with `ContextModel`, a stand-in that knows which red object is
the largest or the leftmost only among those in the image it is given."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine

from backend.engine.context import plan_context
from backend.engine.options import AreaOfInterest, EngineOptions
from backend.engine.refine import UPSAMPLED
from backend.engine.segment import SegmentRun, segment
from rs2sam2_qgis.contract import AREA_TOO_LARGE, MAX_CONTEXT_SHRINK
from tests.engine.rasters import PIXEL, UTM_ORIGIN, background, paint, pixel_box, write_geotiff
from tests.engine.standin import ContextModel

RED = (255, 0, 0)
UTM = Affine(PIXEL, 0, UTM_ORIGIN[0], 0, -PIXEL, UTM_ORIGIN[1])
EXACT = {"simplify": 0, "min_area": 0, "tile_size": 64, "overlap": 8, "keep": "best"}
# The left object: a 40×40 square with a notch 2 pixels wide and 3 deep in its top edge, finer than
# one pixel of the view (4 raster pixels at 256 → 64).
NOTCH = pixel_box(39, 60, 41, 63, UTM)
LEFT = pixel_box(20, 60, 60, 100, UTM).difference(NOTCH)
RIGHT = pixel_box(150, 40, 240, 140, UTM)


def leftmost_scene(height: int = 192, width: int = 256) -> np.ndarray:
    data = background(height, width)
    paint(data, slice(60, 100), slice(20, 60), RED)
    data[:, 60:63, 39:41] = background(3, 2, seed=1)
    paint(data, slice(40, 140), slice(150, 240), RED)  # larger, so the best of the tiles' answers
    return data


@pytest.fixture
def leftmost(tmp_path):
    return write_geotiff(tmp_path / "leftmost.tif", leftmost_scene())


def only_geometry(result):
    (feature,) = result.features
    return feature.geometry


def test_view_mode_names_the_object_of_the_whole_area_with_full_resolution_outline(leftmost):
    model = ContextModel(64)
    tiles = segment(leftmost, ["the leftmost red field"], model, EngineOptions(**EXACT, context="tiles"))
    view = segment(leftmost, ["the leftmost red field"], model, EngineOptions(**EXACT, context="view"))
    assert only_geometry(tiles).equals(RIGHT)  # each tile names its own leftmost; the largest answer wins
    found = only_geometry(view)
    assert found.symmetric_difference(LEFT).area == 0  # the notch is 2 m wide: raster resolution
    assert not found.contains(NOTCH.centroid)
    coarse = only_geometry(
        segment(leftmost, ["the leftmost red field"], model, EngineOptions(**EXACT), refinement=UPSAMPLED)
    )
    assert coarse.intersects(LEFT) and coarse.contains(NOTCH.centroid)  # the view alone cannot draw it


def test_keep_best_means_view_and_keep_all_means_tiles(leftmost):
    best = segment(leftmost, ["the leftmost red field"], ContextModel(64), EngineOptions(**EXACT))
    assert only_geometry(best).symmetric_difference(LEFT).area == 0
    every = segment(
        leftmost, ["the leftmost red field"], ContextModel(64), EngineOptions(**{**EXACT, "keep": "all"})
    )
    assert len(every.features) == 2  # tiles: each tile's leftmost object


def test_keep_best_in_view_mode_is_the_views_whole_answer(leftmost):
    """One question, one answer: every part the view names is the one object (as a river cut by a
    road is one river), not only its largest part."""
    from backend.engine.refine import LARGEST_PART

    whole = segment(leftmost, ["red"], ContextModel(64), EngineOptions(**EXACT))
    assert only_geometry(whole).symmetric_difference(LEFT.union(RIGHT)).area == 0
    largest = segment(leftmost, ["red"], ContextModel(64), EngineOptions(**EXACT), refinement=LARGEST_PART)
    assert only_geometry(largest).symmetric_difference(RIGHT).area == 0


def test_keep_all_in_view_mode_outlines_every_object_seen(leftmost):
    options = EngineOptions(**{**EXACT, "keep": "all"}, context="view")
    result = segment(leftmost, ["red"], ContextModel(64), options)
    found = sorted((f.geometry for f in result.features), key=lambda g: g.bounds[0])
    assert len(found) == 2
    assert found[0].symmetric_difference(LEFT).area == 0 and found[1].symmetric_difference(RIGHT).area == 0


def test_the_whole_area_is_read_once_and_refined_only_where_the_outline_is(leftmost):
    model = ContextModel(64)
    with SegmentRun(leftmost, ["the leftmost red field"], model, EngineOptions(**EXACT)) as run:
        assert run.context == "view" and run.view_mode.grid.width == 64 and run.view_mode.grid.height == 48
        steps = []
        pieces = run.predict(progress=lambda done, total: steps.append((done, total)))
        result = run.finish(pieces, 0.0)
    assert model.shapes[0] == (64, 64, 3)  # 256×192 shrunk to 64×48, padded to the input
    assert 1 < result.tiles == model.calls < len(run.tiles)  # refined tiles only: the left square's
    assert steps[0] == (0, 1) and steps[-1][0] == steps[-1][1] == model.calls


def test_a_cancel_stops_view_mode_between_model_calls(leftmost):
    from backend.errors import CancelledError

    model = ContextModel(64)
    with pytest.raises(CancelledError):
        segment(
            leftmost,
            ["the leftmost red field"],
            model,
            EngineOptions(**EXACT),
            cancel=lambda: model.calls >= 1,
        )
    assert model.calls == 1  # the view, then nothing


def test_largest_object_spread_over_many_tiles(tmp_path):
    """A cross over 12 tiles, and in each of those tiles a square larger than the cross's piece there:
    every tile names its square; the whole area names the cross."""
    data = background(256, 256)
    paint(data, slice(120, 136), slice(28, 228), RED)
    paint(data, slice(28, 228), slice(120, 136), RED)
    cross = pixel_box(28, 120, 228, 136, UTM).union(pixel_box(120, 28, 136, 228, UTM))
    for row, col in [(70, 70), (70, 150), (150, 70), (150, 150), (80, 5), (80, 215), (150, 5), (150, 215),
                     (5, 80), (5, 150), (215, 80), (215, 150)]:  # fmt: skip
        paint(data, slice(row, row + 34), slice(col, col + 34), RED)
    path = write_geotiff(tmp_path / "cross.tif", data)
    options = {**EXACT, "overlap": 0}
    tiles = only_geometry(
        segment(path, ["the largest red field"], ContextModel(64), EngineOptions(**options, context="tiles"))
    )
    assert tiles.area == pytest.approx(34 * 34 * PIXEL**2)  # a square
    view = only_geometry(segment(path, ["the largest red field"], ContextModel(64), EngineOptions(**options)))
    assert view.intersection(cross).area / view.union(cross).area > 0.85


@pytest.mark.parametrize(
    "width, height, view",
    [(40, 30, (40, 30)), (64, 64, (64, 64)), (256, 192, (64, 48)), (512, 40, (64, 5)), (500, 2, (64, 1))],
)
def test_the_view_keeps_the_aspect_and_never_enlarges(width, height, view):
    grid = plan_context(width, height, 64)
    assert (grid.width, grid.height) == view
    assert grid.is_native == (view == (width, height))


def test_an_area_smaller_than_the_input_is_one_call_at_full_resolution(tmp_path):
    data = background(50, 62)
    paint(data, slice(10, 40), slice(5, 35), RED)
    paint(data, slice(10, 30), slice(45, 60), RED)
    path = write_geotiff(tmp_path / "small.tif", data)
    model = ContextModel(64)
    result = segment(path, ["the leftmost red field"], model, EngineOptions(**EXACT))
    assert model.shapes == [(64, 64, 3)] and result.tiles == 1
    assert only_geometry(result).symmetric_difference(pixel_box(5, 10, 35, 40, UTM)).area == 0


def test_a_long_strip_is_seen_whole(tmp_path):
    data = background(40, 512)
    paint(data, slice(10, 30), slice(300, 340), RED)
    paint(data, slice(5, 35), slice(400, 500), RED)
    path = write_geotiff(tmp_path / "strip.tif", data)
    result = segment(path, ["the leftmost red field"], ContextModel(64), EngineOptions(**EXACT))
    assert only_geometry(result).symmetric_difference(pixel_box(300, 10, 340, 30, UTM)).area == 0


def test_a_huge_area_gets_a_clear_message(tmp_path):
    side = MAX_CONTEXT_SHRINK * 64 + 1
    path = write_geotiff(tmp_path / "huge.tif", background(8, side))
    model = ContextModel(64)
    with pytest.raises(Exception) as caught:
        segment(path, ["the leftmost red field"], model, EngineOptions(keep="best"))
    assert caught.value.code == AREA_TOO_LARGE and model.calls == 0
    message = str(caught.value)
    assert f"{side}×8 pixels" in message and "'tiles'" in message and "smaller area" in message
    segment(path, ["the leftmost red field"], model, EngineOptions(keep="best", context="tiles"))


def test_an_area_partly_outside_the_raster_is_the_part_inside(leftmost):
    inside = pixel_box(0, 0, 256, 192, UTM)
    beyond = shapely.box(
        inside.bounds[0] - 300, inside.bounds[1] - 200, inside.bounds[2] - 200, inside.bounds[3]
    )
    options = EngineOptions(**EXACT, area=AreaOfInterest(beyond.bounds))
    result = segment(leftmost, ["the leftmost red field"], ContextModel(64), options)
    assert only_geometry(result).symmetric_difference(LEFT).area == 0


def test_nodata_is_neither_seen_nor_found(tmp_path):
    data = leftmost_scene()
    data[:, :, :70] = 0  # the left square is nodata now; the leftmost object left is the right one
    path = write_geotiff(tmp_path / "nodata.tif", data, nodata=0)
    model = ContextModel(64)
    result = segment(path, ["the leftmost red field", "black"], model, EngineOptions(**EXACT))
    assert [f.phrase for f in result.features] == ["the leftmost red field"]
    assert only_geometry(result).symmetric_difference(RIGHT).area == 0


def test_an_object_too_small_for_the_view_is_found_at_full_resolution(tmp_path):
    # A 3×3-pixel red car in a 256×256 area: shrunk 4× into the 64-pixel view it is under one view
    # pixel of mixed colour, which the model cannot see; the full-resolution pass finds and outlines it.
    data = background(256, 256)
    paint(data, slice(30, 33), slice(200, 203), RED)
    raster = write_geotiff(tmp_path / "car.tif", data)
    car = pixel_box(200, 30, 203, 33, UTM)
    model = ContextModel(64)
    with SegmentRun(raster, ["the red car"], model, EngineOptions(**EXACT)) as run:
        seen = run.view_mode._see_whole()
        assert seen[0].max() < 0.5  # the view itself cannot see the car
        steps = []
        result = run.finish(run.predict(progress=lambda done, total: steps.append((done, total))), 0.0)
        assert run.view_mode.fine_phrases == [0]
    assert only_geometry(result).symmetric_difference(car).area == 0
    # the search reports its progress too: tile by tile, never backwards, ending at its total
    done = [d for d, _ in steps]
    assert done == sorted(done) and len(steps) > 10 and steps[-1][0] == steps[-1][1]


def test_objects_the_view_outlines_well_are_not_searched_again(leftmost):
    model = ContextModel(64)
    with SegmentRun(leftmost, ["the leftmost red field"], model, EngineOptions(**EXACT)) as run:
        run.finish(run.predict(), 0.0)
        assert run.view_mode.fine_phrases == []
