"""Service test helpers: the real `rs2sam2 serve` as a subprocess on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.engine.conftest import test_checkpoint  # noqa: F401 - the same seeded test-preset checkpoint

RS2SAM2 = str(Path(sys.executable).parent / "rs2sam2")
STARTUP_TIMEOUT_S = 180  # loading torch + the model on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(args: list[str], log_path: Path, host: str = "127.0.0.1", headers: dict | None = None):
    """Start `rs2sam2 serve`, wait until /health answers, yield (base URL, process); stop it after."""
    port = free_port()
    with open(log_path, "w") as log:
        # One torch thread: on the shared 2-core test machine two threads stall each other.
        process = subprocess.Popen(
            [RS2SAM2, "serve", "--host", host, "--port", str(port), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
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
