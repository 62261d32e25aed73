"""The real `rs2sam2 serve` (subprocess, free loopback port, seeded `test`-preset checkpoint) over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from affine import Affine

from backend.engine.options import SegmentOptions
from backend.engine.segment import segment
from tests.engine.rasters import background, paint, write_geotiff
from tests.service.conftest import RS2SAM2, running_server
from tests.service.helpers import API, assert_same_collections, form

pytestmark = pytest.mark.slow
SMALL = {"tile_size": 128, "overlap": 16}


def scene(path: Path, size: tuple[int, int], seed: int, crs: str | None = "EPSG:32633") -> Path:
    data = background(*size, seed=seed)
    paint(data, slice(10 + seed, 40 + seed), slice(20, 60), (255, 0, 0))
    paint(data, slice(50, 70), slice(5 + seed, 30 + seed), (0, 0, 255))
    transform = None if crs else Affine.identity()
    return write_geotiff(path, data, crs=crs, transform=transform)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """The folder the server allows paths under, with rasters of several sizes."""
    folder = tmp_path_factory.mktemp("allowed")
    for seed in range(4):
        scene(folder / f"small{seed}.tif", (80, 90), seed)
    scene(folder / "four_tiles.tif", (180, 200), 5)
    scene(folder / "sixteen_tiles.tif", (512, 512), 6)
    scene(folder / "plain.tif", (60, 60), 7, crs=None)
    (folder / "notes.tif").write_text("not a raster at all")
    return folder


@pytest.fixture(scope="module")
def server(root, test_checkpoint, tmp_path_factory):
    log = tmp_path_factory.mktemp("log") / "server.log"
    args = [
        "--checkpoint",
        str(test_checkpoint),
        "--device",
        "cpu",
        "--allow-path",
        str(root),
        "--max-upload-mb",
        "1",
    ]
    with running_server(args, log) as (base, _process):
        with httpx.Client(base_url=base + API, timeout=120) as client:
            yield client


@pytest.fixture(scope="module")
def model(test_checkpoint):
    from backend.model.factory import load_predictor

    return load_predictor(checkpoint=test_checkpoint, device="cpu")


def direct(model, raster: Path, phrases: list[str], **options) -> dict:
    """The engine's own answer for the same input, computed in this process."""
    opts = SegmentOptions(keep=options.pop("keep", "best"), **options)
    return segment(raster, phrases, model, opts).to_geojson()


