"""The Processing algorithm "Segment by text": processing.run in real QGIS, and qgis_process with the
plugin installed from its zip into a throw-away QGIS profile."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import zipfile
from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsProcessingException, QgsVectorLayer

from tests.engine.standin import HeldModel
from tests.plugin.conftest import (
    BLUE_PATCH,
    RASTER_EPSG,
    RED_SQUARE,
    lost_backend_sentences,
    pixel_rect,
    wait_until,
    write_geotiff,
    xyz_layer_uri,
)

ROOT = Path(__file__).resolve().parents[2]
QGIS_PROCESS = "/usr/bin/qgis_process.bin"  # the /usr/bin/qgis_process wrapper passes a flag 3.22 rejects
ALGORITHM = "rs2sam2:segmentbytext"
FIELDS = ["phrase", "score", "area", "source", "model", "created"]


def test_provider_loads_without_a_backend_and_lists_the_algorithm(provider):
    algorithm = QgsApplication.processingRegistry().algorithmById(ALGORITHM)
    assert algorithm is not None and algorithm.displayName() == "Segment by text"
    names = [p.name() for p in algorithm.parameterDefinitions()]
    for name in (
        "INPUT",
        "PHRASES",
        "EXTENT",
        "TILE_SIZE",
        "OVERLAP",
        "GSD",
        "THRESHOLD",
        "SIMPLIFY",
        "MIN_AREA",
        "KEEP",
        "OUTPUT",
    ):
        assert name in names


def test_processing_run_writes_a_geopackage(provider, server, geotiff, tmp_path, plugin_settings):
    import processing

    out = tmp_path / "out.gpkg"
    result = processing.run(
        ALGORITHM,
        {
            "INPUT": geotiff,
            "PHRASES": "the red roof\n\na blue road\n",
            "EXTENT": "500100,500400,4999500,4999800 " f"[EPSG:{RASTER_EPSG}]",
            "THRESHOLD": 0.3,
            "KEEP": 1,
            "TILE_SIZE": 32,
            "MIN_AREA": 5,
            "BACKEND_URL": server.url,
            "OUTPUT": str(out),
        },
    )
    layer = QgsVectorLayer(result["OUTPUT"], "out", "ogr")
    assert layer.isValid() and layer.featureCount() == 2
    assert layer.crs().authid() == f"EPSG:{RASTER_EPSG}"
    assert [n for n in layer.fields().names() if n != "fid"] == FIELDS
    found = {f["phrase"]: f.geometry().boundingBox() for f in layer.getFeatures()}
    assert sorted(found) == ["a blue road", "the red roof"]
    # Each phrase's patch of the scene, cut to the extent.
    red, blue = pixel_rect(RED_SQUARE), pixel_rect(BLUE_PATCH)
    expected = {"the red roof": (red[0], red[1], 500400, 4999800), "a blue road": blue}
    for phrase, box in found.items():
        assert (box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum()) == pytest.approx(
            expected[phrase], abs=0.01
        )
    (received,) = server.requests
    params = received.params
    assert params["phrases"] == ["the red roof", "a blue road"]
    assert params["threshold"] == pytest.approx(0.3) and params["keep"] == "all"
    assert params["tile_size"] == 32 and params["min_area"] == 5
    assert params["overlap"] is None and params["gsd"] is None  # not given: the engine's default
    assert params["bbox"] == pytest.approx([500100, 4999500, 500400, 4999800])


def test_backend_down_stops_with_a_clear_message(provider, geotiff, tmp_path, plugin_settings):
    import processing

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(QgsProcessingException) as info:
        processing.run(
            ALGORITHM,
            {
                "INPUT": geotiff,
                "PHRASES": "a roof",
                "BACKEND_URL": url,
                "OUTPUT": str(tmp_path / "never.gpkg"),
            },
        )
    assert str(info.value).startswith(f"The backend at {url} is not reachable")
    assert "rs2sam2 serve" in str(info.value)
    assert not (tmp_path / "never.gpkg").exists()


def test_backend_message_reaches_the_user(provider, server, geotiff, tmp_path, plugin_settings):
    import processing

    with pytest.raises(QgsProcessingException, match="Phrase 1 is longer than 500 characters."):
        processing.run(
            ALGORITHM,
            {
                "INPUT": geotiff,
                "PHRASES": "x" * 501,
                "BACKEND_URL": server.url,
                "OUTPUT": str(tmp_path / "never.gpkg"),
            },
        )


@pytest.fixture(scope="module")
def plugin_profile(tmp_path_factory, plugin_zip) -> Path:
    """A QGIS profile folder with the plugin unpacked from `make plugin`'s zip (tests/plugin/conftest.py)."""
    config = tmp_path_factory.mktemp("qgis-config")
    plugins = config / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(plugin_zip) as archive:
        archive.extractall(plugins)
    return config


