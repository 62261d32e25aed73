"""Training logs: one CSV per stream (train, val) and TensorBoard, written by rank 0 only.

On resume, rows past the resumed step (written by the run that was killed) are dropped, so the
logs read as one uninterrupted run."""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path


def _step(row: dict) -> float:
    """The row's step; a row the kill cut short counts as past every step, so it is dropped."""
    try:
        return int(row["step"]) if row.get(list(row)[-1]) is not None else float("inf")
    except (TypeError, ValueError):
        return float("inf")


class CsvLog:
    def __init__(self, path: Path, fields: list[str], resume_step: int | None = None) -> None:
        self.path, self.fields = path, fields
        if resume_step is not None and path.exists():
            with open(path, newline="", encoding="utf-8") as handle:
                rows = [row for row in csv.DictReader(handle) if _step(row) <= resume_step]
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)
            os.replace(tmp, path)
        elif not path.exists():
            with open(path, "w", newline="", encoding="utf-8") as handle:
                csv.DictWriter(handle, fieldnames=fields).writeheader()

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="", encoding="utf-8") as handle:
            csv.DictWriter(handle, fieldnames=self.fields, extrasaction="ignore").writerow(row)


class TrainingLogs:
    TRAIN_FIELDS = [
        "step",
        "epoch",
        "loss",
        "ce",
        "dice",
        "tbl",
        "aux",
        "lr_new",
        "lr_rest",
        "grad_norm",
        "samples_per_s",
    ]
    VAL_FIELDS = [
        "step",
        "epoch",
        "samples",
        "mIoU",
        "oIoU",
        "Pr@0.5",
        "Pr@0.6",
        "Pr@0.7",
        "Pr@0.8",
        "Pr@0.9",
    ]

    def __init__(self, folder: Path, resume_step: int | None = None) -> None:
        self.train = CsvLog(folder / "train_log.csv", self.TRAIN_FIELDS, resume_step)
        self.val = CsvLog(folder / "val_log.csv", self.VAL_FIELDS, resume_step)
        self.tensorboard = _tensorboard_writer(folder / "tensorboard", resume_step)

    def log_train(self, row: dict) -> None:
        self.train.write(row)
        if self.tensorboard is None:
            return
        for key in ("loss", "ce", "dice", "tbl", "lr_new", "samples_per_s"):
            if row.get(key) is not None:
                self.tensorboard.add_scalar(f"train/{key}", row[key], row["step"])

    def log_val(self, row: dict) -> None:
        self.val.write(row)
        if self.tensorboard is None:
            return
        for key in ("mIoU", "oIoU", "Pr@0.5", "Pr@0.9"):
            self.tensorboard.add_scalar(f"val/{key}", row[key], row["step"])
        self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def _tensorboard_writer(folder: Path, resume_step: int | None):
    """TensorBoard's writer, or None where tensorboard is not installed (the backend the QGIS plugin
    installs leaves it out: the CSV logs hold the same rows)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder), purge_step=resume_step + 1 if resume_step else None)
