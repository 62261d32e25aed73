"""One local backend per QGIS process (`connection.backend`): a Processing run with no backend answering
starts it, the next run reuses it, the panel uses it instead of starting a second, starts at the same time
start one between them, and stopping it ends the process.

The backend is the real `rs2sam2 serve` of this checkout with the demo model, on the demo scene (the same
started from the first-run set-up's environment is in test_first_run_setup.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsProcessingException, QgsVectorLayer

from rs2sam2_qgis.connection.backend import shared_backend, stop_local_backend
from rs2sam2_qgis.settings import PluginSettings
from tests.plugin.conftest import wait_until
from tests.plugin.setup_fixtures import live_children

ROOT = Path(__file__).resolve().parents[2]


ASSETS = ROOT / "backend" / "demo" / "assets"


@pytest.fixture()
def provider(provider):
    """The conftest's provider; the backends Processing started are stopped after the test."""
    yield provider
    stop_local_backend()


def _dead_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_processing_starts_the_local_backend_keeps_it_and_the_panel_adopts_it(
    provider, plugin_settings, tmp_path, qgis_app, monkeypatch
):
    import processing

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the backend shares two cores with this process
    phrases = (ASSETS / "phrases.txt").read_text().split("\n")
    settings = PluginSettings(
        server_url=_dead_url(),
        python_path=sys.executable,
        working_dir=str(ROOT),
        checkpoint=str(ASSETS / "rs2sam2-demo.safetensors"),
    )
    settings.save()
    scene = str(ASSETS / "scene.tif")
    first = processing.run(
        "rs2sam2:segmentbytext", {"INPUT": scene, "PHRASES": phrases[0], "OUTPUT": str(tmp_path / "1.gpkg")}
    )
    assert {f["phrase"] for f in QgsVectorLayer(first["OUTPUT"], "1", "ogr").getFeatures()} == {phrases[0]}
    url = shared_backend().local_connection().url
    ours = live_children("backend.cli")
    assert len(ours) == 1

    processing.run(
        "rs2sam2:segmentbytext", {"INPUT": scene, "PHRASES": phrases[1], "OUTPUT": str(tmp_path / "2.gpkg")}
    )
    assert shared_backend().local_connection().url == url  # the same backend, still running
    assert live_children("backend.cli") == ours

    # The panel's start (a QgsTask) finds it running: no second process.
    from rs2sam2_qgis.connection.tasks import StartLocalTask

    started = []
    task = StartLocalTask(shared_backend(), settings, started.append)
    QgsApplication.taskManager().addTask(task)
    wait_until(lambda: started, timeout_s=60, what="the panel's start")
    assert started[0].connection.url == url and live_children("backend.cli") == ours
    shared_backend().stop()  # e.g. a model switch: the one backend stops
    ours[0].wait(10)
    assert shared_backend().local_connection() is None


def test_with_local_backends_turned_off_processing_says_so(provider, plugin_settings, geotiff, tmp_path):
    import processing

    url = _dead_url()
    PluginSettings(server_url=url, allow_local=False).save()
    with pytest.raises(QgsProcessingException) as refused:
        processing.run(
            "rs2sam2:segmentbytext",
            {"INPUT": geotiff, "PHRASES": "a roof", "OUTPUT": str(tmp_path / "no.gpkg")},
        )
    assert str(refused.value) == (
        f"No backend answers at {url} and starting a local one is turned off in the RS2-SAM 2 settings."
    )
    assert not (tmp_path / "no.gpkg").exists()


def test_starts_at_the_same_time_start_one_backend(plugin_settings, tmp_path, monkeypatch):
    """Two Processing runs (threads) and the panel asking at once: one process, one URL for all."""
    import threading

    from tests.plugin.test_local_backend import _serving_dir

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    settings = PluginSettings(
        python_path=sys.executable, working_dir=str(_serving_dir(tmp_path)), preset="test", checkpoint=""
    )
    backend = shared_backend()
    urls: list[str] = []
    threads = [
        threading.Thread(target=lambda: urls.append(backend.ensure_local(settings).url)) for _ in range(3)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert len(urls) == 3 and len(set(urls)) == 1
        assert backend.log_text.count("$ ") == 1  # one command line: started once
        assert len(live_children("backend.cli")) == 1
    finally:
        stop_local_backend()
    assert live_children("backend.cli") == []
