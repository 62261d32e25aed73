"""`rs2sam2 segment` as a real process (the colour stand-in model, tests/standin_serve.py) meeting faults
it cannot prevent: the disk filling up while it writes, and being killed in the middle of writing.
Either way the output is absent or the previous file, never half a file.
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyogrio
import pytest

from tests.engine.rasters import good_scene, write_geotiff
from tests.live_server import wait_until

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 120


def _segment(args: list[str], env: dict | None = None, file_size_limit: int | None = None, **popen):
    """`rs2sam2 segment …` with the stand-in model; `file_size_limit` is `ulimit -f` for the process
    (Python ignores SIGXFSZ, so a write past the limit fails with EFBIG as on a full disk)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    command = [sys.executable, "-m", "tests.standin_serve", "segment", *map(str, args), "--quiet"]
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    kwargs = dict(cwd=ROOT, env=environment, preexec_fn=limit if file_size_limit else None)
    if popen:
        return subprocess.Popen(command, **kwargs, **popen)
    return subprocess.run(command, **kwargs, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def raster(tmp_path) -> Path:
    return good_scene(tmp_path / "scene.tif")


# "purple" finds nothing: GDAL then reported success for a GeoPackage cut off at the limit (64 KB of 96).
@pytest.mark.parametrize("phrase", ["red", "purple"], ids=["one-feature", "no-feature"])
def test_a_full_disk_is_one_clear_line_and_no_partial_output(raster, tmp_path, phrase):
    out = tmp_path / "out" / "new.gpkg"
    out.parent.mkdir()
    failed = _segment([raster, phrase, "-o", out], file_size_limit=64 * 1024)  # a GeoPackage needs more
    assert failed.returncode == 2, failed.stderr
    assert failed.stderr.startswith("rs2sam2 segment: error: could not write new.gpkg: ")
    assert "nothing was written" in failed.stderr and failed.stderr.count("\n") == 1
    assert "Traceback" not in failed.stderr
    assert list(out.parent.iterdir()) == []  # neither the file nor its staging folder


def test_a_full_disk_while_adding_a_layer_leaves_the_previous_geopackage(raster, tmp_path):
    out = tmp_path / "kept.gpkg"
    assert _segment([raster, "red", "-o", out, "--layer", "first"]).returncode == 0
    before = _digest(out)
    failed = _segment(
        [raster, "red", "-o", out, "--layer", "second"], file_size_limit=out.stat().st_size // 2
    )
    assert failed.returncode == 2 and "could not write kept.gpkg" in failed.stderr, failed.stderr
    assert _digest(out) == before and [name for name, _ in pyogrio.list_layers(out)] == ["first"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_full_disk_while_writing_probabilities_writes_neither_output(raster, tmp_path):
    out, probability = tmp_path / "out.gpkg", tmp_path / "probability.tif"
    # Room for the GeoPackage (96 KB), not for 2 float32 bands of 800 × 800 pixels of noise (~400 KB).
    noisy = tmp_path / "noisy.tif"
    write_geotiff(noisy, np.random.default_rng(0).integers(0, 256, (3, 800, 800), dtype=np.uint8))
    args = [noisy, "red", "blue", "-o", out, "--probability", probability, "--context", "tiles"]
    failed = _segment(args, file_size_limit=200 * 1024)
    assert failed.returncode == 2 and "could not write probability.tif" in failed.stderr, failed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noisy.tif", "scene.tif"]


@pytest.mark.parametrize("existing", [False, True], ids=["new-file", "existing-file"])
def test_killed_in_the_middle_of_writing_leaves_no_half_file(raster, tmp_path, existing):
    out = tmp_path / "out.gpkg"
    before = None
    if existing:
        assert _segment([raster, "red", "-o", out, "--layer", "first"]).returncode == 0
        before = _digest(out)
    marker = tmp_path / "writing"
    process = _segment(
        [raster, "red", "blue", "-o", out, "--layer-per-phrase"],
        env={"RS2SAM2_STANDIN_HOLD_WRITE": str(marker)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # The first of two layers is written; the process holds there until it is killed.
        wait_until(marker.exists, RUN_TIMEOUT_S, "the first layer to be written")
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if existing:
        assert _digest(out) == before  # the previous file, byte for byte
    else:
        assert not out.exists()
