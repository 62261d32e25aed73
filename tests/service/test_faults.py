"""Faults at the service layer, with model doubles behind the real app on a real uvicorn server on
127.0.0.1 (tests/live_server.py).

The models here provoke what the real one cannot do on demand: running out of memory, a bug. Everything
else — HTTP, FastAPI, the job worker, the engine, GeoTIFF reading — is real.
"""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from tests.engine.rasters import background, paint, write_geotiff
from tests.engine.standin import ColourModel
from tests.service.helpers import form


class OutOfMemory(RuntimeError):
    """Looks like torch's OutOfMemoryError to the engine (matched by name, as torch's is)."""


OutOfMemory.__name__ = "OutOfMemoryError"


class MemoryHungryModel(ColourModel):
    """Runs out of memory when given more than `max_phrases` phrases at once (0: always)."""

    def __init__(self, max_phrases: int):
        super().__init__(64)
        self.max_phrases = max_phrases

    def predict(self, image, phrases):
        if len(phrases) > self.max_phrases:
            raise OutOfMemory("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().predict(image, phrases)


@pytest.fixture
def serve_model(serve):
    def start(model) -> httpx.Client:
        return serve(model).client()

    return start


@pytest.fixture
def raster(tmp_path):
    data = background(100, 100)
    paint(data, slice(20, 50), slice(30, 70), (255, 0, 0))
    return write_geotiff(tmp_path / "scene.tif", data)


def test_out_of_memory_retries_one_phrase_at_a_time(serve_model, raster):
    client = serve_model(MemoryHungryModel(max_phrases=1))
    files, data = form({"phrases": ["red", "blue"], "keep": "all"}, raster=raster)
    answer = client.post("/segment", files=files, data=data)
    assert answer.status_code == 200, answer.text
    assert [f["properties"]["phrase"] for f in answer.json()["features"]] == ["red"]


def test_out_of_memory_everywhere_is_a_clear_error_and_the_server_keeps_serving(serve_model, raster):
    hungry = MemoryHungryModel(max_phrases=0)
    client = serve_model(hungry)
    files, data = form({"phrases": ["red"]}, raster=raster)
    answer = client.post("/segment", files=files, data=data)
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "out_of_memory" and "smaller tile" in error["message"]
    job = client.post("/jobs", files=files, data=data).json()["job_id"]
    while client.get(f"/jobs/{job}").json()["status"] in ("queued", "running"):
        time.sleep(0.02)
    assert client.get(f"/jobs/{job}").json()["error"]["code"] == "out_of_memory"
    assert client.get(f"/jobs/{job}/result").status_code == 503
    hungry.max_phrases = 8  # memory is back: the same server answers
    assert client.post("/segment", files=files, data=data).status_code == 200
    assert client.get("/health").json()["busy"] is False


class BrokenModel(ColourModel):
    def predict(self, image, phrases):
        raise ValueError("a bug in the model code")


def test_a_server_fault_is_a_500_json_error_and_not_a_crash(serve_model, raster, caplog):
    client = serve_model(BrokenModel())
    files, data = form({"phrases": ["red"]}, raster=raster)
    with caplog.at_level(logging.ERROR, logger="rs2sam2.service"):
        answer = client.post("/segment", files=files, data=data)
    assert answer.status_code == 500 and answer.json()["error"]["code"] == "internal"
    assert "Traceback" not in answer.text and "a bug in the model code" not in answer.text
    # The server's log has the traceback (the answer only says where to look).
    logged = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], ValueError)]
    assert logged and str(logged[0].exc_info[1]) == "a bug in the model code"
    assert client.get("/health").status_code == 200


def test_an_uploaded_vrt_cannot_make_the_server_read_its_files(serve_model, raster, tmp_path):
    vrt = tmp_path / "sneaky.vrt"
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource><SourceFilename relativeToVRT="0">{raster}'
        f"</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>"
        for b in (1, 2, 3)
    )
    vrt.write_text(
        '<VRTDataset rasterXSize="100" rasterYSize="100"><SRS>EPSG:32633</SRS>'
        f"<GeoTransform>500000, 2, 0, 5000000, 0, -2</GeoTransform>{bands}</VRTDataset>"
    )
    from backend.engine.segment import segment

    assert segment(vrt, ["red"], ColourModel(64)).features  # GDAL itself reads it fine…
    client = serve_model(ColourModel(64))
    files, data = form({"phrases": ["red"]}, raster=vrt)
    answer = client.post("/segment", files=files, data=data)
    assert answer.status_code == 400  # …but the service takes GeoTIFF uploads only
    assert answer.json()["error"]["code"] == "not_a_raster" and "GTiff" in answer.json()["error"]["message"]
