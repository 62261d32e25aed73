"""How training jobs end when things go wrong: a service restart finds a run it left `interrupted` (and
resumable), a full disk during the run or while registering the model fails the job with `disk_full`
and registers nothing, half-written or whole. The child is a small shell script standing in for
`python -m backend.cli train` (tests/service/test_training_flow.py runs the real one)."""

from __future__ import annotations

import errno
import shutil

import pytest

from backend.bundled import DEMO_CHECKPOINT
from backend.service.training_jobs import LearningJob, TrainingJobs
from backend.weights import person_models
from backend.weights.person_models import ModelStore
from tests.engine.standin import ColourModel
from tests.live_server import wait_until
from tests.service.training_regions import status_of

PARAMS = {"name": "mine", "overwrite": False, "replay": False, "seed": 1}


def stub(tmp_path, body: str) -> str:
    """A stand-in for the training child: `body` runs with the run folder as $RUN."""
    script = tmp_path / "stub-python"
    script.write_text(f'#!/bin/sh\nwhile [ "$1" != "--out" ]; do shift; done\nRUN="$2"\n{body}\n')
    script.chmod(0o755)
    return str(script)


@pytest.fixture
def jobs(tmp_path):
    started = []

    def start(body: str) -> TrainingJobs:
        manager = TrainingJobs(tmp_path / "training", ModelStore(tmp_path / "models"), stub(tmp_path, body))
        manager.start()
        started.append(manager)
        return manager

    yield start
    for manager in started:
        manager.stop()


def run_one(manager: TrainingJobs) -> LearningJob:
    job = LearningJob.new("train", manager.root, model_name="mine", command=[], params=dict(PARAMS))
    job.command = ["train", "--out", str(job.work)]
    manager.submit(job)
    wait_until(lambda: job.state not in ("queued", "running"), timeout_s=30, what="the job's end")
    return job


def test_disk_full_during_the_run(jobs):
    said = "rs2sam2 train: error: the disk is full (/x): free some space, then continue the run with --resume"
    manager = jobs(f'echo "{said}" >&2; exit 2')
    job = run_one(manager)
    assert job.state == "failed" and job.error["code"] == "disk_full" and job.resumable
    assert "free some space" in job.error["message"]
    assert manager.store.names() == []


def test_disk_full_while_registering_leaves_nothing(jobs, tmp_path, monkeypatch):
    manager = jobs(f'cp "{DEMO_CHECKPOINT}" "$RUN/final.safetensors"; exit 0')

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(person_models.shutil, "copyfile", full)
    job = run_one(manager)
    assert job.state == "failed" and job.error["code"] == "disk_full", job.error
    assert manager.store.names() == []
    assert not list((tmp_path / "models").iterdir())  # no staging folder left behind


def test_a_finished_run_is_registered(jobs):
    manager = jobs(f'cp "{DEMO_CHECKPOINT}" "$RUN/final.safetensors"; exit 0')
    job = run_one(manager)
    assert job.state == "done", job.error
    assert manager.store.names() == ["mine"] and job.result["name"] == "mine"


def test_a_restart_finds_the_run_interrupted(serve, tmp_path, monkeypatch):
    root = tmp_path / "training"
    monkeypatch.setenv("RS2SAM2_TRAINING_DIR", str(root))
    monkeypatch.setenv("RS2SAM2_MODELS", str(tmp_path / "models"))
    root.mkdir()
    job = LearningJob.new("train", root, model_name="mine", command=["train"], params=dict(PARAMS))
    job.state, job.pid = "running", None  # what a service killed mid-run leaves
    job.work.mkdir()
    shutil.copy(DEMO_CHECKPOINT, job.work / "last_state.pt")  # stands for the saved state
    job.save()
    server = serve(ColourModel())
    server.app.state.training.python = stub(tmp_path, "sleep 1; exit 3")
    with server.client() as client:
        found = status_of(client, job.id)
        assert found["state"] == "interrupted" and found["resumable"], found
        assert "resume" in found["message"]
        resumed = client.post(f"/training/{job.id}/resume")
        assert resumed.status_code == 200 and resumed.json()["state"] in ("queued", "running"), resumed.text
        ended = wait_until(lambda: (s := status_of(client, job.id))["state"] == "failed" and s, timeout_s=30)
        assert not ended["resumable"]
        again = client.post(f"/training/{job.id}/resume")
        assert again.status_code == 409 and again.json()["error"]["code"] == "not_resumable"
