"""`rs2sam2 serve` — the real command: its arguments, the token from the environment, the allowed
folders, the real app on uvicorn — serving the colour stand-in model instead of a loaded one.

    python -m tests.standin_serve serve --port N [any other `rs2sam2 serve` option]
    python -m tests.standin_serve segment RASTER PHRASE -o OUT.gpkg [any other option]

For tests of programs that start a backend themselves (the plugin's local backend), and of what happens
to the real processes when they are stopped or killed: they get the real service and command, and
answers that do not depend on a model's weights. Environment hooks for those fault tests:

- `RS2SAM2_STANDIN_MARKER=FILE`: the model creates FILE when its first call starts (a test waits for
  it: from then on a job is running);
- `RS2SAM2_STANDIN_TILE_S=SECONDS`: every model call takes that long (`inf`: it never returns — the
  process can only be killed);
- `RS2SAM2_STANDIN_HOLD_WRITE=FILE`: `segment` writes its first output layer, creates FILE and then
  never goes on (the test kills it in the middle of writing).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
from pathlib import Path

STANDIN_MODEL_ID = "colour-standin"
MARKER = "RS2SAM2_STANDIN_MARKER"
TILE_S = "RS2SAM2_STANDIN_TILE_S"
HOLD_WRITE = "RS2SAM2_STANDIN_HOLD_WRITE"


def _model():
    from tests.engine.standin import ColourModel

    class SlowColourModel(ColourModel):
        """The colour model, announcing its first call and taking its time over each one."""

        def __init__(self, marker: str | None, seconds: float):
            super().__init__(64, model_id=STANDIN_MODEL_ID)
            self.marker, self.seconds = marker, seconds

        def predict(self, image, phrases):
            if self.marker:
                Path(self.marker).touch()
            if self.seconds > 0:
                threading.Event().wait(None if math.isinf(self.seconds) else self.seconds)
            return super().predict(image, phrases)

    marker, seconds = os.environ.get(MARKER), float(os.environ.get(TILE_S, "0"))
    if marker or seconds:
        return SlowColourModel(marker, seconds)
    return ColourModel(64, model_id=STANDIN_MODEL_ID)


def _hold_after_first_layer(marker: str) -> None:
    import backend.engine.writers as writers

    write_layer = writers._write_layer

    def write_then_hold(*args, **kwargs):
        write_layer(*args, **kwargs)
        Path(marker).touch()
        threading.Event().wait()  # until the test kills the process

    writers._write_layer = write_then_hold


def main(argv: list[str]) -> int:
    import backend.engine.model_loading as model_loading
    from backend.cli import main as rs2sam2

    def load_standin(
        preset: str | None,
        checkpoint: str | None,
        device: str,
        model: str | None = None,
        precision: str = "auto",
    ):
        return _model()

    model_loading.load_model = load_standin  # what `serve` and `segment` call to load their model
    if os.environ.get(HOLD_WRITE):
        _hold_after_first_layer(os.environ[HOLD_WRITE])
    _only_command(argv[0] if argv else "")
    return rs2sam2(argv)


def _only_command(name: str) -> None:
    """Register only the command being run: the others' modules (training's imports torch and
    open_clip) cost seconds to load, and are not what these tests run."""
    import backend.cli as cli

    every = cli.entry_points

    def only(group: str):
        points = every(group=group)
        return [point for point in points if point.name == name] or points

    cli.entry_points = only


def start_serve(allow: Path, log: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """Start `python -m tests.standin_serve serve` on a free loopback port, reading paths under
    `allow`, its output in `log`, with extra environment (the hooks above); wait until it answers.
    (process, API base URL). The caller kills it."""
    import httpx

    from rs2sam2_qgis.contract import API_PREFIX
    from tests.live_server import free_port, wait_until

    root, port = Path(__file__).resolve().parent.parent, free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.standin_serve", "serve", "--port", str(port)]
            + ["--allow-path", str(allow)],
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(root), **(env or {})},
        )
    url = f"http://127.0.0.1:{port}{API_PREFIX}"

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the stand-in server exited:\n{log.read_text()}")
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(answers, 60, "the stand-in server to answer")
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process, url


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
