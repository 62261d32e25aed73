"""Load and shutdown, for real on loopback.

- 8 clients × 10 requests at once, good ones and bad ones mixed, against the real app (colour stand-in):
  every good answer is the one the same request gets alone, every bad one its 4xx, and /health answers
  all along;
- `rs2sam2 serve` (the real command, the stand-in model taking its time over each tile:
  tests/standin_serve.py) stopped with SIGTERM while jobs run: they are cancelled, the waiting client
  hears 503 `shutting_down`, and the process exits 0 within seconds.
"""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.engine.rasters import background, cut_short, good_scene, paint, write_geotiff
from tests.engine.standin import ColourModel
from tests.live_server import wait_until
from tests.service.helpers import assert_error, form
from tests.standin_serve import MARKER, TILE_S, start_serve

ROOT = Path(__file__).resolve().parents[2]
CLIENTS, REQUESTS_EACH = 8, 10
HEALTH_TIMEOUT_S = 10  # /health must answer within this, however busy the worker is


def _scene(path: Path, seed: int) -> Path:
    data = background(120, 120, seed=seed)
    paint(data, slice(10 + seed, 40 + seed), slice(20, 60), (255, 0, 0))
    paint(data, slice(70, 110), slice(15 + 2 * seed, 45 + 2 * seed), (0, 0, 255))
    return write_geotiff(path, data)


@pytest.fixture
def data(tmp_path) -> tuple[Path, list[tuple[str, dict, str | None, int | None, str | None]]]:
    """(allowed root, the requests: (name, params, upload or path, expected status, expected code))."""
    root = tmp_path / "root"
    root.mkdir()
    for seed in range(3):
        _scene(root / f"scene{seed}.tif", seed)
    cut = cut_short(root / "scene0.tif", tmp_path / "cut.tif")
    good_scene(tmp_path / "outside.tif")
    tiles = {"context": "tiles", "tile_size": 64, "overlap": 8}
    requests = [
        ("upload-best", {"phrases": ["red"]}, f"upload:{root / 'scene0.tif'}", None, None),
        (
            "path-all-tiles",
            {"phrases": ["red", "blue"], "keep": "all", **tiles},
            str(root / "scene1.tif"),
            None,
            None,
        ),
        (
            "path-bbox",
            {"phrases": ["blue"], "bbox": [500020, 4999780, 500200, 4999900]},
            str(root / "scene2.tif"),
            None,
            None,
        ),
        (
            "upload-gsd",
            {"phrases": ["red"], "gsd": 4.0, "keep": "all"},
            f"upload:{root / 'scene1.tif'}",
            None,
            None,
        ),
        (
            "path-view-all",
            {"phrases": ["blue", "red"], "keep": "all", "context": "view"},
            str(root / "scene0.tif"),
            None,
            None,
        ),
        ("cut-short", {"phrases": ["red"]}, f"upload:{cut}", 400, "unreadable_raster"),
        (
            "tile-1e9",
            {"phrases": ["red"], "tile_size": 10**9, "context": "tiles"},
            str(root / "scene0.tif"),
            400,
            "bad_tiling",
        ),
        ("10k-phrases", {"phrases": ["red"] * 10_000}, str(root / "scene0.tif"), 400, "too_many_phrases"),
        ("outside", {"phrases": ["red"]}, str(tmp_path / "outside.tif"), 403, "path_not_allowed"),
        (
            "bad-crs",
            {"phrases": ["red"], "bbox": [0, 0, 1, 1], "bbox_crs": "EPSG:nope"},
            str(root / "scene0.tif"),
            400,
            "bad_area",
        ),
    ]
    return root, requests


def _send(client: httpx.Client, params: dict, raster: str):
    if raster.startswith("upload:"):
        files, fields = form(params, raster=Path(raster.removeprefix("upload:")))
    else:
        files, fields = form(params, path=raster)
    return client.post("/segment", files=files, data=fields)


