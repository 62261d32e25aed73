"""A plugin zip that brings its own backend, end to end in real QGIS with real processes:

1. `make plugin`'s zip is unpacked into a fresh QGIS profile; a QGIS process starts the first-run set-up
   there (the plugin's own SetupTask) and is killed while pip installs torch;
2. the next start (the plugin, imported from the zip, in this QGIS) finds the half-made environment,
   offers Repair, and the set-up rebuilds it from scratch — progress bar, pip's output in the log panel;
3. the backend starts from that environment and the panel turns a phrase into a polygon layer;
4. `qgis_process` with no BACKEND_URL starts the local backend itself and writes the output (and with
   local backends turned off, stops with one sentence);
5. the model manager downloads weights from a loopback server with a progress bar into the cache, and
   switching the served model restarts the backend, whose /health then names the new model.

The install is offline, from a wheel folder built once for the module (tests/plugin/wheelhouse.py):
the same pip commands a user's offline set-up runs. It is the expensive part (about a minute and 5–6 GB
here, removed afterwards), so every step below reuses the one environment.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from qgis.core import QgsApplication, QgsRasterLayer, QgsSettings, QgsVectorLayer
from qgis.PyQt.QtWidgets import QPushButton, QRadioButton

from tests.plugin.conftest import wait_until
from tests.plugin.setup_fixtures import (
    live_children,
    start_setup_in_another_qgis,
    write_official_weight_files,
)

QGIS_PROCESS = "/usr/bin/qgis_process.bin"
SETUP_TIMEOUT_S = 900  # an offline install from local files takes about a minute here; slow CI gets room
pytestmark = [
    pytest.mark.slow,
    pytest.mark.heavy,  # an install of torch into a new environment, twice: scheduled first
    pytest.mark.skipif(shutil.which(QGIS_PROCESS) is None, reason="QGIS's qgis_process is not installed"),
]


def _gone(pid: int, within_s: float = 30) -> bool:
    """The process ends (or is a zombie) within `within_s`: death by its parent's exit is a signal,
    delivered and acted on a moment later, not when qgis_process returns."""
    try:
        process = psutil.Process(pid)
        process.wait(timeout=within_s)
        return True
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return process.status() == psutil.STATUS_ZOMBIE


@pytest.fixture(scope="module", autouse=True)
def _one_thread_backends():
    """Backends started here share two cores with the test process."""
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    if before is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = before


@pytest.fixture(scope="module", autouse=True)
def _own_training_folders(tmp_path_factory):
    """The backends started here keep their training runs and the person's models in the test's folders
    (their training children inherit the environment), never in the user's cache."""
    folder = tmp_path_factory.mktemp("person")
    saved = {name: os.environ.get(name) for name in ("RS2SAM2_TRAINING_DIR", "RS2SAM2_MODELS")}
    os.environ["RS2SAM2_TRAINING_DIR"] = str(folder / "training")
    os.environ["RS2SAM2_MODELS"] = str(folder / "models")
    yield folder
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module", autouse=True)
def _bytecode_written_as_for_a_user():
    """`make test` exports PYTHONDONTWRITEBYTECODE=1 (no __pycache__ in the checkout); a user's QGIS does
    not. The set-up installs with `pip --no-compile`, so it is the set-up's own check, the new
    environment's first import of torch and the backend, that writes their bytecode, as for a user; with
    the variable inherited nothing was ever written and every backend started here (the panel's, two by
    qgis_process, the restart) imported torch from source, seconds more each."""
    before = os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    yield
    if before is not None:
        os.environ["PYTHONDONTWRITEBYTECODE"] = before


@pytest.fixture(scope="module")
def interrupted(zipped_plugin):
    """A first-run set-up in another QGIS process, killed (SIGKILL, no goodbye) while pip installs torch."""
    zipped_plugin.write_profile_settings(
        setup_folder=zipped_plugin.setup_folder, wheel_folder=zipped_plugin.wheels, torch_build="cpu"
    )
    driver = start_setup_in_another_qgis(zipped_plugin)
    log = zipped_plugin.setup_folder / "setup.log"

    def torch_being_unpacked() -> bool:
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        return "== Installing torch (cpu build)" in lines and lines[-1].startswith(
            "Installing collected packages"
        )

    deadline = time.monotonic() + 120
    while not torch_being_unpacked():
        assert driver.poll() is None, "the set-up ended before it could be interrupted"
        assert time.monotonic() < deadline, "the set-up never reached torch"
        time.sleep(0.05)
    pips = live_children(" pip ", psutil.Process(driver.pid))
    driver.send_signal(signal.SIGKILL)
    driver.wait(30)
    deadline = time.monotonic() + 30
    while not all(_gone(p.pid) for p in pips) and time.monotonic() < deadline:
        time.sleep(0.1)
    return {"pips": pips, "log": log.read_text(errors="replace")}


