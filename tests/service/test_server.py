"""The real `rs2sam2 serve` (subprocess, free loopback port, the bundled demo model: a trained
`test`-preset RS2-SAM 2) over HTTP, compared with the engine run in this process on the same model.

Job states, cancelling and clients that leave are tested with a model the test holds still, in
test_jobs.py (the real app in this process); model faults in test_faults.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from affine import Affine

from backend.engine.options import EngineOptions
from backend.engine.segment import segment
from tests.engine.rasters import write_geotiff
from tests.live_server import wait_until
from tests.service.conftest import DEMO_CHECKPOINT, RS2SAM2, running_server
from tests.service.helpers import API, assert_same_collections, form

pytestmark = pytest.mark.slow
SMALL = {"tile_size": 128, "overlap": 16}
GSD = 0.5  # metres per pixel of the synthetic scenes
JOB_DEADLINE_S = 300  # the longest a job of the demo model may take here (seconds on this CPU)
# Kinds and colours of the demo model's training scenes (training.data.synthetic's vocabulary).
PHRASES = ["the brown farmland", "the grey road"]


def scene(path: Path, size: tuple[int, int], seed: int, crs: str | None = "EPSG:32633") -> Path:
    """A synthetic land-cover scene of the kind the demo model knows, cut to `size` (rows, columns)."""
    from training.data.synthetic import generate_scene

    generated = generate_scene(seed, size=max(size), gsd=GSD, kinds=("field", "pond", "river", "road"))
    data = np.ascontiguousarray(generated.image[: size[0], : size[1]].transpose(2, 0, 1))
    transform = generated.transform if crs else Affine.identity()
    return write_geotiff(path, data, crs=crs, transform=transform)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """The folder the server allows paths under, with rasters of several sizes."""
    folder = tmp_path_factory.mktemp("allowed")
    for seed in range(4):
        scene(folder / f"small{seed}.tif", (80, 90), seed)
    scene(folder / "four_tiles.tif", (180, 200), 5)
    scene(folder / "plain.tif", (60, 60), 7, crs=None)
    (folder / "notes.tif").write_text("not a raster at all")
    return folder


@pytest.fixture(scope="module")
def served(root, tmp_path_factory):
    """The module's server: (client, process, log path)."""
    log = tmp_path_factory.mktemp("log") / "server.log"
    args = [
        "--checkpoint",
        str(DEMO_CHECKPOINT),
        "--device",
        "cpu",
        "--allow-path",
        str(root),
        "--max-upload-mb",
        "1",
    ]
    with running_server(args, log) as (base, process):
        with httpx.Client(base_url=base + API, timeout=120) as client:
            yield client, process, log


@pytest.fixture(scope="module")
def server(served):
    return served[0]


@pytest.fixture(scope="module")
def model():
    from backend.model.factory import load_predictor

    return load_predictor(checkpoint=DEMO_CHECKPOINT, device="cpu")


def direct(model, raster: Path, phrases: list[str], **options) -> dict:
    """The engine's own answer for the same input, computed in this process."""
    opts = EngineOptions(keep=options.pop("keep", "best"), **options)
    return segment(raster, phrases, model, opts).to_geojson()


def test_health_and_openapi(server):
    health = server.get("/health").json()
    assert health["status"] == "ok" and health["version"]
    assert health["model"] == {
        "id": DEMO_CHECKPOINT.stem,
        "preset": "test",
        "input_size": 128,
        "device": "cpu",
        "precision": "fp32",  # auto: bf16 does not pay at 128 px, or no native bf16
        "threads": 1,  # OMP_NUM_THREADS=1 (running_server): the choice the server made, reported
    }
    assert health["busy"] is False and health["allow_paths"] is True and health["max_upload_mb"] == 1
    paths = httpx.get(server.base_url.copy_with(path="/openapi.json")).json()["paths"]
    assert {f"{API}/health", f"{API}/segment", f"{API}/jobs", f"{API}/jobs/{{job_id}}"} <= set(paths)


def test_segment_by_upload_and_by_path_match_the_engine(server, model, root):
    raster = root / "small1.tif"
    params = {"phrases": PHRASES, **SMALL}
    expected = direct(model, raster, PHRASES, **SMALL)
    assert expected["features"]  # the demo model finds something: the comparison is not empty
    files, data = form(params, raster=raster)
    uploaded = server.post("/segment", files=files, data=data)
    assert uploaded.status_code == 200, uploaded.text
    assert_same_collections(uploaded.json(), expected, GSD)
    assert uploaded.json()["crs"]["properties"]["name"] == "EPSG:32633"
    assert uploaded.json()["stats"]["tiles"] == 1
    by_path = server.post("/segment", data=form(params, path=str(raster))[1])
    assert by_path.status_code == 200, by_path.text
    assert_same_collections(by_path.json(), expected, GSD)


def test_a_job_by_path_ends_with_its_progress_complete_and_the_engines_result(server, model, root):
    raster = root / "four_tiles.tif"
    created = server.post(
        "/jobs", data=form({"phrases": PHRASES, "keep": "all", **SMALL}, path=str(raster))[1]
    )
    assert created.status_code == 202 and created.json()["status"] == "queued"
    job_id = created.json()["job_id"]
    # Asked until final; the states on the way are held and checked in test_jobs.py.
    status = wait_until(
        lambda: (answer := server.get(f"/jobs/{job_id}").json())["status"] not in ("queued", "running")
        and answer,
        timeout_s=JOB_DEADLINE_S,
        what="the job to end",
        interval_s=0.05,
    )
    assert status == {"job_id": job_id, "status": "done", "progress": {"done": 4, "total": 4}, "error": None}
    result = server.get(f"/jobs/{job_id}/result")
    assert result.status_code == 200 and result.json()["stats"]["tiles"] == 4
    expected = direct(model, raster, PHRASES, keep="all", **SMALL)
    assert expected["features"]
    assert_same_collections(result.json(), expected, GSD)


