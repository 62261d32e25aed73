"""Job states over HTTP, with the real app in this process and a model the test holds still.

`HeldModel` (tests/engine/standin.py) blocks in `predict` until the test releases it, so "queued",
"running" and "cancelled before the next tile" are states each test holds, not moments it tries to
catch: the results are the same on a slow or a fast machine.
"""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

import httpx
import pytest

from backend.engine.options import EngineOptions
from backend.engine.segment import segment
from tests.engine.rasters import PIXEL, background, paint, write_geotiff
from tests.engine.standin import ColourModel, HeldModel
from tests.live_server import wait_until
from tests.service.helpers import assert_same_collections, form

HOLD_S = 30  # how long a test waits for a state that must come (the model entered, the job ended)
# Tiles mode: a job's steps are its tiles (view mode, keep "best"'s default, would see 128 × 128 whole).
FOUR = {"tile_size": 64, "overlap": 0, "context": "tiles"}  # 128 × 128 → 4 tiles
SIXTEEN = {"tile_size": 32, "overlap": 0, "context": "tiles"}  # → 16 tiles


@pytest.fixture
def root(tmp_path) -> Path:
    data = background(128, 128)
    paint(data, slice(20, 50), slice(30, 70), (255, 0, 0))
    paint(data, slice(80, 120), slice(10, 40), (0, 0, 255))
    write_geotiff(tmp_path / "scene.tif", data)
    return tmp_path


@pytest.fixture
def held(serve, root):
    """(client, model): the real app serving a held model, reading paths under `root`."""
    model = HeldModel()
    live = serve(model, allowed_roots=(root,))
    with live.client() as client:
        yield client, model


def submit(client: httpx.Client, root: Path, phrases: list[str], tiling: dict) -> str:
    answer = client.post("/jobs", data=form({"phrases": phrases, **tiling}, path=str(root / "scene.tif"))[1])
    assert answer.status_code == 202 and answer.json()["status"] == "queued", answer.text
    return answer.json()["job_id"]


def status(client: httpx.Client, job_id: str) -> dict:
    return client.get(f"/jobs/{job_id}").json()


def test_a_running_job_stays_running_and_its_result_is_not_ready_until_it_ends(held, root):
    client, model = held
    job_id = submit(client, root, ["red"], FOUR)
    assert model.entered.wait(HOLD_S)  # the worker is inside the first tile, and stays there
    assert status(client, job_id) == {
        "job_id": job_id,
        "status": "running",
        "progress": {"done": 0, "total": 4},
        "error": None,
    }
    assert client.get("/health").json()["busy"] is True  # health answers while the model runs
    early = client.get(f"/jobs/{job_id}/result")
    assert early.status_code == 409 and early.json()["error"]["code"] == "not_done"
    model.release()
    wait_until(lambda: status(client, job_id)["status"] == "done", HOLD_S, "the job to end")
    assert status(client, job_id)["progress"] == {"done": 4, "total": 4}
    assert model.started == 4 and client.get("/health").json()["busy"] is False
    result = client.get(f"/jobs/{job_id}/result")
    assert result.status_code == 200
    reference = ColourModel(model_id=model.model_id)  # the held model without the hold
    expected = segment(root / "scene.tif", ["red"], reference, EngineOptions(keep="best", **FOUR))
    assert len(expected.features) == 1
    assert_same_collections(result.json(), expected.to_geojson(), PIXEL)


def test_a_queued_job_waits_for_the_running_one_and_can_be_cancelled_before_it_starts(held, root):
    client, model = held
    first = submit(client, root, ["red"], FOUR)
    assert model.entered.wait(HOLD_S)
    second = submit(client, root, ["blue"], FOUR)
    assert status(client, second)["status"] == "queued"  # one worker: it waits while the first runs
    cancelled = client.delete(f"/jobs/{second}")
    assert cancelled.status_code == 200 and cancelled.json() == {"job_id": second, "status": "cancelled"}
    model.release()
    wait_until(lambda: status(client, first)["status"] == "done", HOLD_S, "the first job to end")
    wait_until(lambda: not client.get("/health").json()["busy"], HOLD_S, "the worker to be idle")
    assert status(client, second)["status"] == "cancelled" and status(client, second)["progress"]["done"] == 0
    assert model.started == 4  # the first job's tiles only: the cancelled one never reached the model
    answer = client.get(f"/jobs/{second}/result")
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "cancelled"


def test_cancel_stops_a_running_job_before_its_next_tile(held, root):
    client, model = held
    job_id = submit(client, root, ["red"], SIXTEEN)
    assert model.entered.wait(HOLD_S)
    cancelled = client.delete(f"/jobs/{job_id}")
    assert cancelled.status_code == 200 and cancelled.json() == {"job_id": job_id, "status": "cancelled"}
    assert status(client, job_id)["status"] == "cancelled"  # at once, though the tile is still running
    model.release()
    wait_until(lambda: not client.get("/health").json()["busy"], HOLD_S, "the worker to stop")
    assert model.started == 1  # the tile under way finished; no other tile started
    final = status(client, job_id)
    assert final["status"] == "cancelled" and final["progress"] == {"done": 1, "total": 16}
    answer = client.get(f"/jobs/{job_id}/result")
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "cancelled"


def test_a_finished_job_cannot_be_cancelled_and_keeps_its_result(held, root):
    client, model = held
    model.release()
    job_id = submit(client, root, ["red"], FOUR)
    wait_until(lambda: status(client, job_id)["status"] == "done", HOLD_S, "the job to end")
    refused = client.delete(f"/jobs/{job_id}")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "already_finished"
    assert status(client, job_id)["status"] == "done"
    assert client.get(f"/jobs/{job_id}/result").status_code == 200


class _LogSeen(logging.Handler):
    """Sets `seen` when the service logs a message containing `text`."""

    def __init__(self, text: str):
        super().__init__(logging.INFO)
        self.text = text
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


@pytest.fixture
def service_log():
    logger = logging.getLogger("rs2sam2.service")
    handler, level = _LogSeen("client left"), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_a_client_leaving_mid_run_does_not_wedge_the_server(serve, root, service_log):
    model = HeldModel()
    live = serve(model)
    port = int(live.url.rsplit(":", 1)[1])
    # 1) a body that stops halfway
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /api/v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 100000\r\n\r\n--b\r\n"
        )
    # 2) a synchronous /segment whose client goes away while the model runs
    files, data = form({"phrases": ["red"], **SIXTEEN}, raster=root / "scene.tif")
    request = httpx.Request("POST", f"{live.api}/segment", files=files, data=data)
    body = request.read()
    head = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items() if k.lower() != "host")
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"POST /api/v1/segment HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode() + body)
    assert model.entered.wait(HOLD_S)
    sock.close()
    # The server notices (it checks its waiting clients every 50 ms) and cancels that run.
    assert service_log.seen.wait(HOLD_S)
    model.release()
    with live.client() as client:
        wait_until(lambda: not client.get("/health").json()["busy"], HOLD_S, "the worker to be freed")
        assert model.started == 1  # the run stopped after the tile under way
        files, data = form({"phrases": ["red"], **FOUR}, raster=root / "scene.tif")
        answer = client.post("/segment", files=files, data=data)
    assert answer.status_code == 200 and len(answer.json()["features"]) == 1