@pytest.fixture(scope="module")
def repaired(zipped_plugin, interrupted, qgis_main_iface_module):
    """The next start: the plugin from the zip finds the half-made environment and repairs it."""
    settings_module = zipped_plugin.module("settings")
    env_module = zipped_plugin.module("setup.backend_env")
    layout = env_module.EnvLayout(zipped_plugin.setup_folder)
    before = {"state": layout.read_state(), "status": env_module.inspect(layout, env_module.Bundle.load())}
    settings_module.PluginSettings(
        setup_folder=str(zipped_plugin.setup_folder),
        wheel_folder=str(zipped_plugin.wheels),
        torch_build="cpu",
    ).save()
    messages: list[str] = []

    def collect(message, tag, _level):
        if tag == "RS2-SAM2":
            messages.append(message)

    QgsApplication.messageLog().messageReceived.connect(collect)
    plugin = zipped_plugin.module("").classFactory(qgis_main_iface_module)
    plugin.initGui()
    dock = plugin.dock
    row = dock.backend_row.setup_row
    offered = {
        "visible": row.frame.isVisibleTo(dock),
        "button": row.setup_button.text(),
        "label": row.label.text(),
        "bar": [item.text() for item in qgis_main_iface_module.messageBar().items()],
    }
    progress: list[int] = []
    row.setup_button.click()
    task = dock.backend_row.setup.task
    task.progressChanged.connect(lambda value: progress.append(int(value)))
    running = {"bar": row.progress_bar.isVisibleTo(dock), "cancel": row.cancel_button.isVisibleTo(dock)}
    wait_until(lambda: dock.backend_row.setup.task is None, timeout_s=SETUP_TIMEOUT_S, what="the repair")
    wait_until(
        lambda: dock.backend_row.start_task is None
        and dock.backend_row.backend.state in ("running", "failed"),
        timeout_s=180,
        what="the backend's start",
    )
    QgsApplication.messageLog().messageReceived.disconnect(collect)
    yield {
        "before": before,
        "offered": offered,
        "running": running,
        "progress": progress,
        "messages": messages,
        "state": layout.read_state(),
        "layout": layout,
        "plugin": plugin,
        "dock": dock,
        "task": task,
    }
    plugin.unload()
    QgsSettings().remove("rs2sam2")


@pytest.fixture(scope="module")
def qgis_main_iface_module(qgis_iface, qgis_processing):
    """`qgis_main_iface` for the whole module (the plugin stays loaded across its tests)."""
    import qgis.utils

    from tests.plugin.conftest import _MainWindowIface

    iface = _MainWindowIface(qgis_iface)
    previous = qgis.utils.iface
    qgis.utils.iface = iface
    yield iface
    qgis.utils.iface = previous


def test_a_killed_set_up_leaves_no_pip_and_reads_as_incomplete(interrupted, repaired):
    assert interrupted["pips"], "pip was not running when QGIS was killed"
    assert all(_gone(p.pid) for p in interrupted["pips"]), "pip outlived the QGIS that started it"
    assert repaired["before"]["state"]["state"] == "installing"
    assert repaired["before"]["status"].status == "incomplete"
    assert not repaired["before"]["status"].usable


def test_the_next_start_offers_repair_and_rebuilds_with_progress(repaired):
    offered = repaired["offered"]
    assert offered["visible"] and offered["button"] == "Repair the local backend"
    assert offered["label"] == "The last set-up of the local backend did not finish; repair it."
    assert "The last set-up of the local backend did not finish; repair it." in offered["bar"]
    assert repaired["running"] == {"bar": True, "cancel": True}
    task = repaired["task"]
    assert task.error is None and not task.cancelled, task.error
    progress = repaired["progress"]
    assert progress == sorted(progress) and progress[-1] == 100 and any(0 < v < 100 for v in progress)
    state = repaired["state"]
    assert state["state"] == "ready" and state["torch"].startswith("2.14.1")
    assert {"serve", "train", "evaluate"} <= set(state["commands"])  # fine-tuning runs in this environment
    assert repaired["layout"].python.is_file()
    # pip's own words reached the log panel, and the rebuild started from an empty folder.
    assert any(m.startswith("Successfully installed") and "rs2sam2-0.1.0" in m for m in repaired["messages"])
    assert any(m.startswith("Removing ") and m.endswith("/env") for m in repaired["messages"])


