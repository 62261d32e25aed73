"""Every bad input of POST /train and /evaluate gets its own 4xx code before it takes a place in the
queue (and leaves no job folder behind). The child process is a stub here: what is accepted only has to
be queued, not trained (tests/service/test_training_flow.py trains for real)."""

from __future__ import annotations

import shutil

import pytest
import shapely

from backend.bundled import DEMO_CHECKPOINT
from backend.weights.person_models import ModelStore
from tests.engine.standin import ColourModel
from tests.live_server import wait_until
from tests.service.training_regions import post, region, status_of, write_labels, write_raster


@pytest.fixture
def server(serve, tmp_path, monkeypatch):
    """The real app with its own training folder and store; its training child is `sleep 3`."""
    monkeypatch.setenv("RS2SAM2_TRAINING_DIR", str(tmp_path / "training"))
    monkeypatch.setenv("RS2SAM2_MODELS", str(tmp_path / "models"))
    (tmp_path / "allowed").mkdir()
    live = serve(ColourModel(), allowed_roots=(tmp_path / "allowed",))
    stub = tmp_path / "stub-python"
    stub.write_text("#!/bin/sh\nsleep 3\nexit 3\n")
    stub.chmod(0o755)
    live.app.state.training.python = str(stub)
    return live


def _refused(answer, status: int, code: str) -> str:
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code, answer.text
    return answer.json()["error"]["message"]


def _no_job_left(tmp_path) -> None:
    assert not [p for p in (tmp_path / "training").iterdir() if p.is_dir()]


def test_label_counts_and_refusals(server, tmp_path):
    raster, objects = write_raster(tmp_path / "r.tif")
    few = write_labels(tmp_path / "few.gpkg", objects[:27], with_bad=True)
    away = write_labels(tmp_path / "away.gpkg", [(shapely.affinity.translate(g, 9e4), p) for g, p in objects])
    other_field = write_labels(tmp_path / "text.gpkg", objects, field="text")
    with server.client() as client:
        message = _refused(post(client, "/train", raster, few, {"name": "a"}), 400, "too_few_labels")
        assert "27 usable" in message and "at least 30" in message
        assert "1 off the raster, 1 with no area, 1 without a phrase" in message
        _refused(post(client, "/train", raster, away, {"name": "a"}), 400, "no_labels")
        _refused(post(client, "/evaluate", raster, away, {}), 400, "no_labels")
        message = _refused(post(client, "/train", raster, other_field, {"name": "a"}), 400, "no_phrase_field")
        assert "'phrase'" in message and "text" in message
        accepted = post(client, "/train", raster, other_field, {"name": "a", "phrase_field": "text"})
        assert accepted.status_code == 202, accepted.text
    _cancel_all(server)


def test_unreadable_files(server, tmp_path):
    raster, labels = region(tmp_path)
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\x00not a tiff at all" * 10)
    junk_labels = tmp_path / "junk.gpkg"
    junk_labels.write_bytes(b"SQLite format 3\x00 but not really")
    with server.client() as client:
        answer = post(client, "/train", junk, labels, {"name": "a"})
        assert answer.status_code == 400 and answer.json()["error"]["code"] in (
            "not_a_raster",
            "unreadable_raster",
        )
        _refused(post(client, "/train", raster, junk_labels, {"name": "a"}), 400, "unreadable_labels")
        _refused(post(client, "/evaluate", raster, junk_labels, {}), 400, "unreadable_labels")
    _no_job_left(tmp_path)


def test_bad_params_and_names(server, tmp_path):
    raster, labels = region(tmp_path)
    ModelStore.default().import_model(DEMO_CHECKPOINT, name="mine")
    with server.client() as client:
        assert "replace" in _refused(
            post(client, "/train", raster, labels, {"name": "MINE"}), 409, "model_exists"
        )
        _refused(post(client, "/train", raster, labels, {"name": "../up"}), 400, "bad_model_name")
        _refused(post(client, "/train", raster, labels, {"name": "demo"}), 400, "bad_model_name")
        _refused(post(client, "/train", raster, labels, {}), 400, "bad_model_name")
        _refused(post(client, "/train", raster, labels, {"name": "a", "epochs": 3}), 422, "bad_params")
        _refused(post(client, "/train", raster, labels, {"name": "a", "max_steps": 0}), 400, "bad_option")
        _refused(
            post(client, "/train", raster, labels, {"name": "a", "start_model": "nope"}), 400, "unknown_model"
        )
        _refused(post(client, "/evaluate", raster, labels, {"model": "nope"}), 400, "unknown_model")
        _refused(client.post("/train", data={"params": '{"name": "a"}'}), 400, "bad_request")
        _refused(post(client, "/train", raster, labels, {"name": "a"}, colour="red"), 422, "bad_request")
    _no_job_left(tmp_path)


def test_server_side_paths_and_one_name_per_queue(server, tmp_path):
    raster, labels = region(tmp_path / "allowed")
    outside = shutil.copy(labels, tmp_path / "outside.gpkg")
    form = {"params": '{"name": "roofs"}', "path": str(raster)}
    with server.client() as client:
        _refused(client.post("/train", data={**form, "labels_path": str(outside)}), 403, "path_not_allowed")
        validation = {"val_path": str(raster), "val_labels_path": str(labels)}
        first = client.post("/train", data={**form, "labels_path": str(labels), **validation})
        assert first.status_code == 202, first.text
        assert first.json()["val_labels"]["used"] == 36
        command = server.app.state.training.get(first.json()["job_id"]).command
        assert command[command.index("--val-data") + 1].startswith("region:")
        again = client.post("/train", data={**form, "labels_path": str(labels)})
        assert "already" in _refused(again, 409, "model_exists")
    _cancel_all(server)


def _cancel_all(server) -> None:
    """Let the stub children end (a cancelled stub exits 3: the job ends cancelled)."""
    with server.client() as client:
        for job in client.get("/training").json()["jobs"]:
            if job["state"] in ("queued", "running"):
                client.delete(f"/training/{job['job_id']}")
        for job_id in [job["job_id"] for job in client.get("/training").json()["jobs"]]:
            wait_until(lambda job_id=job_id: status_of(client, job_id)["state"] == "cancelled", timeout_s=30)
