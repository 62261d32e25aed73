"""`make demo`'s command: the bundled demo model finds the sample scene's objects by phrase, writes a
GeoPackage whose polygons lie on them and a PNG preview; `rs2sam2 serve` with no model flags uses it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
from PIL import Image

from backend.bundled import DEMO_CHECKPOINT, DEMO_SCENE, demo_phrases

ROOT = Path(__file__).resolve().parents[2]
TRUTH = DEMO_SCENE.with_name("scene_truth.gpkg")
# The demo model's held-out classic land-cover test mIoU is 51.0 % overall and 71 % for phrases naming
# kind and colour only, as the sample scene's do (docs/benchmarks.md). On the sample scene every phrase's
# polygons must cover its object at IoU >= 0.7 (measured with the world model of 2026-12-02: farmland
# 0.918, stream 0.856, lake 0.789, street 0.706 — the thin street is the hardest, about 1.5 pixels above
# the bar; see scripts/make_demo_model.py's BLEND).
MIN_IOU = 0.7
# Float noise of the demo model's probabilities between thread counts (1 vs 2) and kernel libraries (torch
# vs OpenVINO f32), measured on the scene: ≤ 2.1e-6. A pixel within BAND of the threshold could go either
# way on another CPU; the test below proves that no such flip can take a phrase below MIN_IOU.
BAND = 1e-3


def _truth_by_phrase() -> dict[str, shapely.Geometry]:
    meta, _, wkb, fields = pyogrio.raw.read(TRUTH)
    phrase_column = list(meta["fields"]).index("phrase")
    truth = {}
    for geometry, phrases in zip(shapely.from_wkb(wkb), fields[phrase_column]):
        for phrase in str(phrases).split("|"):
            truth[phrase.strip()] = geometry
    return truth


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("demo")
    result = subprocess.run(
        [sys.executable, "-m", "backend.cli", "demo", "--out", str(out), "--device", "cpu"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return out, result


def test_demo_polygons_lie_on_the_phrases_objects(demo_run):
    out, result = demo_run
    meta, _, wkb, fields = pyogrio.raw.read(out / "rs2sam2-demo.gpkg", layer="demo")
    columns = list(meta["fields"])
    assert {"phrase", "score", "area", "source", "model", "created"} <= set(columns)
    found = dict(zip(fields[columns.index("phrase")], shapely.from_wkb(wkb)))
    truth = _truth_by_phrase()
    ious = {}
    for phrase in demo_phrases():
        assert phrase in found, f"nothing found for {phrase!r}:\n{result.stdout}"
        ious[phrase] = shapely.area(shapely.intersection(found[phrase], truth[phrase])) / shapely.area(
            shapely.union(found[phrase], truth[phrase])
        )
    assert min(ious.values()) >= MIN_IOU, ious
    assert str(out / "rs2sam2-demo.gpkg") in result.stdout.replace(str(out.resolve()), str(out))


def test_the_bar_holds_whatever_pixels_near_the_threshold_do(demo_run):
    """The street clears the bar by little (IoU 0.706 against 0.70), so the bar must not rest on float
    noise: every pixel whose probability lies within BAND of the threshold is counted as lost — its area
    taken off the intersection and added to the union — and each phrase must still reach MIN_IOU."""
    import rasterio
    import rasterio.features

    from backend.engine.options import EngineOptions
    from backend.engine.predict import ProbabilitySink
    from backend.engine.segment import segment
    from backend.model.factory import load_predictor

    class Probabilities(ProbabilitySink):
        def __init__(self, count: int, height: int, width: int):
            self.values = np.zeros((count, height, width), np.float32)

        def write(self, col, row, probabilities):
            _, rows, cols = probabilities.shape
            self.values[:, row : row + rows, col : col + cols] = probabilities

    with rasterio.open(DEMO_SCENE) as scene:
        shape, transform = (scene.height, scene.width), scene.transform
    phrases = demo_phrases()
    sink = Probabilities(len(phrases), *shape)
    model = load_predictor(checkpoint=DEMO_CHECKPOINT, device="cpu", precision="fp32")
    result = segment(DEMO_SCENE, phrases, model, EngineOptions(keep="best"), sink=sink)
    out, _ = demo_run
    _, _, wkb, fields = pyogrio.raw.read(out / "rs2sam2-demo.gpkg", layer="demo")
    written = dict(zip(fields[0], shapely.from_wkb(wkb)))
    truth = _truth_by_phrase()
    pixel_area = abs(transform.a * transform.e)
    worst = {}
    for index, phrase in enumerate(phrases):
        (found,) = [f.geometry for f in result.features if f.phrase == phrase]
        # The same polygons as the demo command wrote (there as multipolygons).
        assert shapely.area(shapely.symmetric_difference(found, written[phrase])) < 1e-6
        near = np.abs(sink.values[index] - 0.5) < BAND
        at_stake = near.sum() * pixel_area
        inter = shapely.area(shapely.intersection(found, truth[phrase]))
        union = shapely.area(shapely.union(found, truth[phrase]))
        worst[phrase] = (inter - at_stake) / (union + at_stake)
    assert min(worst.values()) >= MIN_IOU, worst


def test_demo_preview_png_shows_the_scene_with_outlines(demo_run):
    out, _ = demo_run
    preview = np.asarray(Image.open(out / "rs2sam2-demo.png").convert("RGB"))
    import rasterio

    with rasterio.open(DEMO_SCENE) as scene:
        assert preview.shape[:2] == (scene.height * 2, scene.width * 2)
    # Outline colours are not in the scene's palette: the first phrase's yellow is drawn.
    assert np.all(preview == (255, 221, 0), axis=-1).sum() > 20


def test_bundled_demo_model_is_small_enough_for_the_repository():
    assert DEMO_CHECKPOINT.stat().st_size < 20 * 2**20
