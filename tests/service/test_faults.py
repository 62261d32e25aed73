"""Faults at the service layer, with model doubles behind the real app on a real uvicorn server on
127.0.0.1 (tests/live_server.py).

The models here provoke what the real one cannot do on demand: running out of memory (for real, on the
CPU: torch's own allocator refuses a request larger than any address space; the CUDA allocator's and a
CUDA kernel's errors are raised as torch raises them, with their own classes and wording), a bug.
Everything else — HTTP, FastAPI, the job worker, the engine, GeoTIFF reading — is real.
"""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.engine.rasters import background, paint, write_geotiff
from tests.engine.standin import ColourModel
from tests.live_server import wait_until
from tests.service.helpers import form


def _cpu_allocator_fails() -> None:
    """Ask torch's CPU allocator for 4 EiB: more than any address space, so it fails on every machine
    (whatever the kernel's overcommit setting), with the allocator's own RuntimeError."""
    import torch

    torch.empty(2**62, dtype=torch.uint8)


def _cuda_allocator_fails() -> None:
    """What torch's CUDA caching allocator raises (its own class and wording; no GPU here to provoke it)."""
    import torch

    raise torch.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which "
        "1.06 GiB is free."
    )


def _cuda_kernel_fails() -> None:
    """A CUDA error raised by a kernel launch that met an exhausted device (torch.AcceleratorError)."""
    import torch

    raise torch.AcceleratorError(
        "CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported"
    )


ALLOCATORS = {
    "cpu-allocator": _cpu_allocator_fails,
    "cuda-allocator": _cuda_allocator_fails,
    "cuda-kernel": _cuda_kernel_fails,
}


class MemoryHungryModel(ColourModel):
    """Runs out of memory (for real on the CPU) when given more than `max_phrases` phrases at once
    (0: always)."""

    def __init__(self, max_phrases: int, allocator=_cpu_allocator_fails):
        super().__init__(64)
        self.max_phrases = max_phrases
        self.allocator = allocator
        self.batches: list[int] = []

    def predict(self, image, phrases):
        self.batches.append(len(phrases))
        if len(phrases) > self.max_phrases:
            self.allocator()
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


def test_the_real_cpu_allocators_failure_is_out_of_memory():
    """The allocator's own error is a plain RuntimeError (not torch.OutOfMemoryError): it must still be
    recognised, and other RuntimeErrors must not be."""
    from backend.engine.predict import is_out_of_memory

    with pytest.raises(RuntimeError) as info:
        _cpu_allocator_fails()
    assert type(info.value) is RuntimeError and "DefaultCPUAllocator" in str(info.value)
    assert is_out_of_memory(info.value)
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"))
    assert not is_out_of_memory(ValueError("out of memory"))  # only the allocators' own types


@pytest.mark.parametrize("allocator", list(ALLOCATORS))
def test_out_of_memory_retries_one_phrase_at_a_time(serve_model, raster, allocator):
    model = MemoryHungryModel(max_phrases=1, allocator=ALLOCATORS[allocator])
    client = serve_model(model)
    files, data = form({"phrases": ["red", "blue"], "keep": "all"}, raster=raster)
    answer = client.post("/segment", files=files, data=data)
    assert answer.status_code == 200, answer.text
    assert [f["properties"]["phrase"] for f in answer.json()["features"]] == ["red"]
    assert model.batches[:3] == [2, 1, 1]  # both phrases at once, then one at a time


@pytest.mark.parametrize("allocator", list(ALLOCATORS))
def test_out_of_memory_everywhere_is_a_clear_error_and_the_server_keeps_serving(
    serve_model, raster, allocator
):
    hungry = MemoryHungryModel(max_phrases=0, allocator=ALLOCATORS[allocator])
    client = serve_model(hungry)
    files, data = form({"phrases": ["red"]}, raster=raster)
    answer = client.post("/segment", files=files, data=data)
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["code"] == "out_of_memory" and "smaller tile" in error["message"]
    job = client.post("/jobs", files=files, data=data).json()["job_id"]
    wait_until(
        lambda: client.get(f"/jobs/{job}").json()["status"] not in ("queued", "running"),
        timeout_s=60,
        what="the job to finish",
    )
    assert client.get(f"/jobs/{job}").json()["error"]["code"] == "out_of_memory"
    assert client.get(f"/jobs/{job}/result").status_code == 503
    hungry.max_phrases = 8  # memory is back: the same server answers
    assert client.post("/segment", files=files, data=data).status_code == 200
    assert client.get("/health").json()["busy"] is False


def test_out_of_memory_outside_the_model_call_is_503_not_a_500(serve_model, raster, monkeypatch):
    """Memory running out elsewhere in a job (here: turning the result into polygons) is not a bug of
    the server: 503 out_of_memory, and the server keeps serving."""
    import backend.engine.segment as engine_segment

    real = engine_segment.SegmentResult.to_geojson

    def hungry_to_geojson(self):
        _cpu_allocator_fails()

    client = serve_model(ColourModel(64))
    files, data = form({"phrases": ["red"]}, raster=raster)
    monkeypatch.setattr(engine_segment.SegmentResult, "to_geojson", hungry_to_geojson)
    answer = client.post("/segment", files=files, data=data)
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "out_of_memory"
    monkeypatch.setattr(engine_segment.SegmentResult, "to_geojson", real)
    assert client.post("/segment", files=files, data=data).status_code == 200


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
