"""A converted paper checkpoint through `rs2sam2 segment --checkpoint FILE` (the real engine and writers)."""

from __future__ import annotations

import pytest
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


@pytest.mark.parametrize("keep", ["all", "best"])  # tiles mode, and view mode (the panel's default)
def test_an_image_smaller_than_the_input_is_resized_whole_as_the_reference_does(
    tmp_path, paper_test_model, spm_file, paper_test_published, capsys, keep
):
    """100×120 pixels for a 128-pixel model: `segment` gives the model the whole image, which it resizes
    to its input as the reference's test.py does — the same probabilities as the predictor on the image
    itself — not the image padded with black to 128 (seen at 78 % of the input's scale in a border)."""
    import numpy as np

    from backend.model.factory import load_predictor

    folder = write_published_folder(tmp_path / "rrsisd", published_state(paper_test_model), spm_file)
    checkpoint = import_paper_folder(folder, model="paper-test", cache=tmp_path / "cache")
    data = background(100, 120, seed=1)
    paint(data, slice(20, 60), slice(30, 80), (255, 0, 0))
    raster = write_geotiff(tmp_path / "scene.tif", data)
    probability = tmp_path / "prob.tif"
    options = ["--device", "cpu", "--keep", keep, "--probability", str(probability)]
    code = cli_main(
        [
            "segment",
            str(raster),
            "the red roof",
            "-o",
            str(tmp_path / "o.gpkg"),
            "--checkpoint",
            str(checkpoint),
        ]
        + options
    )
    assert code == 0
    assert "precision fp32 (auto: the reference's masks" in capsys.readouterr().err
    with rasterio.open(probability) as src:
        engine = src.read(1)
    with rasterio.open(raster) as src:
        image = np.ascontiguousarray(src.read([1, 2, 3]).transpose(1, 2, 0))
    predictor = load_predictor(checkpoint=checkpoint, device="cpu", precision="fp32")
    (direct,) = predictor.predict(image, ["the red roof"])
    assert engine.shape == direct.probability.shape == (100, 120)
    assert float(np.abs(engine - direct.probability).max()) < 1e-5
    padded = np.zeros((128, 128, 3), np.uint8)
    padded[:100, :120] = image
    (as_padded,) = predictor.predict(padded, ["the red roof"])
    assert float(np.abs(as_padded.probability[:100, :120] - direct.probability).max()) > 1e-3  # it matters
