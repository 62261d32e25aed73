"""End to end: the plugin in real QGIS against the real backend, `rs2sam2 serve --preset test`, on a
free loopback port (the small untrained test model: the geometry is arbitrary, the plumbing is real).

Cancelling is tested against the real service app with a model the test holds still (test_dock.py,
test_processing.py, test_client.py): with a real model a run may end before the cancel arrives.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from qgis.core import Qgis, QgsApplication, QgsProject, QgsRasterLayer, QgsVectorLayer

import rs2sam2_qgis
from rs2sam2_qgis.layers.area import AREA_WHOLE_LAYER
from rs2sam2_qgis.layers.result_layer import PHRASE_PROPERTY
from rs2sam2_qgis.panel.dock import SegmentDock
from rs2sam2_qgis.settings import PluginSettings
from tests.plugin.conftest import RASTER_EPSG, wait_until, write_geotiff

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "e2e-token-4f1c"
LOW_THRESHOLD = 0.01  # the untrained model's probabilities sit near 0.5: keep "best" then always finds one


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _health(url: str, token: str) -> dict:
    request = urllib.request.Request(f"{url}/api/v1/health", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """`rs2sam2 serve --preset test` with a token, reading paths under its own data folder."""
    data = tmp_path_factory.mktemp("service-data")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = data / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "backend.cli",
                "serve",
                "--preset",
                "test",
                "--port",
                str(port),
                "--allow-path",
                str(data),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, RS2SAM2_TOKEN=TOKEN),
        )
    deadline = time.monotonic() + 180
    health = None
    while health is None:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"rs2sam2 serve did not start:\n{log.read_text()}")
        try:
            health = _health(url, TOKEN)
        except OSError:
            time.sleep(0.3)
    yield {"url": url, "data": data, "health": health}
    process.terminate()
    process.wait(15)


@pytest.fixture()
def scene(service) -> str:
    return write_geotiff(service["data"] / "scene.tif", size=96)


@pytest.fixture()
def dock(qgis_iface, qgis_canvas, plugin_settings, clean_project, service):
    PluginSettings(server_url=service["url"], token=TOKEN).save()
    qgis_iface.messageBar().clearWidgets()
    panel = SegmentDock(qgis_iface)
    panel.option_inputs.widgets["threshold"].setValue(LOW_THRESHOLD)
    yield panel
    panel.shutdown()
    panel.deleteLater()
    qgis_iface.messageBar().clearWidgets()


def _add_raster(path: str, project) -> QgsRasterLayer:
    layer = QgsRasterLayer(path, "scene")
    assert layer.isValid()
    project.addMapLayer(layer)
    return layer


def _result_layers(project) -> list[QgsVectorLayer]:
    return [lyr for lyr in project.mapLayers().values() if lyr.customProperty(PHRASE_PROPERTY)]


def _run(dock: SegmentDock, layer, phrase: str, timeout_s: float = 120) -> None:
    dock.layer_combo.setLayer(layer)
    dock.set_area_mode(AREA_WHOLE_LAYER)
    dock.phrase_combo.setEditText(phrase)
    assert dock.run_button.isEnabled(), dock.status_label.text()
    dock.run_button.click()
    wait_until(lambda: dock.task is None, timeout_s=timeout_s, what="the run on the real backend")


@pytest.mark.parametrize("send_mode", ["auto", "upload"])
def test_dock_run_on_the_real_backend(dock, service, scene, clean_project, send_mode):
    dock.settings.send_mode = send_mode
    layer = _add_raster(scene, clean_project)
    _run(dock, layer, "the red roof")
    (result,) = _result_layers(clean_project)
    assert result.name() == "the red roof"
    assert result.crs().authid() == f"EPSG:{RASTER_EPSG}"
    features = list(result.getFeatures())
    assert features, dock.status_label.text()
    for feature in features:
        assert feature["phrase"] == "the red roof"
        assert feature["model"] == service["health"]["model"]["id"]
        assert feature["source"] == "scene.tif"
        assert 0 <= feature["score"] <= 1 and feature["area"] > 0 and feature["created"]
        assert layer.extent().buffered(1e-6).contains(feature.geometry().boundingBox())
    assert dock.backend_row.url() == service["url"]


def test_bad_phrase_shows_the_real_backends_message(dock, scene, clean_project, qgis_iface):
    layer = _add_raster(scene, clean_project)
    _run(dock, layer, "x" * 501)
    messages = [i.text() for i in qgis_iface.messageBar().items() if i.level() == Qgis.Critical]
    assert messages == ["Phrase 1 is longer than 500 characters."]
    assert _result_layers(clean_project) == []


def test_processing_on_the_real_backend_to_a_geopackage(
    qgis_processing, plugin_settings, service, scene, tmp_path
):
    import processing

    from rs2sam2_qgis.processing.provider import RS2SAM2Provider

    registry = QgsApplication.processingRegistry()
    registry.addProvider(RS2SAM2Provider())
    try:
        PluginSettings(server_url=service["url"], token=TOKEN).save()
        result = processing.run(
            "rs2sam2:segmentbytext",
            {
                "INPUT": scene,
                "PHRASES": "the red roof\na road",
                "THRESHOLD": LOW_THRESHOLD,
                "OUTPUT": str(tmp_path / "out.gpkg"),
            },
        )
    finally:
        registry.removeProvider("rs2sam2")
    layer = QgsVectorLayer(result["OUTPUT"], "out", "ogr")
    assert layer.crs().authid() == f"EPSG:{RASTER_EPSG}"
    assert {f["phrase"] for f in layer.getFeatures()} == {"the red roof", "a road"}


def test_the_plugin_starts_the_real_backend_and_unload_stops_it(
    qgis_main_iface, plugin_settings, clean_project, tmp_path
):
    plugin = rs2sam2_qgis.classFactory(qgis_main_iface)
    plugin.initGui()
    try:
        dock = plugin.dock
        dock.backend_row.apply_settings(
            PluginSettings(
                start_local=True,
                python_path=sys.executable,
                working_dir=str(ROOT),
                preset="test",
                checkpoint="",
                local_allow_path=str(tmp_path),
            )
        )
        dock.option_inputs.widgets["threshold"].setValue(LOW_THRESHOLD)
        layer = _add_raster(write_geotiff(tmp_path / "scene.tif", size=64), clean_project)
        dock.layer_combo.setLayer(layer)
        dock.set_area_mode(AREA_WHOLE_LAYER)
        dock.phrase_combo.setEditText("a roof")
        dock.run_button.click()  # starts `python -m backend.cli serve` first, then runs
        # The start and the run within 180 s on this 2-core machine: wait_until fails past that.
        wait_until(
            lambda: _result_layers(QgsProject.instance()) or dock.backend_row.backend.state == "failed",
            timeout_s=180,
            what="the local backend and the run",
        )
        assert dock.backend_row.backend.state == "running", dock.backend_row.backend.log_text
        pid = dock.backend_row.backend.pid()
        assert psutil.Process(pid).is_running()
        (result,) = _result_layers(QgsProject.instance())
        assert {f["source"] for f in result.getFeatures()} == {"scene.tif"}
    finally:
        plugin.unload()
    try:
        assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        pass