def test_the_backend_starts_from_it_and_segments_a_raster(zipped_plugin, repaired, clean_project, tmp_path):
    dock = repaired["dock"]
    assert dock.backend_row.backend.state == "running", dock.backend_row.backend.log_text
    assert not dock.backend_row.setup_row.frame.isVisibleTo(dock)
    assert dock.backend_row.backend.health.model_id == "rs2sam2-demo"
    assert f"{repaired['layout'].env}" in dock.backend_row.backend.log_text.splitlines()[0]  # its own Python
    assets = zipped_plugin.bundle / "backend" / "demo" / "assets"
    phrase = (assets / "phrases.txt").read_text().splitlines()[0].strip()
    raster = QgsRasterLayer(str(assets / "scene.tif"), "demo scene")
    clean_project.addMapLayer(raster)
    dock.layer_combo.setLayer(raster)
    dock.set_area_mode("layer")
    dock.phrase_combo.setEditText(phrase)
    dock.run_button.click()
    wait_until(lambda: dock.task is None and dock.last_layers, timeout_s=120, what="the run")
    layer, added = dock.last_layers[0]
    assert layer.name() == phrase and added >= 1
    assert {f["model"] for f in layer.getFeatures()} == {"rs2sam2-demo"}
    assert layer.crs() == raster.crs()

    # Processing in this QGIS uses the backend the panel started: no BACKEND_URL, no second backend.
    import processing

    backends = live_children("backend.cli")
    result = processing.run(
        "rs2sam2:segmentbytext",
        {"INPUT": str(assets / "scene.tif"), "PHRASES": phrase, "OUTPUT": str(tmp_path / "same.gpkg")},
    )
    assert {f["model"] for f in QgsVectorLayer(result["OUTPUT"], "same", "ogr").getFeatures()} == {
        "rs2sam2-demo"
    }
    assert live_children("backend.cli") == backends and len(backends) == 1


def test_the_set_up_backend_fine_tunes_a_region(zipped_plugin, repaired, tmp_path, _own_training_folders):
    """The plugin zip alone is enough to fine-tune: the backend its set-up installed (no training extras)
    trains on labelled polygons through Processing and keeps the new model under the person's name."""
    import processing

    from tests.service.training_regions import region

    dock = repaired["dock"]
    raster, labels = region(tmp_path)
    result = processing.run(
        "rs2sam2:finetune",
        {
            "INPUT": str(raster),
            "LABELS": str(labels),
            "NAME": "zip roofs",
            "MAX_STEPS": 2,
            "REPLAY": False,
            "REPORT": str(tmp_path / "report.txt"),
        },
    )
    assert result["MODEL"] == "zip roofs"
    training = zipped_plugin.module("connection.training_client")
    models = training.TrainingClient(dock.backend_row.client()).models().models
    assert [(m.name, m.labels, m.recipe["steps"]) for m in models] == [("zip roofs", 36, 2)]
    assert (_own_training_folders / "models").is_dir()


def _qgis_process(config: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, QGIS_CUSTOM_CONFIG_PATH=str(config), QT_QPA_PLATFORM="offscreen")
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [QGIS_PROCESS, *args], env=env, capture_output=True, text=True, timeout=300, cwd=config
    )


def test_qgis_process_starts_the_local_backend_itself(zipped_plugin, repaired, tmp_path):
    import socket

    with socket.socket() as s:  # a server URL where nothing answers: "no backend is running"
        s.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{s.getsockname()[1]}"
    # The profile as a user's: the plugin enabled, set up in its folder, no server configured.
    zipped_plugin.write_profile_settings(setup_folder=zipped_plugin.setup_folder, server_url=nobody)
    scene = zipped_plugin.bundle / "backend" / "demo" / "assets" / "scene.tif"
    out = tmp_path / "batch.gpkg"
    run = _qgis_process(
        zipped_plugin.config,
        "run",
        "rs2sam2:segmentbytext",
        "--",
        f"INPUT={scene}",
        "PHRASES=the dark lake",
        f"OUTPUT={out}",
    )
    text = run.stdout + run.stderr
    assert run.returncode == 0, text
    assert f"No backend answers at {nobody}." in text
    pid = int(re.search(r"The local backend \(process (\d+)\) answers at", text).group(1))
    assert _gone(pid), "the backend outlived qgis_process"
    layer = QgsVectorLayer(str(out), "batch", "ogr")
    assert layer.featureCount() >= 1 and {f["phrase"] for f in layer.getFeatures()} == {"the dark lake"}

    zipped_plugin.write_profile_settings(
        setup_folder=zipped_plugin.setup_folder, server_url=nobody, allow_local="false"
    )
    refused = _qgis_process(
        zipped_plugin.config,
        "run",
        "rs2sam2:segmentbytext",
        "--",
        f"INPUT={scene}",
        "PHRASES=a lake",
        f"OUTPUT={tmp_path / 'never.gpkg'}",
    )
    text = refused.stdout + refused.stderr
    assert refused.returncode != 0
    sentence = (
        f"No backend answers at {nobody} and starting a local one is turned off in the RS2-SAM 2 settings."
    )
    assert sentence in text and "Traceback" not in text
    assert not (tmp_path / "never.gpkg").exists()


