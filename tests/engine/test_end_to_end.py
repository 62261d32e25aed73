"""The real `test`-preset RS2-SAM 2 through the engine, the `rs2sam2 segment` command and torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyogrio
import pytest
import rasterio
import shapely
from pyogrio import raw as pyogrio_raw

from backend.engine.options import SegmentOptions
from backend.engine.segment import segment
from tests.engine.rasters import background, paint, write_geotiff

pytestmark = pytest.mark.slow
VENV_BIN = Path(sys.executable).parent
PHRASES = ["the red roofs", "a blue pool"]
# 200×180 at tile 128 / overlap 16 → 2×2 tiles: seams and scene edges are both exercised.
CLI_OPTIONS = ["--tile", "128", "--overlap", "16", "--keep", "all", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def raster(tmp_path_factory) -> Path:
    data = background(180, 200, seed=7)
    paint(data, slice(50, 90), slice(100, 150), (255, 0, 0))
    paint(data, slice(120, 160), slice(20, 60), (0, 0, 255))
    return write_geotiff(tmp_path_factory.mktemp("scene") / "scene.tif", data)


@pytest.fixture(scope="module")
def direct(raster, test_checkpoint):
    """The engine called in this process on the same checkpoint: the reference result."""
    from backend.model.factory import load_predictor

    model = load_predictor(checkpoint=test_checkpoint, device="cpu")
    return segment(raster, PHRASES, model, SegmentOptions(tile_size=128, overlap=16, keep="all"))


def read_features(path: Path) -> list[tuple[str, shapely.Geometry, float]]:
    _, _, geometry, fields = pyogrio_raw.read(path)
    return sorted(
        ((phrase, shapely.from_wkb(g), score) for phrase, g, score in zip(fields[0], geometry, fields[1])),
        key=lambda item: (item[0], item[1].centroid.x, item[1].centroid.y),
    )


def assert_same_features(written: Path, result) -> None:
    features = read_features(written)
    expected = sorted(
        ((f.phrase, f.geometry, f.score) for f in result.features),
        key=lambda item: (item[0], item[1].centroid.x, item[1].centroid.y),
    )
    assert len(features) == len(expected)
    for (phrase, geometry, score), (phrase0, geometry0, score0) in zip(features, expected):
        assert phrase == phrase0 and score == pytest.approx(score0, abs=1e-4)
        assert geometry.symmetric_difference(geometry0).area <= 1e-6 * max(geometry0.area, 1.0)


def run_cli(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )


def test_engine_with_the_real_model(raster, direct, test_checkpoint):
    assert direct.tiles == 4 and direct.model == test_checkpoint.stem
    with rasterio.open(raster) as ds:
        footprint = shapely.box(*ds.bounds)
    for feature in direct.features:
        assert feature.phrase in PHRASES and 0.5 < feature.score <= 1.0
        assert feature.geometry.is_valid and feature.geometry.within(footprint.buffer(1e-6))
        assert feature.area == pytest.approx(feature.geometry.area)  # UTM metres


def test_segment_command_end_to_end(raster, direct, test_checkpoint, tmp_path):
    out = tmp_path / "out.gpkg"
    done = run_cli(
        [
            str(VENV_BIN / "rs2sam2"),
            "segment",
            str(raster),
            *PHRASES,
            "-o",
            str(out),
            "--checkpoint",
            str(test_checkpoint),
            *CLI_OPTIONS,
        ]
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote {len(direct.features)} feature(s)" in done.stdout and str(out) in done.stdout
    meta = pyogrio.read_info(out, layer="scene")
    assert "32633" in meta["crs"]
    assert_same_features(out, direct)


def test_torchrun_two_cpu_ranks_on_gloo_equal_one_process(raster, direct, test_checkpoint, tmp_path):
    out = tmp_path / "ranks.geojson"
    done = run_cli(
        [
            str(VENV_BIN / "torchrun"),
            "--standalone",
            "--nproc-per-node=2",
            "-m",
            "backend.cli",
            "segment",
            str(raster),
            *PHRASES,
            "-o",
            str(out),
            "--checkpoint",
            str(test_checkpoint),
            *CLI_OPTIONS,
        ],
        env={"GLOO_SOCKET_IFNAME": "lo"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("wrote ") == 1  # only rank 0 writes
    assert_same_features(out, direct)


def test_view_mode_with_the_real_model_through_the_command(raster, test_checkpoint, tmp_path):
    """200×180 seen whole at 128 (shrunk 1.6×), then refined at full resolution: the command and the
    engine in this process agree."""
    from backend.model.factory import load_predictor

    model = load_predictor(checkpoint=test_checkpoint, device="cpu")
    direct = segment(raster, PHRASES, model, SegmentOptions(keep="best"))
    assert direct.tiles > 1 and len(direct.features) == len(PHRASES)
    assert all(f.geometry.is_valid for f in direct.features)
    out = tmp_path / "view.gpkg"
    done = run_cli(
        [
            str(VENV_BIN / "rs2sam2"),
            "segment",
            str(raster),
            *PHRASES,
            "-o",
            str(out),
            "--checkpoint",
            str(test_checkpoint),
            "--keep",
            "best",
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert done.returncode == 0, done.stderr
    assert_same_features(out, direct)
