"""Take docs/screenshot.png: the panel in a real QGIS desktop window (under Xvfb) after a run.

    .venv/bin/python -m tests.plugin.make_screenshot [--out docs/screenshot.png]
    .venv/bin/python -m tests.plugin.make_screenshot --serve ".venv/bin/rs2sam2 serve --checkpoint C" \
        --raster SCENE.tif --phrase "…" --keep all

Builds the plugin zip, installs it into a throw-away QGIS profile, starts a backend (by default the
real `rs2sam2 serve` with the bundled demo model; --serve gives another command), then runs
`qgis.bin --code <driver>` under `xvfb-run`: the driver opens the scene (by default the demo scene),
shows the panel, types the phrase, presses Run, waits for the layer and grabs the main window.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

from tests.plugin.setup_fixtures import build_plugin_zip

ROOT = Path(__file__).resolve().parents[2]
DEMO_SCENE = ROOT / "backend" / "demo" / "assets" / "scene.tif"

# The start of every screenshot driver: its config (RS2SAM2_SHOT_CONFIG), a log file, and how it ends.
DRIVER_HELPERS = r"""
import json, os
from qgis.core import QgsApplication, QgsProject
from qgis.PyQt.QtCore import QTimer
from qgis.utils import iface, plugins

config = json.load(open(os.environ["RS2SAM2_SHOT_CONFIG"]))
state = {"ticks": 0, "started": False}

def log(text):
    with open(config["log"], "a") as f:
        f.write(text + "\n")

def finish(code):
    log(f"exit {code}")
    QgsApplication.instance().exit(code)

# The main window at the screenshots' size, and the plugin: None (after finishing with exit 3) when the
# plugin did not load.
def window_and_plugin():
    window = iface.mainWindow()
    window.resize(1500, 920)
    plugin = plugins.get("rs2sam2_qgis")
    if plugin is None:
        log("plugin not loaded")
        finish(3)
    return window, plugin

def later(ms, step):
    QTimer.singleShot(ms, step)
"""

DRIVER = (
    DRIVER_HELPERS
    + r"""
def setup():
    _, plugin = window_and_plugin()
    if plugin is None:
        return
    layer = iface.addRasterLayer(config["raster"], os.path.basename(config["raster"]))
    plugin.action.setChecked(True)
    dock = plugin.dock
    dock.layer_combo.setLayer(layer)
    dock.set_area_mode("layer")
    dock.phrase_combo.setEditText(config["phrase"])
    keep = dock.option_inputs.widgets["keep"]
    keep.setCurrentIndex(keep.findData(config["keep"]))
    dock.option_inputs.widgets["threshold"].setValue(config["threshold"])
    dock.backend_row.check()
    iface.mapCanvas().setExtent(layer.extent())
    state["dock"] = dock
    QTimer.singleShot(1500, run)

def run():
    dock = state["dock"]
    dock.run()
    state["started"] = True
    QTimer.singleShot(200, wait)

def wait():
    dock = state["dock"]
    state["ticks"] += 1
    if dock.task is not None and state["ticks"] < 600:
        return QTimer.singleShot(200, wait)
    log("status: " + dock.status_label.text())
    QTimer.singleShot(2500, grab)  # let the canvas render the result

def grab():
    iface.mapCanvas().refreshAllLayers()
    ok = iface.mainWindow().grab().save(config["out"])
    log(f"saved {ok}")
    finish(0 if ok else 4)

QTimer.singleShot(3000, setup)
"""
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_health(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/v1/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the backend at {url} did not become healthy")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    parser.add_argument("--phrase", default="the blue stream")
    parser.add_argument(
        "--serve",
        default=f"{shlex.quote(sys.executable)} -m backend.cli serve --device cpu",
        help="backend command (gets --port N); default: rs2sam2 serve with the bundled demo model",
    )
    parser.add_argument(
        "--raster", type=Path, default=DEMO_SCENE, help="the scene to open (default: the demo scene)"
    )
    parser.add_argument("--keep", choices=("best", "all"), default="best")
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rs2sam2-shot-") as work_dir:
        return take(args, Path(work_dir))


def take(args: argparse.Namespace, work: Path) -> int:
    profile = install_profile(build_plugin_zip(work / "dist"), work)
    raster = args.raster.resolve()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [*shlex.split(args.serve), "--port", str(port)]
    backend = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_health(url, 300)
        (profile / "QGIS").mkdir(parents=True)
        (profile / "QGIS" / "QGIS3.ini").write_text(
            "[PythonPlugins]\nrs2sam2_qgis=true\n\n"
            f"[rs2sam2]\nserver_url={url}\nsend_mode=auto\n\n"
            "[qgis]\ncheckVersion=false\nshowTips=false\n",
            encoding="utf-8",
        )
        config = {
            "raster": str(raster),
            "phrase": args.phrase,
            "out": str(args.out.resolve()),
            "keep": args.keep,
            "threshold": args.threshold,
            "log": str(work / "driver.log"),
        }
        (work / "config.json").write_text(json.dumps(config))
        (work / "driver.py").write_text(DRIVER)
        env = dict(os.environ, RS2SAM2_SHOT_CONFIG=str(work / "config.json"))
        env.pop("QT_QPA_PLATFORM", None)
        env.pop("PYTHONPATH", None)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        log = run_qgis_driver(work, env, timeout_s=600)
    finally:
        backend.terminate()
        backend.wait(10)
    print(log)
    return 0 if "saved True" in log else 1


def install_profile(zip_path: Path, work: Path) -> Path:
    """The plugin zip unpacked into a fresh QGIS profile under `work`; the profile's folder."""
    profile = work / "profiles" / "default"
    plugins_dir = profile / "python" / "plugins"
    plugins_dir.mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(plugins_dir)
    return profile


def run_qgis_driver(work: Path, env: dict[str, str], timeout_s: float) -> str:
    """Run desktop QGIS under a virtual X server with `work` as its profiles folder and
    `work/driver.py` as its start-up code; the driver's log (`work/driver.log`)."""
    subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", "/usr/bin/qgis.bin", "--nologo"]
        + ["--noversioncheck", "--profiles-path", str(work), "--code", str(work / "driver.py")],
        env=env,
        timeout=timeout_s,
        capture_output=True,
    )
    log = work / "driver.log"
    return log.read_text() if log.exists() else "(no driver log)"


if __name__ == "__main__":
    sys.exit(main())
