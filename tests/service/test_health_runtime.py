"""/health says how the model runs: its precision mode and the CPU threads the server chose."""

from __future__ import annotations

import httpx
import numpy as np
import torch

from backend.service.app import create_app
from backend.service.config import ServiceConfig
from tests.live_server import live_server


class _Model:
    model_id = "runtime-standin"
    input_size = 64

    def __init__(self, precision=None):
        if precision is not None:
            self.precision = precision

    def predict(self, image, phrases):
        raise AssertionError("not called")


def test_health_reports_precision_and_threads_of_a_real_predictor():
    from backend.model.factory import load_predictor

    predictor = load_predictor(preset="test", device="cpu", precision="int8")
    with live_server(predictor, ServiceConfig()) as server:
        model = httpx.get(f"{server.url}/api/v1/health").json()["model"]
    assert model["precision"] == "int8"
    assert model["threads"] == torch.get_num_threads() == 1  # as torch runs now (tests/conftest.py)


def test_health_reports_the_threads_the_server_chose_itself(tmp_path):
    """The real `rs2sam2 serve` started with no --threads and no OMP_NUM_THREADS chooses the machine's
    physical cores (backend/engine/threads.py) and says so in /health; with --threads 1, one."""
    from backend.engine.threads import physical_cores
    from tests.service.conftest import DEMO_CHECKPOINT, running_server

    cores = physical_cores()
    for args, expected in (([], cores), (["--threads", "1"], 1)):
        log = tmp_path / f"serve{len(args)}.log"
        command = ["--checkpoint", str(DEMO_CHECKPOINT), "--precision", "fp32", *args]
        with running_server(command, log, env={"OMP_NUM_THREADS": None}) as (base, _):
            model = httpx.get(f"{base}/api/v1/health", timeout=10).json()["model"]
        assert (model["threads"], model["precision"]) == (expected, "fp32"), log.read_text()[-2000:]
        assert f"{expected} thread" in log.read_text()  # the start-up line says the same


def test_a_stand_in_without_precision_reports_none():
    app = create_app(ServiceConfig(), _Model(), "cpu", threads=3)
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        model = client.get("/api/v1/health").json()["model"]
    assert model["precision"] == ""  # a stand-in has no precision
    assert np.isfinite(model["input_size"])
