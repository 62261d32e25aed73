"""`rs2sam2 segment` in-process with the colour stand-in as the model: outputs, atomicity, bad input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
from pyogrio import raw as pyogrio_raw

from backend.cli import main
from tests.engine.rasters import background, paint, write_geotiff
from tests.engine.standin import ColourModel


class FailingModel(ColourModel):
    """Breaks on the third tile, like a crash midway through a run."""

    def predict(self, image, phrases):
        if self.calls == 2:
            raise RuntimeError("simulated crash on the third tile")
        return super().predict(image, phrases)


@pytest.fixture
def model(monkeypatch):
    standin = ColourModel(64)
    monkeypatch.setattr(
        "backend.engine.model_loading.load_model",
        lambda preset, checkpoint, device, model=None, precision="auto": standin,
    )
    return standin


@pytest.fixture
def raster(tmp_path) -> Path:
    data = background(150, 200)
    paint(data, slice(50, 80), slice(45, 75), (255, 0, 0))
    paint(data, slice(100, 140), slice(120, 190), (255, 0, 0))
    paint(data, slice(10, 30), slice(150, 160), (0, 0, 255))
    return write_geotiff(tmp_path / "scene.tif", data)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def segment_cli(*args: str) -> int:
    return main(["segment", *map(str, args), "--quiet"])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_writes_a_geopackage_layer_named_after_the_raster(model, raster, tmp_path, capsys):
    out = tmp_path / "out.gpkg"
    assert segment_cli(raster, "red roofs", "blue pool", "-o", out, "--tile", 64, "--overlap", 8) == 0
    assert [name for name, _ in pyogrio.list_layers(out)] == ["scene"]
    meta, _, geometry, fields = pyogrio_raw.read(out, layer="scene")
    assert meta["fields"].tolist() == ["phrase", "score", "area", "source", "model", "created"]
    assert "32633" in meta["crs"]
    assert sorted(fields[0].tolist()) == ["blue pool", "red roofs", "red roofs"]  # --keep all by default
    summary = capsys.readouterr().out
    assert "wrote 3 feature(s)" in summary and str(out) in summary


def test_a_new_layer_leaves_the_others_intact_and_a_clash_needs_overwrite(model, raster, tmp_path, capsys):
    out = tmp_path / "out.gpkg"
    assert segment_cli(raster, "red", "-o", out, "--layer", "first") == 0
    first = pyogrio_raw.read(out, layer="first")
    assert segment_cli(raster, "blue", "-o", out, "--layer", "second") == 0
    assert sorted(name for name, _ in pyogrio.list_layers(out)) == ["first", "second"]
    again = pyogrio_raw.read(out, layer="first")
    assert again[3][0].tolist() == first[3][0].tolist() and list(again[2]) == list(first[2])
    before = digest(out)
    capsys.readouterr()
    assert segment_cli(raster, "blue", "-o", out, "--layer", "first") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and "--overwrite" in err
    assert digest(out) == before
    assert segment_cli(raster, "blue", "-o", out, "--layer", "first", "--overwrite") == 0
    assert pyogrio_raw.read(out, layer="first")[3][0].tolist() == ["blue"]
    assert pyogrio_raw.read(out, layer="second")[3][0].tolist() == ["blue"]


def test_layer_per_phrase(model, raster, tmp_path):
    out = tmp_path / "out.gpkg"
    assert segment_cli(raster, "red", "blue pool", "-o", out, "--layer-per-phrase", "--keep", "best") == 0
    assert sorted(name for name, _ in pyogrio.list_layers(out)) == ["scene_blue_pool", "scene_red"]


@pytest.mark.parametrize("name", ["out.geojson", "out.shp"])
def test_geojson_and_shapefile(model, raster, tmp_path, name, capsys):
    out = tmp_path / name
    assert segment_cli(raster, "red", "-o", out, "--keep", "best") == 0
    meta, _, geometry, fields = pyogrio_raw.read(out)
    assert len(geometry) == 1 and "32633" in meta["crs"]
    assert set(meta["fields"]) == {"phrase", "score", "area", "source", "model", "created"}
    before = digest(out)
    capsys.readouterr()
    assert segment_cli(raster, "blue", "-o", out) == 2
    assert "already exists" in capsys.readouterr().err
    assert digest(out) == before
    assert leftovers(tmp_path) == []


def test_a_run_failing_midway_writes_nothing(monkeypatch, raster, tmp_path, capsys):
    failing = FailingModel(64)
    monkeypatch.setattr("backend.engine.model_loading.load_model", lambda *a, **k: failing)
    new = tmp_path / "new.gpkg"
    with pytest.raises(RuntimeError, match="third tile"):
        segment_cli(raster, "red", "-o", new, "--probability", tmp_path / "p.tif")
    assert not new.exists() and not (tmp_path / "p.tif").exists()
    # appending to an existing GeoPackage: it stays byte-for-byte the same
    existing = tmp_path / "existing.gpkg"
    monkeypatch.setattr("backend.engine.model_loading.load_model", lambda *a, **k: ColourModel(64))
    assert segment_cli(raster, "red", "-o", existing, "--layer", "kept") == 0
    before = digest(existing)
    monkeypatch.setattr("backend.engine.model_loading.load_model", lambda *a, **k: FailingModel(64))
    with pytest.raises(RuntimeError):
        segment_cli(raster, "red", "-o", existing, "--layer", "other")
    assert digest(existing) == before
    assert leftovers(tmp_path) == []


def test_probability_geotiff(model, raster, tmp_path):
    out, prob = tmp_path / "out.gpkg", tmp_path / "prob.tif"
    assert segment_cli(raster, "red", "blue", "-o", out, "--probability", prob) == 0
    with rasterio.open(prob) as ds, rasterio.open(raster) as src:
        assert ds.count == 2 and ds.descriptions == ("red", "blue")
        assert ds.crs == src.crs and ds.transform == src.transform and ds.shape == src.shape
        red = ds.read(1)
    assert red[60, 60] == pytest.approx(1.0) and red[5, 5] < 0.5


def test_no_crs_needs_the_flag_then_gives_pixel_coordinates(model, tmp_path, capsys):
    data = background(100, 100)
    paint(data, slice(10, 30), slice(40, 60), (0, 0, 255))
    raster = write_geotiff(tmp_path / "plain.tif", data, crs=None, transform=rasterio.Affine.identity())
    out = tmp_path / "out.geojson"
    assert segment_cli(raster, "blue", "-o", out) == 2
    assert "no CRS" in capsys.readouterr().err and not out.exists()
    assert segment_cli(raster, "blue", "-o", out, "--allow-no-crs", "--simplify", 0) == 0
    _, _, geometry, _ = pyogrio_raw.read(out)
    import shapely

    assert shapely.from_wkb(geometry[0]).bounds == (40.0, 10.0, 60.0, 30.0)


def test_bbox_limits_the_area(model, raster, tmp_path):
    out = tmp_path / "out.geojson"
    # the ring's box in map coordinates (2 m pixels from 500000, 5000000)
    assert segment_cli(raster, "red", "-o", out, "--bbox", "500200,4999720,500400,4999800") == 0
    _, _, geometry, _ = pyogrio_raw.read(out)
    assert len(geometry) == 1


BAD_INPUTS = [
    (["missing.tif", "red"], "no such file"),
    (["notraster.tif", "red"], "not a raster"),
    (["{raster}", "  "], "phrase 1 is empty"),
    (["{raster}", "red", "--bbox", "0,0,10,10"], "outside the raster"),
    (["{raster}", "red", "--bbox", "500100,4999800,500100,4999900"], "MINX < MAXX"),
    (["{raster}", "red", "--bbox-crs", "EPSG:4326"], "--bbox-crs needs --bbox"),
    (["{raster}", "red", "--bbox", "1,2,3,4", "--bbox-crs", "EPSG:nonsense"], "unknown CRS"),
    (["{raster}", "red", "--bands", "5"], "band 5 does not exist"),
    (["{raster}", "red", "--threshold", "1.5"], "threshold"),
    (["{raster}", "red", "--tile", "64", "--overlap", "60"], "overlap"),
    (["{raster}", "red", "--gsd", "-1"], "gsd"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUTS)
def test_bad_input_is_one_line_nonzero_and_writes_nothing(model, raster, tmp_path, capsys, argv, message):
    (tmp_path / "notraster.tif").write_text("this is not an image")
    argv = [a.replace("{raster}", str(raster)) for a in argv]
    argv[0] = argv[0] if argv[0].startswith("/") else str(tmp_path / argv[0])
    out = tmp_path / "out.gpkg"
    assert segment_cli(*argv, "-o", out) == 2
    err = capsys.readouterr().err
    assert err.startswith("rs2sam2 segment: error: ") and err.count("\n") == 1
    assert message in err
    assert not out.exists() and leftovers(tmp_path) == []


def test_unknown_output_format_and_missing_folder(model, raster, tmp_path, capsys):
    assert segment_cli(raster, "red", "-o", tmp_path / "out.csv") == 2
    assert "output format" in capsys.readouterr().err
    assert segment_cli(raster, "red", "-o", tmp_path / "nope" / "out.gpkg") == 2
    assert "does not exist" in capsys.readouterr().err


def test_cuda_asked_but_absent_and_missing_checkpoint(raster, tmp_path, capsys, monkeypatch):
    import torch

    # The GPU's absence is simulated, so that a machine with one checks the refusal too.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert segment_cli(raster, "red", "-o", tmp_path / "o.gpkg", "--device", "cuda") == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert segment_cli(raster, "red", "-o", tmp_path / "o.gpkg", "--checkpoint", tmp_path / "none.pt") == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "o.gpkg").exists()


def test_uint16_many_bands_and_array_scale(model, tmp_path):
    rng = np.random.default_rng(3)
    data = rng.integers(200, 900, size=(5, 90, 90)).astype(np.uint16)
    data[:3, 20:50, 20:50] = [[[4000]], [[0 + 200]], [[200]]]  # red in bands 1-3 after stretch
    raster = write_geotiff(tmp_path / "multi.tif", data)
    out = tmp_path / "out.geojson"
    assert segment_cli(raster, "red", "-o", out, "--keep", "best") == 0
    _, _, geometry, fields = pyogrio_raw.read(out)
    assert len(geometry) == 1 and fields[2][0] == pytest.approx(30 * 30 * 4.0, rel=0.05)


def test_unreadable_checkpoint_is_a_one_line_error(raster, tmp_path, capsys):
    garbage = tmp_path / "model.safetensors"
    garbage.write_bytes(b"\x00\x01 not a checkpoint at all")
    assert (
        segment_cli(raster, "red", "-o", tmp_path / "o.gpkg", "--checkpoint", garbage, "--device", "cpu") == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("rs2sam2 segment: error: ") and err.count("\n") == 1 and "checkpoint" in err
    assert not (tmp_path / "o.gpkg").exists()
