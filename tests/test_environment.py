"""The installed environment resolves the project's own packages, wherever a command runs from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_project_packages_win_outside_the_checkout(tmp_path):
    # sam2's wheel ships a top-level `training` package of its own; scripts/setup.sh removes it so the
    # console script and torchrun (which run outside the checkout) import ours.
    code = "import backend, training, bench; print(training.__file__); print(bench.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    training_file, bench_file = out.stdout.split()
    assert Path(training_file).resolve() == ROOT / "training" / "__init__.py"
    assert Path(bench_file).resolve() == ROOT / "bench" / "__init__.py"
