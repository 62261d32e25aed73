"""What a run tells the process that started it (status.json) and how it is stopped (the `stop` file):
training/progress.py; a full disk ends `rs2sam2 train` with one sentence (tests/service/
test_training_flow.py stops and resumes a real run through the service)."""

from __future__ import annotations

import errno

from backend.cli import main as rs2sam2
from training.progress import RunStatus, StopRequest, read_status, request_stop


def test_status_is_rewritten_whole(tmp_path):
    assert read_status(tmp_path) == {}
    status = RunStatus(tmp_path)
    status.update(phase="preparing", step=0)
    status.update(phase="training", step=3, loss=0.5)
    found = read_status(tmp_path)
    assert found["phase"] == "training" and found["step"] == 3 and found["loss"] == 0.5
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no temp file left
    RunStatus(None).update(phase="training")  # another rank: nothing written


def test_a_stop_request_is_a_file_until_cleared(tmp_path):
    stop = StopRequest(tmp_path / "run")
    assert not stop.requested()
    request_stop(tmp_path / "run")  # the run folder may not exist yet
    assert stop.requested()
    stop.clear()
    assert not stop.requested()


def test_a_full_disk_is_one_sentence(tmp_path, monkeypatch, capsys):
    import training.loop
    import training.progress

    def full(config, resume=False):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "last_state.pt"))

    monkeypatch.setattr(training.loop, "train", full)
    monkeypatch.setattr(training.progress, "stop_on_sigterm", lambda: None)  # pytest keeps its SIGTERM
    code = rs2sam2(["train", "--data", "region:a.tif,b.gpkg", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "the disk is full" in err and "--resume" in err and "Traceback" not in err


def test_without_tensorboard_the_csv_logs_hold_the_rows(tmp_path, monkeypatch):
    """The backend the QGIS plugin installs has no tensorboard: a run logs to its CSV files only."""
    import csv
    import sys

    from training.logs import TrainingLogs

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    logs = TrainingLogs(tmp_path)
    assert logs.tensorboard is None
    logs.log_train({"step": 1, "loss": 0.5})
    logs.log_val({"step": 1, "samples": 2, "mIoU": 0.25, "oIoU": 0.5, "Pr@0.5": 0.5, "Pr@0.9": 0.0})
    logs.close()
    assert not (tmp_path / "tensorboard").exists()
    with open(tmp_path / "val_log.csv") as handle:
        assert [row["mIoU"] for row in csv.DictReader(handle)] == ["0.25"]