def wait_for(predicate, timeout: float = 120.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


def test_health_and_openapi(server, test_checkpoint):
    health = server.get("/health").json()
    assert health["status"] == "ok" and health["version"]
    assert health["model"] == {
        "id": test_checkpoint.stem,
        "preset": "test",
        "input_size": 128,
        "device": "cpu",
    }
    assert health["busy"] is False and health["allow_paths"] is True and health["max_upload_mb"] == 1
    paths = httpx.get(server.base_url.copy_with(path="/openapi.json")).json()["paths"]
    assert {f"{API}/health", f"{API}/segment", f"{API}/jobs", f"{API}/jobs/{{job_id}}"} <= set(paths)


def test_segment_by_upload_and_by_path_match_the_engine(server, model, root):
    raster = root / "small1.tif"
    params = {"phrases": ["the red roof", "a blue pool"], **SMALL}
    expected = direct(model, raster, params["phrases"], **SMALL)
    files, data = form(params, raster=raster)
    uploaded = server.post("/segment", files=files, data=data)
    assert uploaded.status_code == 200, uploaded.text
    assert_same_collections(uploaded.json(), expected)
    assert uploaded.json()["crs"]["properties"]["name"] == "EPSG:32633"
    assert uploaded.json()["stats"]["tiles"] == 1
    by_path = server.post("/segment", data=form(params, path=str(raster))[1])
    assert by_path.status_code == 200, by_path.text
    assert_same_collections(by_path.json(), expected)


def test_job_progress_and_result(server, model, root):
    raster = root / "four_tiles.tif"
    params = {"phrases": ["red"], "keep": "all", **SMALL}
    created = server.post("/jobs", data=form(params, path=str(raster))[1])
    assert created.status_code == 202 and created.json()["status"] == "queued"
    job_id = created.json()["job_id"]
    seen = []

    def finished():
        status = server.get(f"/jobs/{job_id}").json()
        seen.append(status)
        if status["status"] not in ("done", "failed"):
            early = server.get(f"/jobs/{job_id}/result")
            assert early.status_code == 409 and early.json()["error"]["code"] == "not_done"
        return status["status"] in ("done", "failed")

    wait_for(finished)
    assert seen[-1]["status"] == "done" and seen[-1]["progress"] == {"done": 4, "total": 4}
    assert seen[-1]["error"] is None
    assert all(s["status"] in ("queued", "running", "done") for s in seen)
    result = server.get(f"/jobs/{job_id}/result")
    assert result.status_code == 200
    assert_same_collections(result.json(), direct(model, raster, ["red"], keep="all", **SMALL))


def test_cancel_stops_within_a_tile_and_health_answers_during_the_run(server, root):
    params = {"phrases": ["red"], "tile_size": 128, "overlap": 0}
    job_id = server.post("/jobs", data=form(params, path=str(root / "sixteen_tiles.tif"))[1]).json()["job_id"]
    wait_for(lambda: server.get(f"/jobs/{job_id}").json()["progress"]["done"] >= 1)
    assert server.get("/health", timeout=5).json()["busy"] is True  # answered while the run goes on
    cancelled = server.delete(f"/jobs/{job_id}")
    assert cancelled.status_code == 200 and cancelled.json() == {"job_id": job_id, "status": "cancelled"}
    wait_for(lambda: server.get("/health").json()["busy"] is False)
    status = server.get(f"/jobs/{job_id}").json()
    assert status["status"] == "cancelled" and status["progress"]["done"] < 16
    assert server.get(f"/jobs/{job_id}/result").json()["error"]["code"] == "cancelled"


def _good_request_works(server, root) -> None:
    files, data = form({"phrases": ["red"], **SMALL}, raster=root / "small0.tif")
    answer = server.post("/segment", files=files, data=data)
    assert answer.status_code == 200 and answer.json()["type"] == "FeatureCollection"


def test_bad_inputs_get_4xx_with_a_message_and_the_next_request_works(server, root, tmp_path):
    outside = tmp_path / "outside.tif"
    scene(outside, (40, 40), 0)
    (root / "escape.tif").unlink(missing_ok=True)
    (root / "escape.tif").symlink_to(outside)
    small = root / "small0.tif"
    big = tmp_path / "big.tif"
    big.write_bytes(os.urandom(3 * 1024 * 1024))
    cases = [
        (form({"phrases": ["  "]}, raster=small), 400, "empty_phrase"),
        (form({"phrases": []}, raster=small), 400, "empty_phrase"),
        (form({"phrases": ["red"]}, raster=root / "notes.tif"), 400, "not_a_raster"),
        (form({"phrases": ["red"]}, raster=root / "plain.tif"), 400, "no_crs"),
        (form({"phrases": ["red"], "bbox": [0, 0, 1, 1]}, raster=small), 400, "bad_area"),
        (form({"phrases": ["red"], "keep": "some"}, raster=small), 422, "bad_params"),
        (form({"phrases": ["red"], "colour": "x"}, raster=small), 422, "bad_params"),
        ((None, {"params": "{not json"}), 422, "bad_params"),
        ((None, {"params": '{"phrases": ["red"]}'}), 400, "bad_request"),
        (form({"phrases": ["red"]}, raster=big), 413, "too_large"),
        (
            form({"phrases": ["red"]}, path=str(root / ".." / root.name / "small0.tif")),
            403,
            "path_not_allowed",
        ),
        (form({"phrases": ["red"]}, path=str(root / "escape.tif")), 403, "path_not_allowed"),
        (form({"phrases": ["red"]}, path=str(outside)), 403, "path_not_allowed"),
        (form({"phrases": ["red"]}, path="small0.tif"), 400, "bad_path"),
        (form({"phrases": ["red"]}, path=str(root / "missing.tif")), 404, "not_found"),
    ]
    for (files, data), status, code in cases:
        answer = server.post("/segment", files=files, data=data)
        assert answer.status_code == status, (code, answer.text)
        error = answer.json()["error"]
        assert error["code"] == code and len(error["message"]) > 10 and "\n" not in error["message"]
        _good_request_works(server, root)
    for method, path in (("GET", "/jobs/nope"), ("GET", "/jobs/nope/result"), ("DELETE", "/jobs/nope")):
        answer = server.request(method, path)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "unknown_job"
    _good_request_works(server, root)


def test_eight_concurrent_requests_are_all_answered_correctly(server, model, root):
    requests = [
        (root / f"small{i % 4}.tif", ["red roof"] if i < 4 else ["blue pool", "red roof"]) for i in range(8)
    ]
    expected = [direct(model, raster, phrases, **SMALL) for raster, phrases in requests]

    def send(item):
        raster, phrases = item
        files, data = form({"phrases": phrases, **SMALL}, raster=raster)
        return httpx.post(server.base_url.join("segment"), files=files, data=data, timeout=300)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, requests))
    for answer, want in zip(answers, expected):
        assert answer.status_code == 200, answer.text
        assert_same_collections(answer.json(), want)


def test_a_client_leaving_mid_run_does_not_wedge_the_server(server, root):
    base = httpx.URL(str(server.base_url))
    # 1) a body that stops halfway
    with socket.create_connection((base.host, base.port)) as sock:
        sock.sendall(
            b"POST /api/v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 100000\r\n\r\n--b\r\n"
        )
    # 2) a synchronous /segment whose client goes away while the model runs
    files, data = form(
        {"phrases": ["red"], "tile_size": 128, "overlap": 0}, raster=root / "sixteen_tiles.tif"
    )
    request = httpx.Request("POST", base.join("segment"), files=files, data=data)
    body = request.read()
    head = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items() if k.lower() != "host")
    sock = socket.create_connection((base.host, base.port))
    sock.sendall(f"POST {base.join('segment').path} HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode() + body)
    wait_for(lambda: server.get("/health").json()["busy"])
    sock.close()
    wait_for(lambda: not server.get("/health").json()["busy"], timeout=60)  # the worker was freed
    _good_request_works(server, root)


def test_non_loopback_needs_a_token(test_checkpoint, tmp_path, root):
    refused = subprocess.run(
        [RS2SAM2, "serve", "--host", "0.0.0.0", "--port", "9"],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "RS2SAM2_TOKEN"},
    )
    assert refused.returncode == 2 and "without a token" in refused.stderr and refused.stderr.count("\n") == 1
    token = {"Authorization": "Bearer s3cret"}
    args = ["--checkpoint", str(test_checkpoint), "--device", "cpu", "--token", "s3cret"]
    with running_server(args, tmp_path / "token.log", host="0.0.0.0", headers=token) as (base, _process):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            for path in ("/api/v1/health", "/openapi.json", "/api/v1/jobs/x"):
                answer = httpx.get(base + path, headers=headers)
                assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized"
        assert httpx.get(base + "/api/v1/health", headers=token).status_code == 200
        files, data = form({"phrases": ["red"], **SMALL}, raster=root / "small0.tif")
        assert (
            httpx.post(
                base + "/api/v1/segment", files=files, data=data, headers=token, timeout=120
            ).status_code
            == 200
        )
