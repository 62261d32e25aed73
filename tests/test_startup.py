"""Start-up: building the command's parser (every command's flags, `rs2sam2 --help`) imports no model
library, so commands that load no model — the plugin's model manager runs `weights …` — start at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "open_clip", "sam2", "torchvision")


def test_building_every_commands_parser_imports_no_model_library():
    code = (
        "import sys; from backend.cli import build_parser; build_parser(); "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert done.stdout.strip() == "", f"imported at parser time: {done.stdout.strip()}"