def _qgis_process(config: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, QGIS_CUSTOM_CONFIG_PATH=str(config), QT_QPA_PLATFORM="offscreen")
    env.pop("PYTHONPATH", None)  # the plugin must load from the profile, not from this checkout
    return subprocess.run(
        [QGIS_PROCESS, *args], env=env, capture_output=True, text=True, timeout=180, cwd=config
    )


@pytest.mark.slow
@pytest.mark.skipif(shutil.which(QGIS_PROCESS) is None, reason="QGIS's qgis_process is not installed")
def test_qgis_process_runs_the_installed_plugin(plugin_profile, server, geotiff, tmp_path):
    enabled = _qgis_process(plugin_profile, "plugins", "enable", "rs2sam2_qgis")
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    # The backend URL comes from the plugin's settings in that profile, as for a user.
    ini = plugin_profile / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    with ini.open("a", encoding="utf-8") as f:
        f.write(f"\n[rs2sam2]\nserver_url={server.url}\n")
    out = tmp_path / "cli.gpkg"
    run = _qgis_process(
        plugin_profile,
        "run",
        ALGORITHM,
        "--",
        f"INPUT={geotiff}",
        "PHRASES=a small blue lake",
        "KEEP=0",
        f"OUTPUT={out}",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    layer = QgsVectorLayer(str(out), "cli", "ogr")
    assert layer.featureCount() == 1
    (feature,) = layer.getFeatures()
    assert feature["phrase"] == "a small blue lake"
    box = feature.geometry().boundingBox()
    assert (box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum()) == pytest.approx(
        pixel_rect(BLUE_PATCH), abs=0.01
    )
    assert layer.crs().authid() == f"EPSG:{RASTER_EPSG}"
    # The algorithm ran in the unpacked plugin: it sent the file path from that process.
    (received,) = server.requests
    assert received.kind == "path" and received.path == geotiff

    # Without a backend the command fails with the sentence, and writes nothing.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    failed = _qgis_process(
        plugin_profile,
        "run",
        ALGORITHM,
        "--",
        f"INPUT={geotiff}",
        "PHRASES=a lake",
        f"BACKEND_URL={dead}",
        f"OUTPUT={tmp_path / 'never.gpkg'}",
    )
    assert failed.returncode != 0
    assert f"The backend at {dead} is not reachable" in failed.stdout + failed.stderr
    assert "Traceback" not in failed.stdout + failed.stderr
    assert not (tmp_path / "never.gpkg").exists()


def test_cancel_through_feedback_stops_the_job_and_writes_nothing(
    provider, serve, geotiff, tmp_path, plugin_settings
):
    import threading

    import processing
    from qgis.core import QgsProcessingFeedback

    model = HeldModel()
    server = serve(model)
    feedback = QgsProcessingFeedback()
    # Cancel as the Processing dialog's Cancel button does, once the job is under way (and held there).
    watcher = threading.Thread(target=lambda: model.entered.wait(30) and feedback.cancel(), daemon=True)
    watcher.start()
    with pytest.raises(QgsProcessingException, match="The run was cancelled; nothing was written."):
        processing.run(
            ALGORITHM,
            {
                "INPUT": geotiff,
                "PHRASES": "a red lake",
                "BACKEND_URL": server.url,
                "OUTPUT": str(tmp_path / "never.gpkg"),
            },
            feedback=feedback,
        )
    watcher.join(5)
    (job_id,) = server.job_ids
    assert server.job(job_id)["status"] == "cancelled"
    model.release()
    with server.client() as client:
        wait_until(lambda: not client.get("/health").json()["busy"], what="the backend to stop")
    assert model.started == 1 and server.job(job_id)["status"] == "cancelled"
    assert not (tmp_path / "never.gpkg").exists()


