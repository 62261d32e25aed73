"""The plugin starts its one local backend (`connection.backend`), waits for its health, shows its log
when it fails, and stops it (and everything else it added) when it unloads.

These run a real process: `<python> -m backend.cli serve …` in a working folder whose `backend/cli.py`
runs the real `rs2sam2 serve` with the colour stand-in model (tests/standin_serve.py); the real model
behind it is exercised in test_service_e2e.py.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import psutil
import pytest
from qgis.core import QgsApplication, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtWidgets import QDockWidget

import rs2sam2_qgis
from rs2sam2_qgis.connection.backend import Backend, shared_backend
from rs2sam2_qgis.connection.client import BackendClient, BackendError
from rs2sam2_qgis.connection.local_process import LocalStartError
from rs2sam2_qgis.layers.area import AREA_WHOLE_LAYER
from rs2sam2_qgis.layers.result_layer import PHRASE_PROPERTY
from rs2sam2_qgis.settings import PluginSettings
from tests.plugin.conftest import wait_until
from tests.standin_serve import STANDIN_MODEL_ID

ROOT = Path(__file__).resolve().parents[2]


def _fake_backend_dir(tmp_path: Path, body: str) -> Path:
    folder = tmp_path / "checkout"
    (folder / "backend").mkdir(parents=True)
    (folder / "backend" / "__init__.py").write_text("")
    (folder / "backend" / "cli.py").write_text(textwrap.dedent(body))
    return folder


def _serving_dir(tmp_path: Path) -> Path:
    return _fake_backend_dir(
        tmp_path,
        f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        print("argv:", " ".join(sys.argv[1:]), flush=True)
        for name in [n for n in sys.modules if n == "backend" or n.startswith("backend.")]:
            del sys.modules[name]  # this folder's `backend` only launches: the project's real one serves
        from tests.standin_serve import main
        sys.exit(main(sys.argv[1:]))
    """,
    )


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_start_waits_for_health_then_stop_ends_the_process(qgis_app, tmp_path):
    backend = Backend()
    settings = PluginSettings(
        python_path=sys.executable, working_dir=str(_serving_dir(tmp_path)), preset="test", checkpoint=""
    )
    said = []
    connection = backend.ensure_local(settings, say=said.append)
    assert backend.state == "running", backend.log_text
    assert backend.health.model_id == STANDIN_MODEL_ID
    assert (connection.url, connection.token) == (backend.url, backend.token)
    assert said[-1].endswith(f"answers at {backend.url}; it stays up for this session.")
    port = backend.url.rsplit(":", 1)[1]
    assert f"argv: serve --host 127.0.0.1 --port {port} --allow-path / --preset test" in backend.log_text
    # The plugin gave its backend a fresh token: without it the backend refuses to serve.
    assert len(backend.token) > 20
    with pytest.raises(BackendError) as refused:
        BackendClient(backend.url).health()
    assert refused.value.status == 401
    assert BackendClient(backend.url, backend.token).health().model_id == STANDIN_MODEL_ID
    pid = backend.pid()
    backend.stop()
    assert backend.pid() is None and _gone(pid)


def test_a_backend_that_dies_shows_its_output(qgis_app, tmp_path):
    folder = _fake_backend_dir(
        tmp_path,
        """
        import sys
        print("loading checkpoint /nowhere/model.safetensors failed: no such file", file=sys.stderr)
        sys.exit(3)
    """,
    )
    backend = Backend()
    with pytest.raises(LocalStartError) as failure:
        backend.ensure_local(PluginSettings(python_path=sys.executable, working_dir=str(folder)))
    first, _, log = str(failure.value).partition("\n")
    assert first == "The local backend stopped (exit code 3)."
    assert "loading checkpoint /nowhere/model.safetensors failed: no such file" in log
    assert backend.state == "failed" and not backend.is_running()


def test_a_missing_python_is_explained(qgis_app, tmp_path):
    backend = Backend()
    with pytest.raises(LocalStartError) as failure:
        backend.ensure_local(
            PluginSettings(python_path=str(tmp_path / "no-python"), working_dir=str(tmp_path))
        )
    assert backend.state == "failed"
    assert str(failure.value).startswith(
        f"The local backend could not be started: “{tmp_path / 'no-python'}” was not found"
    )


@pytest.fixture()
def plugin(qgis_main_iface, plugin_settings, clean_project):
    loaded = rs2sam2_qgis.classFactory(qgis_main_iface)
    loaded.initGui()
    yield loaded
    if loaded.dock is not None:
        loaded.unload()


