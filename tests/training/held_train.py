"""`rs2sam2 train`, held still right after it logged a given step, so that a test can kill it there.

    python -m tests.training.held_train STEP MARKER -- <rs2sam2 train arguments>

Runs the real command in this process. When the run has written the train-log row of STEP, it creates
the file MARKER and waits forever: the test waits for MARKER, then SIGKILLs a run it knows to be at
that point — no race with a run that goes on (or ends) while the test looks at its log.

Not a test itself: tests/training/test_train_cli.py runs it.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path


def main(argv: list[str]) -> int:
    from backend.cli import main as rs2sam2
    from training.logs import TrainingLogs

    split = argv.index("--")
    step, marker = int(argv[0]), Path(argv[1])
    log_train = TrainingLogs.log_train

    def log_and_hold(self: TrainingLogs, row: dict) -> None:
        log_train(self, row)
        if row["step"] == step:
            marker.write_text(str(step), encoding="utf-8")
            threading.Event().wait()  # until the test kills this process

    TrainingLogs.log_train = log_and_hold
    return rs2sam2(["train", *argv[split + 1 :]])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
