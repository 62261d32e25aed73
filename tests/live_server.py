"""The real service in the test process: `backend.service.app.create_app` under a real uvicorn server on a
free loopback port, with a model the test chooses (a deterministic stand-in, or one it holds still).

Everything between the client and the model is the product's own code — HTTP, FastAPI, the error
codes, the job worker, the engine, GeoTIFF reading — so tests of the plugin and of the service's job
states talk to the real API; only the model is swapped (`backend.model.api.PhraseSegmenter`). What
clients sent is recorded on the way in (a pass-through ASGI layer around the app), so plugin tests can
check the requests they caused. The service's subprocess tests (tests/service/test_server.py) run the
real `rs2sam2 serve` with the real model instead.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

import httpx
import uvicorn
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.model.api import PhraseSegmenter
from backend.service.app import create_app
from backend.service.config import ServiceConfig
from rs2sam2_qgis.contract import API_PREFIX

STARTUP_TIMEOUT_S = 30
SEGMENTING_PATHS = (f"{API_PREFIX}/segment", f"{API_PREFIX}/jobs")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ReceivedRequest:
    """One segmentation request as the server received it, and how it answered."""

    endpoint: str  # "/segment" or "/jobs"
    params: dict | None = None
    path: str | None = None  # the server-side path, when the raster travelled by path
    raster_bytes: bytes | None = None  # the upload, when it travelled as a file
    raster_filename: str | None = None
    status: int | None = None  # the HTTP status of the answer
    answer: bytes = b""

    @property
    def kind(self) -> str:
        return "upload" if self.raster_bytes is not None else "path"

    @property
    def answer_json(self) -> dict:
        return json.loads(self.answer)

    @cached_property
    def raster(self) -> dict:
        """The raster: crs_wkt, size (width, height), bands, band_max, box (xmin, ymin, xmax, ymax)."""
        from rasterio.io import MemoryFile

        with contextlib.ExitStack() as stack:
            if self.raster_bytes is not None:
                dataset = stack.enter_context(stack.enter_context(MemoryFile(self.raster_bytes)).open())
            else:
                import rasterio

                dataset = stack.enter_context(rasterio.open(self.path))
            data = dataset.read()
            return {
                "crs_wkt": dataset.crs.to_wkt() if dataset.crs else "",
                "size": (dataset.width, dataset.height),
                "bands": dataset.count,
                "band_max": [float(band.max()) for band in data],
                "box": list(dataset.bounds),
            }


class RecordingApp:
    """Pass-through ASGI layer: reads a segmentation request's body, records its form, replays it."""

    def __init__(self, app: ASGIApp, requests: list[ReceivedRequest]):
        self.app = app
        self.requests = requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in SEGMENTING_PATHS:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        record = ReceivedRequest(endpoint=scope["path"].removeprefix(API_PREFIX))
        if messages[-1]["type"] == "http.request":  # a whole body (not a client that left midway)
            await self._read_form(scope, messages, record)
        self.requests.append(record)
        replay = list(messages)

        async def replaying_receive() -> Message:
            return replay.pop(0) if replay else await receive()

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            elif message["type"] == "http.response.body":
                record.answer += message.get("body", b"")
            await send(message)

        await self.app(scope, replaying_receive, recording_send)

    @staticmethod
    async def _read_form(scope: Scope, messages: list[Message], record: ReceivedRequest) -> None:
        copy = list(messages)

        async def copied_receive() -> Message:
            return copy.pop(0) if copy else {"type": "http.disconnect"}

        try:
            async with Request(scope, copied_receive).form() as form:
                if isinstance(form.get("params"), str):
                    try:
                        record.params = json.loads(form["params"])
                    except json.JSONDecodeError:
                        record.params = None
                if isinstance(form.get("path"), str):
                    record.path = form["path"]
                raster = form.get("raster")
                if raster is not None and not isinstance(raster, str):
                    record.raster_bytes = await raster.read()
                    record.raster_filename = raster.filename
        except Exception:  # noqa: BLE001 - a malformed form is the server's to refuse; record nothing more
            pass


@dataclass
class LiveServer:
    url: str  # http://127.0.0.1:PORT
    model: PhraseSegmenter
    requests: list[ReceivedRequest] = field(default_factory=list)
    app: object = None  # the FastAPI app (its state: `app.state.service`)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def api(self) -> str:
        return self.url + API_PREFIX

    def client(self, token: str | None = None, timeout: float = 60) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        return httpx.Client(base_url=self.api, headers=headers, timeout=timeout)

    @property
    def job_ids(self) -> list[str]:
        """The ids of the jobs created so far, in order."""
        return [r.answer_json["job_id"] for r in self.requests if r.endpoint == "/jobs" and r.status == 202]

    def job(self, job_id: str, token: str | None = None) -> dict:
        """A job's status as the API reports it."""
        with self.client(token) as client:
            answer = client.get(f"/jobs/{job_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def stop(self) -> None:
        release = getattr(self.model, "release", None)
        if release is not None:
            release()  # a held model must let its worker go, or the shutdown waits for it
        if self._server is not None and self._thread is not None and self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join(timeout=30)
            assert not self._thread.is_alive(), "the in-process server did not stop"


@contextlib.contextmanager
def live_server(
    model: PhraseSegmenter, config: ServiceConfig | None = None, device: str = "cpu", record: bool = True
) -> Iterator[LiveServer]:
    """The real app serving `model` on a free loopback port until the block ends."""
    # The socket is bound here and handed to uvicorn: no other process can take the port in between.
    # IPPROTO_TCP named, as uvicorn's own bind does: asyncio sets TCP_NODELAY only on connections of such a
    # socket, and without it every answer (headers and body written apart) waited ~40 ms for a delayed ACK.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    live = LiveServer(url=f"http://127.0.0.1:{port}", model=model)
    app = create_app(config or ServiceConfig(), model, device)
    live.app = app
    served = RecordingApp(app, live.requests) if record else app
    server = uvicorn.Server(
        uvicorn.Config(
            served,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
    )
    # uvicorn installs signal handlers only in the main thread: in this thread it leaves them alone.
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name=f"live-server-{port}", daemon=True
    )
    live._server, live._thread = server, thread
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the in-process server stopped while starting")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the in-process server did not start in {STARTUP_TIMEOUT_S} s")
            time.sleep(0.01)
        yield live
    finally:
        live.stop()
        listener.close()


def wait_until(condition, timeout_s: float = 30.0, what: str = "the condition", interval_s: float = 0.01):
    """Poll `condition` until it holds (returns its value). For states that will come — never for
    catching a moment that may pass."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)
