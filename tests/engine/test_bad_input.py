"""Bad rasters, bad areas and runs too large, through `rs2sam2 segment` (in-process, the colour stand-in
as the model) and the engine's bounds (`backend/engine/limits.py`): every one is a one-line error with
exit status 2 and nothing written. The service answers the same mistakes with the same codes
(tests/service/test_limits.py); docs/robustness.md lists them all.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from rasterio.crs import CRS

from backend.cli import main
from backend.engine.errors import EngineInputError
from backend.engine.limits import SERVICE_LIMITS, RunLimits
from backend.engine.options import AreaOfInterest, EngineOptions
from backend.engine.segment import SegmentRun, segment
from tests.engine.rasters import (
    background,
    broken_geotransform,
    corrupt_blocks,
    cut_short,
    declaring_huge,
    good_scene,
    unresolvable_crs,
    write_geotiff,
    zero_band_vrt,
)
from tests.engine.standin import ColourModel


@pytest.fixture
def model(monkeypatch):
    standin = ColourModel(64)
    monkeypatch.setattr("backend.engine.model_loading.load_model", lambda *args, **kwargs: standin)
    return standin


def _nan_raster(path: Path) -> Path:
    return write_geotiff(path, np.full((1, 50, 50), np.nan, np.float32))


def _inf_raster(path: Path) -> Path:
    data = np.full((3, 50, 50), np.inf, np.float32)
    data[1] = -np.inf
    return write_geotiff(path, data)


def _complex_raster(path: Path) -> Path:
    return write_geotiff(path, (np.ones((3, 50, 50)) * (1 + 1j)).astype(np.complex64))


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _one_pixel(path: Path) -> Path:
    return write_geotiff(path, background(1, 1))


def _wkt_file(path: Path) -> Path:
    path.write_text(CRS.from_epsg(3857).to_wkt())  # a valid CRS, in a file the bbox CRS names
    return path


# (id, how to make the raster, extra arguments, what the one line says)
BAD_RUNS = [
    ("cut-short", lambda d: cut_short(good_scene(d / "good.tif"), d / "cut.tif"), [], "cut short"),
    ("corrupt-blocks", lambda d: corrupt_blocks(d / "corrupt.tif"), ["--context", "tiles"], "corrupt"),
    ("zero-bytes", lambda d: _empty(d / "empty.tif"), [], "not a raster"),
    ("zero-bands", lambda d: zero_band_vrt(d / "zero.vrt"), [], "not a raster"),
    ("one-pixel", lambda d: _one_pixel(d / "one.tif"), [], "must be at least 4×4"),
    ("complex", lambda d: _complex_raster(d / "complex.tif"), [], "complex numbers"),
    ("crs-unresolvable", lambda d: unresolvable_crs(d / "local.tif"), [], "cannot measure in"),
    ("pixel-size-zero", lambda d: broken_geotransform(d / "zero.tif"), [], "no usable size (0 units)"),
    ("pixel-size-nan", lambda d: broken_geotransform(d / "nan.tif", math.nan), [], "no usable size"),
    ("all-nan", lambda d: _nan_raster(d / "nan.tif"), [], "no valid pixels"),
    ("all-inf", lambda d: _inf_raster(d / "inf.tif"), [], "no valid pixels"),
    ("tile-1e9", lambda d: good_scene(d / "good.tif"), ["--tile", "1000000000"], "tile size must be between"),
    ("gsd-tiny", lambda d: good_scene(d / "good.tif"), ["--gsd", "1e-9"], "gsd must be between"),
    ("gsd-huge", lambda d: good_scene(d / "good.tif"), ["--gsd", "1e9"], "gsd must be between"),
    ("bbox-nan", lambda d: good_scene(d / "good.tif"), ["--bbox", "nan,0,1,1"], "four finite numbers"),
    ("bbox-inf", lambda d: good_scene(d / "good.tif"), ["--bbox", "0,0,inf,1"], "four finite numbers"),
    (
        "bbox-antimeridian",
        lambda d: good_scene(d / "good.tif"),
        ["--bbox", "170,-10,-170,10", "--bbox-crs", "EPSG:4326"],
        "crosses the antimeridian",
    ),
    (
        "bbox-beyond-180",
        lambda d: good_scene(d / "good.tif"),
        ["--bbox=-400,-10,400,10", "--bbox-crs", "EPSG:4326"],
        "longitudes -180…180",
    ),
    (
        "crs-garbage",
        lambda d: good_scene(d / "good.tif"),
        ["--bbox", "0,0,1,1", "--bbox-crs", "not a crs at all"],
        "unknown CRS",
    ),
    (
        "crs-init-file",
        lambda d: good_scene(d / "good.tif"),
        ["--bbox", "0,0,1,1", "--bbox-crs", "+init=/etc/passwd:x"],
        "init files",
    ),
    ("phrase-control-chars", lambda d: good_scene(d / "good.tif"), [], "control characters"),
]


@pytest.mark.parametrize(
    ("make", "extra", "message"), [c[1:] for c in BAD_RUNS], ids=[c[0] for c in BAD_RUNS]
)
def test_a_bad_run_is_one_line_exit_2_and_writes_nothing(model, tmp_path, capsys, make, extra, message):
    raster = make(tmp_path)
    phrase = "red\x07" if message == "control characters" else "red"
    out = tmp_path / "out.gpkg"
    assert main(["segment", str(raster), phrase, "-o", str(out), "--quiet", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rs2sam2 segment: error: ") and err.count("\n") == 1, err
    assert message in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_crs_naming_a_file_does_not_read_it(model, tmp_path, capsys):
    """GDAL would read a CRS from a file named as the CRS (and fetch a URL): the engine reads text only."""
    raster = good_scene(tmp_path / "good.tif")
    wkt = _wkt_file(tmp_path / "mercator.prj")
    out = tmp_path / "out.gpkg"
    argv = ["segment", str(raster), "red", "-o", str(out), "--bbox", "0,0,1,1", "--bbox-crs", str(wkt)]
    assert main([*argv, "--quiet"]) == 2
    assert "unknown CRS" in capsys.readouterr().err and not out.exists()


def test_a_header_declaring_a_terapixel_is_refused_before_a_pixel_is_read(tmp_path, monkeypatch):
    huge = declaring_huge(tmp_path / "huge.tif")
    assert huge.stat().st_size < 2000  # a few hundred bytes declaring 10⁶ × 10⁶ pixels
    read = []
    monkeypatch.setattr("backend.engine.raster.compute_stretch", lambda *a: read.append(a))
    limits = RunLimits(max_pixels=100_000_000)
    with pytest.raises(EngineInputError) as refused:
        SegmentRun(huge, ["red"], ColourModel(64), EngineOptions(context="tiles", limits=limits))
    assert refused.value.code == "too_many_pixels" and "1000000×1000000" in str(refused.value)
    assert read == []  # refused from the header alone


def test_pixels_are_counted_at_the_requested_gsd_and_inside_the_bbox(tmp_path):
    raster = good_scene(tmp_path / "good.tif", size=100)  # 100 × 100 pixels of 2 m
    model = ColourModel(64)
    limits = RunLimits(max_pixels=2500)
    with pytest.raises(EngineInputError, match="100×100 pixels"):
        SegmentRun(raster, ["red"], model, EngineOptions(limits=limits))
    with SegmentRun(raster, ["red"], model, EngineOptions(gsd=4.0, limits=limits)) as run:  # 50 × 50
        assert (run.view.width, run.view.height) == (50, 50)
    with pytest.raises(EngineInputError, match="200×200 pixels"):
        SegmentRun(raster, ["red"], model, EngineOptions(gsd=1.0, limits=limits))  # upsampled: more pixels
    box = AreaOfInterest((500_000, 4_999_900, 500_100, 5_000_000))  # 50 × 50 pixels of the raster
    with SegmentRun(raster, ["red"], model, EngineOptions(area=box, limits=limits)) as run:
        assert (run.view.width, run.view.height) == (50, 50)


def test_phrase_and_tile_bounds_follow_the_limits(tmp_path):
    raster = good_scene(tmp_path / "good.tif")
    model = ColourModel(64)
    service = EngineOptions(limits=SERVICE_LIMITS)
    with pytest.raises(EngineInputError) as many:
        SegmentRun(raster, ["red"] * 33, model, service)
    assert many.value.code == "too_many_phrases" and "at most 32" in str(many.value)
    with pytest.raises(EngineInputError) as long:
        SegmentRun(raster, ["r" * 501], model, service)
    assert long.value.code == "phrase_too_long"
    for tile in (15, 257):  # the service: within 4× of the 64-pixel input
        with pytest.raises(EngineInputError) as tiling:
            SegmentRun(
                raster, ["red"], model, EngineOptions(tile_size=tile, overlap=0, limits=SERVICE_LIMITS)
            )
        assert tiling.value.code == "bad_tiling"
    assert segment(raster, ["red"] * 33, model, EngineOptions(tile_size=256, overlap=0)).features  # engine
    assert RunLimits().tile_range(1024) == (64, 16384) and SERVICE_LIMITS.tile_range(1024) == (256, 4096)


def test_a_bbox_beyond_any_raster_is_clipped_not_an_overflow(tmp_path):
    raster = good_scene(tmp_path / "good.tif")
    options = EngineOptions(area=AreaOfInterest((-1e308, -1e308, 1e308, 1e308)), keep="all")
    assert len(segment(raster, ["red"], ColourModel(64), options).features) == 1


def test_view_mode_refuses_an_area_too_large_to_see_whole_from_the_header(tmp_path, monkeypatch):
    """context=view sees the whole area at once: an area beyond its largest view is refused from the
    header, like the pixel bound, before the stretch reads a pixel (no pixel cap here: the CLI's)."""
    huge = declaring_huge(tmp_path / "huge.tif", side=100_000)
    read = []
    monkeypatch.setattr("backend.engine.raster.compute_stretch", lambda *a: read.append(a))
    with pytest.raises(EngineInputError) as refused:
        SegmentRun(huge, ["red"], ColourModel(64), EngineOptions(context="view"))
    assert refused.value.code == "area_too_large" and "100000×100000 pixels" in str(refused.value)
    assert read == []


@pytest.mark.parametrize("context", ["view", "tiles"])
def test_every_bound_applies_in_both_contexts(tmp_path, context):
    raster = good_scene(tmp_path / "good.tif", size=100)
    model = ColourModel(64)
    limits = RunLimits(max_phrases=2, max_phrase_chars=10, tile_factor=2.0, max_pixels=2500)
    cases = [
        (["red"] * 3, {}, "too_many_phrases"),
        (["the red square"], {}, "phrase_too_long"),
        (["red"], {"gsd": 4.0, "tile_size": 129, "overlap": 0}, "bad_tiling"),
        (["red"], {}, "too_many_pixels"),  # 100 × 100 pixels of the raster's own 2 m
        (["red"], {"gsd": 4.0, "area": AreaOfInterest((500_000, 4_999_990, 500_004, 5_000_000))}, None),
    ]
    for phrases, extra, code in cases:
        options = EngineOptions(context=context, limits=limits, **extra)
        if code is None:  # 1 × 3 pixels at 4 m: below the smallest area
            code = "area_too_small"
        with pytest.raises(EngineInputError) as refused:
            SegmentRun(raster, phrases, model, options)
        assert refused.value.code == code, (context, phrases, extra)
    assert segment(raster, ["red"], model, EngineOptions(context=context, gsd=4.0, limits=limits)).features
