"""Take docs/first-run-setup.png and docs/model-manager.png in a real QGIS desktop window (under Xvfb).

    .venv/bin/python -m tests.plugin.make_setup_screenshots [--out docs]

Builds the plugin zip and installs it into a throw-away QGIS profile with no backend anywhere, then runs
`qgis.bin --code <driver>` under `xvfb-run`. The driver opens the panel (which offers the set-up), clicks
"Set up the local backend" and grabs the window while pip installs torch (the log panel shows pip's
output); once the backend runs it opens the settings' Models tab, starts a download from a loopback
mirror (official file layouts, slowed down so the bar is caught mid-way) and grabs the dialog. The
install is the offline one, from a wheel folder built from this machine (tests/plugin/wheelhouse.py).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.plugin.make_screenshot import DRIVER_HELPERS, install_profile, run_qgis_driver
from tests.plugin.setup_fixtures import build_plugin_zip, write_official_weight_files
from tests.plugin.wheelhouse import build_wheelhouse, bundle_requirements

ROOT = Path(__file__).resolve().parents[2]

DRIVER = (
    DRIVER_HELPERS
    + r"""
from qgis.core import QgsRasterLayer
from qgis.PyQt.QtWidgets import QDockWidget, QPushButton

def setup():
    window, plugin = window_and_plugin()
    if plugin is None:
        return
    layer = iface.addRasterLayer(config["raster"], "demo scene")
    iface.mapCanvas().setExtent(layer.extent())
    messages = window.findChild(QDockWidget, "MessageLog")
    if messages is not None:
        messages.show()
    plugin.action.setChecked(True)
    state["dock"] = plugin.dock
    later(3000, start_setup)

def start_setup():
    dock = state["dock"]
    row = dock.backend_row.setup_row
    log("row visible: %s, text: %s" % (row.frame.isVisible(), row.label.text()))
    dock.backend_row.setup_row.setup_button.click()
    later(500, wait_for_progress)

def wait_for_progress():
    dock = state["dock"]
    value = dock.backend_row.setup_row.progress_bar.value()
    if value < config["grab_at"] and dock.backend_row.setup.task is not None:
        return later(300, wait_for_progress)
    ok = iface.mainWindow().grab().save(config["setup_png"])
    log(f"setup shot at {value} %: {ok}")
    later(1000, wait_for_backend)

def wait_for_backend():
    dock = state["dock"]
    state["ticks"] += 1
    if dock.backend_row.backend.state != "running" and state["ticks"] < 2000:
        return later(500, wait_for_backend)
    log("backend: " + dock.backend_row.backend.state + " " + dock.backend_row.label.text())
    open_models()

def open_models():
    from rs2sam2_qgis.panel.settings_dialog import SettingsDialog
    dock = state["dock"]
    dialog = SettingsDialog(dock.settings, iface.mainWindow())
    dialog.resize(900, 620)
    dialog.tabs.setCurrentWidget(dialog.model_manager)
    dialog.model_manager.mirror_edit.setText(config["mirror"])
    dialog.show()
    state["dialog"] = dialog
    later(1000, wait_for_list)

def wait_for_list():
    manager = state["dialog"].model_manager
    if manager.catalogue_task is not None:
        return later(300, wait_for_list)
    button = manager.table.findChild(QPushButton, "action:preset:tiny")
    if button is None:
        log("no download button")
        return finish(5)
    button.click()
    later(500, wait_for_download)

def wait_for_download():
    manager = state["dialog"].model_manager
    if manager.progress_bar.value() < config["grab_at"] and manager.download_task is not None:
        return later(200, wait_for_download)
    ok = state["dialog"].grab().save(config["models_png"])
    log(f"models shot at {manager.progress_bar.value()} %: {ok}")
    manager.shutdown()
    finish(0 if ok else 4)

later(3000, setup)
"""
)


class SlowHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files in small, paced chunks, so the download's progress bar can be photographed."""

    def copyfile(self, source, outputfile):
        while chunk := source.read(1 << 20):
            outputfile.write(chunk)
            time.sleep(0.03)

    def log_message(self, *args):
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # the dialog closes mid-download once the shot is taken: a broken pipe is expected


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--grab-at", type=int, default=35, help="progress (%%) at which to take each shot")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rs2sam2-setup-shots-") as work_dir:
        return take(args, Path(work_dir))


def take(args: argparse.Namespace, work: Path) -> int:
    profile = install_profile(build_plugin_zip(work / "dist"), work)
    bundle = profile / "python" / "plugins" / "rs2sam2_qgis" / "backend_bundle"
    requirements, alone = bundle_requirements(bundle)
    wheels = build_wheelhouse(requirements, work / "wheels", alone)
    write_official_weight_files(work / "mirror")
    handler = functools.partial(SlowHandler, directory=str(work / "mirror"))
    mirror = QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=mirror.serve_forever, daemon=True).start()
    (profile / "QGIS").mkdir(parents=True)
    (profile / "QGIS" / "QGIS3.ini").write_text(
        "[PythonPlugins]\nrs2sam2_qgis=true\n\n"
        f"[rs2sam2]\nserver_url=http://127.0.0.1:{free_port()}\nsetup_folder={work / 'backend-setup'}\n"
        f"wheel_folder={wheels}\ntorch_build=cpu\nweights_cache={work / 'cache'}\n\n"
        "[qgis]\ncheckVersion=false\nshowTips=false\n",
        encoding="utf-8",
    )
    args.out.mkdir(parents=True, exist_ok=True)
    config = {
        "raster": str(bundle / "backend" / "demo" / "assets" / "scene.tif"),
        "setup_png": str((args.out / "first-run-setup.png").resolve()),
        "models_png": str((args.out / "model-manager.png").resolve()),
        "mirror": f"http://127.0.0.1:{mirror.server_address[1]}",
        "grab_at": args.grab_at,
        "log": str(work / "driver.log"),
    }
    (work / "config.json").write_text(json.dumps(config))
    (work / "driver.py").write_text(DRIVER)
    env = dict(os.environ, RS2SAM2_SHOT_CONFIG=str(work / "config.json"), OMP_NUM_THREADS="1")
    for name in ("QT_QPA_PLATFORM", "PYTHONPATH", "QGIS_CUSTOM_CONFIG_PATH"):
        env.pop(name, None)
    started = time.monotonic()
    try:
        log = run_qgis_driver(work, env, timeout_s=1800)
    finally:
        mirror.shutdown()
        shutil.rmtree(work / "backend-setup", ignore_errors=True)
    print(log, f"({time.monotonic() - started:.0f} s)")
    return 0 if "exit 0" in log else 1


if __name__ == "__main__":
    sys.exit(main())
