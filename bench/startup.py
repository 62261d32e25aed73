"""Start-up of the command line: `rs2sam2 segment` on the bundled demo scene with the bundled demo model,
from process start to the written result (one 128 px tile), and where that time goes in a fresh process
(imports, model load, first tile, a second tile for comparison).

Each run is a new process (`python -m backend.cli`, as the plugin starts the backend); wall time and CPU
time (user + system, which does not grow when other work shares the machine) are medians.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHASES = """
import json, time
t0, c0 = time.perf_counter(), time.process_time()
marks = {}
def mark(name):
    marks[name] = (time.perf_counter() - t0, time.process_time() - c0)
from backend import process_gc; process_gc.begin_start_up()  # as backend.cli.main does
from backend.cli import build_parser; build_parser(only="segment"); mark("the segment command's parser")
import torch; mark("import torch")
import open_clip; mark("import open_clip (and torchvision)")
import sam2.build_sam, rasterio; mark("import sam2, rasterio")
from backend.engine.model_loading import load_model
model = load_model(None, None, "cpu", precision="auto"); mark("load the demo model")
import numpy as np
from bench.precision import reference_image
image = reference_image(128)
model.predict(image, ["the dark lake"]); mark("first tile")
model.predict(image, ["the dark lake"]); mark("second tile")
print(json.dumps(marks))
"""

# The same command run in-process (`main(argv)`, as the tests call it): the garbage collector keeps its
# default thresholds (backend/process_gc.py applies only to a process started from the command line).
IN_PROCESS = "import sys; from backend.cli import main; sys.exit(main(sys.argv[1:]))"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=5, help="processes per measurement (median)")


def _env() -> dict[str, str]:
    # One thread, as a test or a busy machine would run it; the project's tree first on the path.
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": root}


def _timed_process(command: list[str]) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def run(args: argparse.Namespace) -> str:
    from backend.bundled import DEMO_SCENE

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    walls, cpus, phases, helps, defaults = [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="rs2sam2-bench-startup-") as tmp:
        for index in range(args.repeats):
            out = Path(tmp) / f"out{index}.gpkg"
            command = [sys.executable, "-m", "backend.cli", "segment", str(DEMO_SCENE), "the dark lake"]
            wall, cpu, _ = _timed_process([*command, "-o", str(out), "--quiet"])
            walls.append(wall)
            cpus.append(cpu)
            arguments = [*command[3:], "-o", str(Path(tmp) / f"default{index}.gpkg"), "--quiet"]
            defaults.append(_timed_process([sys.executable, "-c", IN_PROCESS, *arguments])[:2])
            phases.append(json.loads(_timed_process([sys.executable, "-c", PHASES])[2]))
            helps.append(_timed_process([sys.executable, "-m", "backend.cli", "--help"])[:2])
    lines = [
        f'`python -m backend.cli segment scene.tif "the dark lake" -o out.gpkg` (the bundled demo model '
        f"and "
        f"scene, one 128 px tile, precision auto, OMP_NUM_THREADS=1), median of {args.repeats} fresh "
        f"processes: **{statistics.median(walls):.2f} s wall, {statistics.median(cpus):.2f} s CPU** "
        f"(process start to the GeoPackage written and the process ended); the same command with the "
        f"garbage collector at its default thresholds (no start-up/exit policy, backend/process_gc.py): "
        f"{statistics.median(d[0] for d in defaults):.2f} s wall, "
        f"{statistics.median(d[1] for d in defaults):.2f} s CPU. `python -m backend.cli --help` "
        f"(every command's parser, no model; what the plugin's model manager pays per command): "
        f"{statistics.median(h[0] for h in helps):.2f} s wall, "
        f"{statistics.median(h[1] for h in helps):.2f} s CPU. Load average when the run started: {load}.",
        "",
        "Where the time goes (a fresh process doing the same steps, cumulative, medians):",
        "",
        "| step | wall (cumulative) | CPU (cumulative) | CPU of this step |",
        "|---|---|---|---|",
    ]
    previous = 0.0
    for name in phases[0]:
        wall = statistics.median(p[name][0] for p in phases)
        cpu = statistics.median(p[name][1] for p in phases)
        lines.append(f"| {name} | {wall:.2f} s | {cpu:.2f} s | {cpu - previous:.2f} s |")
        previous = cpu
    return "\n".join(lines)