def test_run_with_a_local_backend_then_unload_leaves_nothing_behind(
    plugin, qgis_main_iface, tmp_path, geotiff, clean_project
):
    dock = plugin.dock
    dock.backend_row.apply_settings(
        PluginSettings(start_local=True, python_path=sys.executable, working_dir=str(_serving_dir(tmp_path)))
    )
    raster = QgsRasterLayer(geotiff, "scene")
    clean_project.addMapLayer(raster)
    dock.layer_combo.setLayer(raster)
    dock.set_area_mode(AREA_WHOLE_LAYER)
    dock.phrase_combo.setEditText("a red roof")
    dock.run_button.click()  # starts the backend first, then runs
    wait_until(
        lambda: any(lyr.customProperty(PHRASE_PROPERTY) for lyr in QgsProject.instance().mapLayers().values())
        or dock.backend_row.backend.state == "failed",
        timeout_s=60,
        what="the run on the local backend",
    )
    assert dock.backend_row.backend.state == "running", dock.backend_row.backend.log_text
    pid = dock.backend_row.backend.pid()

    # Processing in the same session uses the backend the panel started (its port and token).
    import processing

    result = processing.run(
        "rs2sam2:segmentbytext",
        {"INPUT": geotiff, "PHRASES": "a blue pond", "OUTPUT": str(tmp_path / "local.gpkg")},
    )
    found = [f["phrase"] for f in QgsVectorLayer(result["OUTPUT"], "out", "ogr").getFeatures()]
    assert found == ["a blue pond"]

    canvas = qgis_main_iface.mapCanvas()
    dock.start_drawing()  # a map tool is active when the plugin unloads
    assert canvas.mapTool() is dock.drawing.tool
    main_window = qgis_main_iface.main_window

    plugin.unload()
    QgsApplication.processEvents()
    QgsApplication.sendPostedEvents(None, 0)
    assert _gone(pid)
    assert shared_backend().local_connection() is None
    assert canvas.mapTool() is None or canvas.mapTool().__class__.__name__ != "QgsMapToolExtent"
    assert [
        d
        for d in main_window.findChildren(QDockWidget)
        if d.objectName() == "RS2SAM2SegmentDock" and main_window.dockWidgetArea(d) != 0
    ] == []
    assert QgsApplication.processingRegistry().providerById("rs2sam2") is None
    assert [a for a in qgis_main_iface.plugin_toolbar.actions() if a.objectName().startswith("RS2SAM2")] == []
    assert "&RS2-SAM 2" not in [a.text() for a in qgis_main_iface.raster_menu.actions() if a.menu()]


def test_a_failed_start_in_the_panel_offers_its_output(plugin, qgis_main_iface, tmp_path):
    from qgis.core import Qgis
    from qgis.PyQt.QtWidgets import QPushButton

    folder = _fake_backend_dir(
        tmp_path,
        """
        import sys
        print("CUDA error: no kernel image is available", file=sys.stderr)
        sys.exit(1)
    """,
    )
    bar = qgis_main_iface.messageBar()
    bar.clearWidgets()
    dock = plugin.dock
    dock.backend_row.apply_settings(
        PluginSettings(start_local=True, python_path=sys.executable, working_dir=str(folder))
    )
    dock.backend_row.start_button.click()
    wait_until(lambda: dock.backend_row.start_task is None, timeout_s=30, what="the failed start")
    assert dock.backend_row.backend.state == "failed"
    (item,) = [i for i in bar.items() if i.level() == Qgis.Critical]
    assert item.text() == "The local backend stopped (exit code 1)."
    assert [b.text() for b in item.findChildren(QPushButton)] == ["Show output", "Settings…"]
    assert "CUDA error: no kernel image is available" in dock.backend_row.backend.log_text
    assert dock.backend_row.label.text() == "Backend: local start failed"
    bar.clearWidgets()


def test_an_unexpected_failure_while_starting_leaves_it_failed_not_starting(qgis_app, tmp_path, monkeypatch):
    from rs2sam2_qgis.connection import backend as backend_module

    def broken(*_args):
        raise RuntimeError("no more file descriptors")

    monkeypatch.setattr(backend_module, "start_local_process", broken)
    backend = Backend()
    with pytest.raises(LocalStartError, match="no more file descriptors"):
        backend.ensure_local(PluginSettings(python_path=sys.executable, working_dir=str(tmp_path)))
    assert backend.state == "failed" and backend.pid() is None
