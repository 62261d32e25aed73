"""A converted paper checkpoint through `rs2sam2 segment --checkpoint FILE` (the real engine and writers)."""

from __future__ import annotations

import rasterio
from pyogrio import raw as pyogrio_raw

from backend.cli import main as cli_main
from backend.weights.paper import import_paper_folder
from tests.engine.rasters import background, paint, write_geotiff
from tests.model.paper.conftest import published_state, write_published_folder


def test_segment_runs_the_converted_paper_checkpoint(
    tmp_path, paper_test_model, spm_file, paper_test_published
):
    folder = write_published_folder(tmp_path / "rrsisd", published_state(paper_test_model), spm_file)
    checkpoint = import_paper_folder(folder, model="paper-test", cache=tmp_path / "cache")
    data = background(100, 120, seed=1)
    paint(data, slice(20, 60), slice(30, 80), (255, 0, 0))
    raster = write_geotiff(tmp_path / "scene.tif", data)
    out, probability = tmp_path / "out.gpkg", tmp_path / "prob.tif"
    options = ["--device", "cpu", "--keep", "all", "--threshold", "0", "--probability", str(probability)]
    code = cli_main(
        ["segment", str(raster), "the red roof", "-o", str(out), "--checkpoint", str(checkpoint), *options]
    )
    assert code == 0
    with rasterio.open(probability) as src:
        values = src.read(1)
    assert values.shape == (100, 120) and 0.0 <= values.min() and values.max() <= 1.0
    meta, _, geometry, fields = pyogrio_raw.read(out)
    models = fields[list(meta["fields"]).index("model")]
    assert len(geometry) >= 1 and set(models) == {"paper-test"}