def _good_request_works(server, root) -> None:
    files, data = form({"phrases": PHRASES[:1], **SMALL}, raster=root / "small0.tif")
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
        (form({"phrases": ["the pond"]}, raster=root / "notes.tif"), 400, "not_a_raster"),
        (form({"phrases": ["the pond"]}, raster=root / "plain.tif"), 400, "no_crs"),
        (form({"phrases": ["the pond"], "bbox": [0, 0, 1, 1]}, raster=small), 400, "bad_area"),
        (form({"phrases": ["the pond"], "keep": "some"}, raster=small), 422, "bad_params"),
        (form({"phrases": ["the pond"], "colour": "x"}, raster=small), 422, "bad_params"),
        ((None, {"params": "{not json"}), 422, "bad_params"),
        ((None, {"params": '{"phrases": ["the pond"]}'}), 400, "bad_request"),
        (form({"phrases": ["the pond"]}, raster=big), 413, "too_large"),
        (
            form({"phrases": ["the pond"]}, path=str(root / ".." / root.name / "small0.tif")),
            403,
            "path_not_allowed",
        ),
        (form({"phrases": ["the pond"]}, path=str(root / "escape.tif")), 403, "path_not_allowed"),
        (form({"phrases": ["the pond"]}, path=str(outside)), 403, "path_not_allowed"),
        (form({"phrases": ["the pond"]}, path="small0.tif"), 400, "bad_path"),
        (form({"phrases": ["the pond"]}, path=str(root / "missing.tif")), 404, "not_found"),
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
    requests = [(root / f"small{i % 4}.tif", PHRASES[:1] if i < 4 else PHRASES[::-1]) for i in range(8)]
    expected = [direct(model, raster, phrases, **SMALL) for raster, phrases in requests]

    def send(item):
        raster, phrases = item
        files, data = form({"phrases": phrases, **SMALL}, raster=raster)
        return httpx.post(server.base_url.join("segment"), files=files, data=data, timeout=300)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, requests))
    for answer, want in zip(answers, expected):
        assert answer.status_code == 200, answer.text
        assert_same_collections(answer.json(), want, GSD)


def test_non_loopback_needs_a_token(tmp_path, root):
    refused = subprocess.run(
        [RS2SAM2, "serve", "--host", "0.0.0.0", "--port", "9"],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "RS2SAM2_TOKEN"},
    )
    assert refused.returncode == 2 and "without a token" in refused.stderr and refused.stderr.count("\n") == 1
    token = {"Authorization": "Bearer s3cret"}
    args = ["--checkpoint", str(DEMO_CHECKPOINT), "--device", "cpu", "--token", "s3cret"]
    with running_server(args, tmp_path / "token.log", host="0.0.0.0", headers=token) as (base, _process):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            for path in ("/api/v1/health", "/openapi.json", "/api/v1/jobs/x"):
                answer = httpx.get(base + path, headers=headers)
                assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized"
        assert httpx.get(base + "/api/v1/health", headers=token).status_code == 200
        files, data = form({"phrases": PHRASES[:1], **SMALL}, raster=root / "small0.tif")
        assert (
            httpx.post(
                base + "/api/v1/segment", files=files, data=data, headers=token, timeout=120
            ).status_code
            == 200
        )


def test_the_three_failures_of_issue_17_are_4xx_with_the_shipped_defaults(server, root, tmp_path):
    """As first tried: a GeoTIFF upload cut short, a tile of 10⁹ pixels, 10,000 phrases."""
    cut = tmp_path / "cut.tif"
    cut.write_bytes((root / "four_tiles.tif").read_bytes()[:5000])
    cases = [
        (form({"phrases": PHRASES[:1]}, raster=cut), "unreadable_raster"),
        (
            form(
                {"phrases": PHRASES[:1], "tile_size": 10**9, "context": "tiles"},
                path=str(root / "small0.tif"),
            ),
            "bad_tiling",
        ),
        (form({"phrases": PHRASES[:1] * 10_000}, path=str(root / "small0.tif")), "too_many_phrases"),
    ]
    for (files, data), code in cases:
        answer = server.post("/segment", files=files, data=data, timeout=30)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == code, answer.text
    assert server.get("/health").json()["busy"] is False
    _good_request_works(server, root)


def test_sigterm_while_a_job_runs_cancels_it_and_exits_0_within_seconds(served, root):
    """The real command with the real model stopped by SIGTERM mid-job. It stops the module's server,
    so it stays the last test of this module."""
    client, process, log = served
    big = write_geotiff(root / "big.tif", np.full((3, 1024, 1024), 120, np.uint8))
    tiles = {"phrases": PHRASES, "context": "tiles", "tile_size": 128, "overlap": 16}  # 81 tiles
    running = client.post("/jobs", data=form(tiles, path=str(big))[1]).json()["job_id"]
    assert client.post("/jobs", data=form(tiles, path=str(big))[1]).status_code == 202  # waits behind

    def at_work() -> bool:  # the model is at work on the first job
        status = client.get(f"/jobs/{running}").json()
        assert status["status"] in ("queued", "running"), status
        return status["progress"]["done"] >= 1

    wait_until(at_work, timeout_s=JOB_DEADLINE_S, what="the first tile of the job", interval_s=0.05)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    assert time.monotonic() - started < 30  # what was left: 161 tiles of two jobs, minutes on this CPU
    text = log.read_text()
    assert "shutting down: 2 job(s) cancelled" in text and "Traceback" not in text
