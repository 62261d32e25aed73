"""Service test fixtures: the real `rs2sam2 serve` as a subprocess on a free loopback port (the real model),
and the real app in this process with a stand-in model (tests/live_server.py)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from backend.service.config import ServiceConfig
from tests.live_server import LiveServer, free_port, live_server

RS2SAM2 = str(Path(sys.executable).parent / "rs2sam2")
STARTUP_TIMEOUT_S = 180  # loading torch + the model on a busy 2-core machine


REPO = Path(__file__).resolve().parents[2]
# The bundled demo model: a trained `test`-preset model whose probabilities keep clear of the threshold,
# so two processes running it agree on every feature, not just on most pixels.
DEMO_CHECKPOINT = REPO / "backend" / "demo" / "assets" / "rs2sam2-demo.safetensors"


@contextlib.contextmanager
def running_server(
    args: list[str],
    log_path: Path,
    host: str = "127.0.0.1",
    headers: dict | None = None,
    env: dict[str, str | None] | None = None,
):
    """Start `rs2sam2 serve`, wait until /health answers, yield (base URL, process); stop it after.
    `env`: variables to set in the server's environment (None: removed)."""
    port = free_port()
    # One torch thread: on the shared 2-core test machine two threads stall each other.
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name, value in (env or {}).items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [RS2SAM2, "serve", "--host", host, "--port", str(port), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited early:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/api/v1/health", headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield base, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def serve():
    """Start the real app in this process: `serve(model, **ServiceConfig fields) -> LiveServer`."""
    with contextlib.ExitStack() as stack:

        def start(model, record: bool = False, **config) -> LiveServer:
            return stack.enter_context(live_server(model, ServiceConfig(**config), record=record))

        yield start
