"""The real `test`-preset RS2-SAM 2 through the engine, the `rs2sam2 segment` command and torchrun.

The model is the bundled demo checkpoint (a trained `test`-preset model) on a synthetic scene of the
kind it was trained on: its probabilities keep clear of the 0.5 threshold, so the command, two torchrun
ranks and this process find the same objects, and outlines agree to within a pixel. (An untrained
model's probabilities all sit near 0.5, where float noise decides which pixels are in.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from pyogrio import raw as pyogrio_raw

from backend.engine.options import EngineOptions
from backend.engine.segment import segment
from tests.engine.rasters import write_geotiff

pytestmark = pytest.mark.slow
VENV_BIN = Path(sys.executable).parent
DEMO_CHECKPOINT = (
    Path(__file__).resolve().parents[2] / "backend" / "demo" / "assets" / "rs2sam2-demo.safetensors"
)
PHRASES = ["the brown field", "the blue river"]  # two objects of the scene below
GSD = 0.5  # metres per pixel
# 200×180 at tile 128 / overlap 16 → 2×2 tiles: seams and scene edges are both exercised.
CLI_OPTIONS = ["--tile", "128", "--overlap", "16", "--keep", "all", "--device", "cpu", "--quiet"]
# The command and torchrun ranks run on one thread, as this process does (tests/conftest.py).
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def raster(tmp_path_factory) -> Path:
    """A synthetic land-cover scene (fields, a pond, a river, roads), 200 × 180 pixels."""
    from training.data.synthetic import generate_scene

    scene = generate_scene(8, size=200, gsd=GSD, kinds=("field", "pond", "river", "road"))
    data = np.ascontiguousarray(scene.image[:180].transpose(2, 0, 1))
    return write_geotiff(tmp_path_factory.mktemp("scene") / "scene.tif", data, transform=scene.transform)


@pytest.fixture(scope="module")
def direct(raster):
    """The engine called in this process on the same checkpoint: the reference result."""
    from backend.model.factory import load_predictor

    model = load_predictor(checkpoint=DEMO_CHECKPOINT, device="cpu")
    return segment(raster, PHRASES, model, EngineOptions(tile_size=128, overlap=16, keep="all"))


def read_features(path: Path) -> list[tuple[str, shapely.Geometry, float]]:
    _, _, geometry, fields = pyogrio_raw.read(path)
    return sorted(
        ((phrase, shapely.from_wkb(g), score) for phrase, g, score in zip(fields[0], geometry, fields[1])),
        key=lambda item: (item[0], item[1].centroid.x, item[1].centroid.y),
    )


def assert_same_features(written: Path, result) -> None:
    """The same objects, each within a pixel: a pixel whose probability is within float noise of the
    threshold may go either way (a pixel or two of area), an outline shifted by a pixel may not (it
    changes the area by the object's perimeter in pixels)."""
    features = read_features(written)
    assert features, "nothing was written: the comparison would be empty"
    assert sorted(phrase for phrase, _, _ in features) == sorted(f.phrase for f in result.features)
    for feature in result.features:
        same_phrase = [(g, s) for phrase, g, s in features if phrase == feature.phrase]
        geometry, score = min(same_phrase, key=lambda item: item[0].hausdorff_distance(feature.geometry))
        assert score == pytest.approx(feature.score, abs=1e-4)
        assert geometry.hausdorff_distance(feature.geometry) <= 1.5 * GSD
        assert geometry.symmetric_difference(feature.geometry).area <= 2 * GSD**2


def run_cli(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )


def test_engine_with_the_real_model(raster, direct):
    assert direct.tiles == 4 and direct.model == DEMO_CHECKPOINT.stem
    assert {f.phrase for f in direct.features} == set(PHRASES)  # the model finds both kinds
    with rasterio.open(raster) as ds:
        footprint = shapely.box(*ds.bounds)
    for feature in direct.features:
        assert feature.phrase in PHRASES and 0.5 < feature.score <= 1.0
        assert feature.geometry.is_valid and feature.geometry.within(footprint.buffer(1e-6))
        assert feature.area == pytest.approx(feature.geometry.area)  # UTM metres


def test_segment_command_end_to_end(raster, direct, tmp_path):
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
            str(DEMO_CHECKPOINT),
            *CLI_OPTIONS,
        ],
        env=ONE_THREAD,
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote {len(direct.features)} feature(s)" in done.stdout and str(out) in done.stdout
    meta = pyogrio.read_info(out, layer="scene")
    assert "32633" in meta["crs"]
    assert_same_features(out, direct)


def test_torchrun_two_cpu_ranks_on_gloo_equal_one_process(raster, direct, tmp_path):
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
            str(DEMO_CHECKPOINT),
            *CLI_OPTIONS,
        ],
        env={"GLOO_SOCKET_IFNAME": "lo", **ONE_THREAD},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("wrote ") == 1  # only rank 0 writes
    assert_same_features(out, direct)


def test_view_mode_with_the_real_model_through_the_command(raster, tmp_path):
    """200×180 seen whole at 128 (shrunk 1.6×), then refined at full resolution: the command (on two
    threads) and the engine in this process (one) agree. With the trained demo model, whose
    probabilities keep clear of the threshold: an untrained model's sit at 0.5, where the float noise
    of another thread count or CPU kernel decides the outline."""
    from backend.model.factory import load_predictor

    model = load_predictor(checkpoint=DEMO_CHECKPOINT, device="cpu")
    direct = segment(raster, PHRASES, model, EngineOptions(keep="best"))
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
            str(DEMO_CHECKPOINT),
            "--keep",
            "best",
            "--device",
            "cpu",
            "--threads",
            "2",
            "--quiet",
        ]
    )
    assert done.returncode == 0, done.stderr
    assert_same_features(out, direct)