def test_a_backend_killed_mid_run_stops_with_one_sentence_and_writes_nothing(
    provider, killable_backend, tmp_path, plugin_settings
):
    import threading

    import processing

    url, process, marker = killable_backend
    geotiff = write_geotiff(tmp_path / "scene.tif")  # under the backend's allowed folder: sent by path

    def kill_once_in_the_model() -> None:
        if wait_for(marker.exists, 60):
            process.kill()

    killer = threading.Thread(target=kill_once_in_the_model, daemon=True)
    killer.start()
    with pytest.raises(QgsProcessingException) as lost:
        processing.run(
            ALGORITHM,
            {
                "INPUT": geotiff,
                "PHRASES": "a red lake",
                "BACKEND_URL": url,
                "OUTPUT": str(tmp_path / "never.gpkg"),
            },
        )
    killer.join(10)
    assert str(lost.value) in lost_backend_sentences(url)
    assert process.wait(10) == -9 and not (tmp_path / "never.gpkg").exists()


def wait_for(condition, timeout_s: float) -> bool:
    """Poll `condition` from a helper thread (the main thread is inside processing.run)."""
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_the_algorithm_works_inside_a_model(provider, server, geotiff, tmp_path, plugin_settings):
    """What the Modeler builds: a model whose child is Segment by text, fed by a model input."""
    import processing
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterRasterLayer,
    )

    model = QgsProcessingModelAlgorithm("roofs", "tests")
    model.addModelParameter(
        QgsProcessingParameterRasterLayer("scene", "Scene"), QgsProcessingModelParameter("scene")
    )
    child = QgsProcessingModelChildAlgorithm(ALGORITHM)
    child.setChildId("segment")
    static = QgsProcessingModelChildParameterSource.fromStaticValue
    child.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromModelParameter("scene")])
    child.addParameterSources("PHRASES", [static("a red roof\na blue pool")])
    child.addParameterSources("THRESHOLD", [static(0.5)])
    child.addParameterSources("KEEP", [static(0)])
    child.addParameterSources("BACKEND_URL", [static(server.url)])
    output = QgsProcessingModelOutput("polygons")
    output.setChildOutputName("OUTPUT")
    child.setModelOutputs({"polygons": output})
    model.addChildAlgorithm(child)
    model.updateDestinationParameters()

    result = processing.run(model, {"scene": geotiff, "segment:polygons": str(tmp_path / "model.gpkg")})
    layer = QgsVectorLayer(result["segment:polygons"], "model", "ogr")
    assert sorted(f["phrase"] for f in layer.getFeatures()) == ["a blue pool", "a red roof"]


def test_a_web_layer_is_rendered_at_the_gsd(provider, server, tmp_path, plugin_settings, clean_project):
    import processing
    from qgis.core import QgsRasterLayer

    web = QgsRasterLayer(xyz_layer_uri(tmp_path), "web map", "wms")
    clean_project.addMapLayer(web)
    params = {
        "INPUT": web,
        "PHRASES": "a red field",
        "EXTENT": "1000000,1500000,1000000,1400000 [EPSG:3857]",
        "BACKEND_URL": server.url,
        "OUTPUT": str(tmp_path / "web.gpkg"),
    }
    with pytest.raises(QgsProcessingException, match="has no pixels of its own; give the resolution"):
        processing.run(ALGORITHM, params)
    result = processing.run(ALGORITHM, {**params, "GSD": 5000})
    (received,) = server.requests
    assert received.kind == "upload" and received.raster["size"] == (100, 80)  # 500 km × 400 km at 5 km
    assert received.raster["bands"] == 4 and received.raster["band_max"][:3] == [200, 30, 30]
    assert received.params["gsd"] == 5000
    # The web map is red all over: the feature is the whole extent.
    (feature,) = QgsVectorLayer(result["OUTPUT"], "web", "ogr").getFeatures()
    assert feature.geometry().boundingBox().toString(0) == "1000000,1000000 : 1500000,1400000"
    assert QgsVectorLayer(result["OUTPUT"], "web", "ogr").crs().authid() == "EPSG:3857"