@pytest.fixture()
def weights_mirror(tmp_path):
    """A loopback mirror with SAM 2.1 Hiera-T at its official path; it records what it was asked for."""
    import functools
    import http.server
    import threading

    folder = tmp_path / "mirror"
    sizes = write_official_weight_files(folder, clip=False)
    asked: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            asked.append(self.path)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", sizes, asked
    server.shutdown()
    server.server_close()


def test_the_model_manager_downloads_with_progress_into_the_cache(
    zipped_plugin, repaired, weights_mirror, tmp_path
):
    url, sizes, asked = weights_mirror
    # The preset's CLIP file is in the cache already (the backend trusts its cache: files are verified on
    # their way in), so only SAM 2's 156 MB travel — a 600 MB CLIP would add I/O, not coverage.
    cache = tmp_path / "cache" / "weights"
    cache.mkdir(parents=True)
    (cache / "open_clip_ViT-B-16_openai.safetensors").write_bytes(b"cached earlier")
    dialog_module = zipped_plugin.module("panel.settings_dialog")
    settings = repaired["dock"].settings
    dialog = dialog_module.SettingsDialog(settings)
    manager = dialog.model_manager
    wait_until(lambda: manager.catalogue_task is None, timeout_s=60, what="the model list")
    ids = {entry.id: entry for entry in manager.entries}
    assert ids["demo"].present and ids["demo"].servable
    assert not ids["preset:tiny"].present and not ids["preset:tiny"].servable
    manager.mirror_edit.setText(url)
    manager.cache_edit.setFilePath(str(cache.parent))
    manager.refresh()
    wait_until(lambda: manager.catalogue_task is None, timeout_s=60, what="the model list")
    progress: list[int] = []
    manager.progress_bar.valueChanged.connect(progress.append)
    manager.table.findChild(QPushButton, "action:preset:tiny").click()
    wait_until(lambda: manager.download_task is None, timeout_s=300, what="the download")
    wait_until(lambda: manager.catalogue_task is None, timeout_s=60, what="the model list")
    assert manager.status_label.text().endswith("is downloaded and verified."), manager.status_label.text()
    assert any(0 < value < 100 for value in progress) and progress[-1] == 100
    assert (cache / "sam2.1_hiera_tiny.pt").stat().st_size == sizes["sam2.1_hiera_tiny.pt"]
    assert asked == ["/segment_anything_2/092824/sam2.1_hiera_tiny.pt"]
    assert {e.id: e.present for e in manager.entries}["preset:tiny"]
    assert not list(cache.glob("*.partial*"))
    dialog.reject()


def test_switching_the_model_restarts_the_backend(zipped_plugin, repaired, tmp_path):
    dock = repaired["dock"]
    assert dock.backend_row.backend.state == "running"
    before = dock.backend_row.backend.pid()
    own = tmp_path / "my-fields.safetensors"
    shutil.copyfile(zipped_plugin.bundle / "backend" / "demo" / "assets" / "rs2sam2-demo.safetensors", own)
    dialog = zipped_plugin.module("panel.settings_dialog").SettingsDialog(dock.settings)
    manager = dialog.model_manager
    wait_until(lambda: manager.catalogue_task is None, timeout_s=60, what="the model list")
    manager.add_model_file(str(own))
    manager.table.findChild(QRadioButton, f"use:file:{own}").click()
    dock.backend_row.apply_settings(dialog.result_settings())
    dialog.reject()
    wait_until(
        lambda: dock.backend_row.start_task is None
        and dock.backend_row.backend.state == "running"
        and dock.backend_row.backend.pid() != before,
        timeout_s=180,
        what="the restart",
    )
    assert _gone(before)
    client = zipped_plugin.module("connection.client").BackendClient(
        dock.backend_row.backend.url, dock.backend_row.backend.token
    )
    assert client.health().model_id == "my-fields"
    assert zipped_plugin.module("settings").PluginSettings.load().checkpoint == str(own)