def _comparable(collection: dict) -> dict:
    """The answer without what differs between two runs of one request (time stamps, seconds)."""
    features = [
        {**feature, "properties": {k: v for k, v in feature["properties"].items() if k != "created"}}
        for feature in collection["features"]
    ]
    return {"crs_wkt": collection["crs_wkt"], "features": features, "tiles": collection["stats"]["tiles"]}


def test_eight_clients_mixing_good_and_bad_requests(serve, data):
    root, requests = data
    live = serve(ColourModel(64), allowed_roots=(root,))
    with live.client() as alone:  # every good request run alone first: the answers to compare with
        expected = {}
        for name, params, raster, status, _code in requests:
            if status is None:
                answer = _send(alone, params, raster)
                assert answer.status_code == 200, (name, answer.text)
                expected[name] = _comparable(answer.json())
        assert any(expected[name]["features"] for name in expected)

    health_failures: list[str] = []
    health_answers = []
    stop = threading.Event()

    def watch_health() -> None:
        with live.client(timeout=HEALTH_TIMEOUT_S) as client:
            while not stop.is_set():
                try:
                    answer = client.get("/health")
                    health_answers.append(answer.status_code)
                    if answer.status_code != 200:
                        health_failures.append(answer.text)
                except httpx.HTTPError as exc:
                    health_failures.append(repr(exc))
                stop.wait(0.05)

    def client_run(index: int) -> list[tuple[str, httpx.Response]]:
        # Each client from its own loopback address, its requests in its own order.
        transport = httpx.HTTPTransport(local_address=f"127.0.0.{index + 2}")
        order = requests[index % len(requests) :] + requests[: index % len(requests)]
        with httpx.Client(base_url=live.api, transport=transport, timeout=120) as client:
            return [
                (name, _send(client, params, raster)) for name, params, raster, _, _ in order[:REQUESTS_EACH]
            ]

    watcher = threading.Thread(target=watch_health, daemon=True)
    watcher.start()
    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            results = [answer for answers in pool.map(client_run, range(CLIENTS)) for answer in answers]
    finally:
        stop.set()
        watcher.join(HEALTH_TIMEOUT_S + 5)
    wanted = {name: (status, code) for name, _, _, status, code in requests}
    assert len(results) == CLIENTS * REQUESTS_EACH
    for name, answer in results:
        status, code = wanted[name]
        if status is None:
            assert answer.status_code == 200, (name, answer.text)
            assert _comparable(answer.json()) == expected[name], name
        else:
            assert_error(answer, status, code)
    assert health_failures == [] and len(health_answers) >= 3
    with live.client() as client:
        assert client.get("/health").json()["busy"] is False


def test_sigterm_cancels_the_running_jobs_and_exits_0_within_seconds(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    write_geotiff(root / "big.tif", background(512, 512))
    marker = tmp_path / "model-entered"
    # Each tile takes 0.2 s; a job of 1024 tiles would run for minutes.
    process, url = start_serve(root, tmp_path / "serve.log", {MARKER: str(marker), TILE_S: "0.2"})
    try:
        params = {"phrases": ["red"], "context": "tiles", "tile_size": 16, "overlap": 0}
        fields = form(params, path=str(root / "big.tif"))[1]
        waiting: list[httpx.Response] = []
        segment = threading.Thread(
            target=lambda: waiting.append(httpx.post(f"{url}/segment", data=fields, timeout=60))
        )
        segment.start()
        wait_until(marker.exists, 60, "the first job to reach the model")
        queued = httpx.post(f"{url}/jobs", data=fields, timeout=30)
        assert queued.status_code == 202
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert time.monotonic() - started < 20  # what was left of the first job alone: over 3 minutes
        segment.join(30)
        assert_error(waiting[0], 503, "shutting_down")
        log = (tmp_path / "serve.log").read_text()
        assert "shutting down: 2 job(s) cancelled" in log and "Traceback" not in log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
