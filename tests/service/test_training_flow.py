"""A real fine-tuning through the service, end to end: the real app on loopback, the real
`rs2sam2 train` in a child process (the bundled demo model, 30 steps on a 256² region), and the real
`rs2sam2 evaluate --region` queued behind it. Progress is observed, the run is cancelled at a step
boundary (resumable), the queued evaluation runs meanwhile, the run resumes to the end, and the model
it registered is listed and segments by name."""

from __future__ import annotations

import pytest

from backend.cli import main as rs2sam2
from tests.engine.standin import ColourModel
from tests.live_server import wait_until
from tests.service.training_regions import post, region, status_of


@pytest.fixture
def own_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("RS2SAM2_TRAINING_DIR", str(tmp_path / "training"))
    monkeypatch.setenv("RS2SAM2_MODELS", str(tmp_path / "models"))
    return tmp_path


def test_train_cancel_evaluate_resume_and_segment_by_name(serve, own_folders):
    tmp_path = own_folders
    raster, labels = region(tmp_path, suffix=".geojson", crs="EPSG:4326", with_bad=True)
    server = serve(ColourModel())
    with server.client(timeout=120) as client:
        params = {"name": "my roofs", "max_steps": 30, "replay": False, "seed": 3}
        created = post(client, "/train", raster, labels, params)
        assert created.status_code == 202, created.text
        body = created.json()
        job_id = body["job_id"]
        assert body["status_url"].endswith(f"/training/{job_id}")
        assert body["labels"] == {
            "used": 36,
            "outside": 1,
            "empty": 1,
            "no_phrase": 1,
            "reprojected_from": body["labels"]["reprojected_from"],
        }
        assert "4326" in body["labels"]["reprojected_from"]

        queued = post(client, "/evaluate", raster, labels, {})  # one job at a time: it waits
        assert queued.status_code == 202, queued.text
        eval_id = queued.json()["job_id"]
        assert queued.json()["queue_position"] == 1
        assert status_of(client, eval_id)["state"] == "queued"
        assert "waiting" in status_of(client, eval_id)["message"]

        training = wait_until(
            lambda: (s := status_of(client, job_id))["step"] >= 2 and s, timeout_s=120, what="training steps"
        )
        assert training["state"] == "running" and training["total_steps"] == 30
        assert training["loss"] is not None and "shares the CPU/GPU" in training["message"]
        health = client.get("/health")  # segmentation's side answers meanwhile, and says what trains
        assert health.status_code == 200 and health.json()["training"].startswith("fine-tuning “")
        assert client.get("/training").json()["running"] == job_id

        assert client.delete(f"/training/{job_id}").status_code == 200
        stopped = wait_until(
            lambda: (s := status_of(client, job_id))["state"] == "cancelled" and s,
            timeout_s=120,
            what="a stop",
        )
        assert stopped["resumable"] and 2 <= stopped["step"] < 30
        run = tmp_path / "training" / job_id / "run"
        assert (run / "last_state.pt").is_file() and not list(run.glob(".*.part"))

        evaluated = wait_until(
            lambda: (s := status_of(client, eval_id))["state"] in ("done", "failed") and s, timeout_s=180
        )
        assert evaluated["state"] == "done", evaluated
        scores = client.get(f"/training/{eval_id}/result").json()
        assert set(scores["overall"]) >= {"Pr@0.5", "Pr@0.9", "oIoU", "mIoU", "samples"}
        assert scores["overall"]["samples"] == 36 and scores["by_kind"]
        assert set(scores["by_phrase"]) == {"the red roof", "the blue pool"}

        resumed = client.post(f"/training/{job_id}/resume")
        assert resumed.status_code == 200 and resumed.json()["state"] in ("queued", "running")
        done = wait_until(
            lambda: (s := status_of(client, job_id))["state"] in ("done", "failed") and s, timeout_s=180
        )
        assert done["state"] == "done" and done["step"] == 30, done
        model = client.get(f"/training/{job_id}/result").json()
        assert model["name"] == "my roofs" and model["labels"] == 36 and model["start_model"] == "demo"
        assert model["recipe"]["steps"] == 30 and model["recipe"]["seed"] == 3
        assert [m["name"] for m in client.get("/models").json()["models"]] == ["my roofs"]

    out = tmp_path / "found.gpkg"
    code = rs2sam2(["segment", str(raster), "the red roof", "-o", str(out), "--model", "my roofs", "--quiet"])
    assert code == 0
