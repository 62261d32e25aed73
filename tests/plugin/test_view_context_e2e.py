"""The same area and phrase name the same object through `rs2sam2 segment`, the service (the real app,
served by uvicorn on loopback), the plugin's panel in real QGIS and the Processing algorithm, all in
view mode (the default with keep "best"), with the stand-in that knows the leftmost object only among
what it sees — and a too large area gets the same clear refusal everywhere."""

from __future__ import annotations

import json

import httpx
import pyogrio
import pytest
import shapely
from qgis.core import Qgis, QgsCoordinateReferenceSystem, QgsRasterLayer, QgsRectangle

from backend.cli import main as rs2sam2
from backend.service.config import ServiceConfig
from rs2sam2_qgis.contract import API_PREFIX, AREA_TOO_LARGE, MAX_CONTEXT_SHRINK
from rs2sam2_qgis.layers.area import AREA_RECTANGLE, AREA_WHOLE_LAYER
from rs2sam2_qgis.layers.result_layer import PHRASE_PROPERTY
from rs2sam2_qgis.panel.dock import SegmentDock
from rs2sam2_qgis.settings import PluginSettings
from tests.engine.rasters import background, pixel_box, write_geotiff
from tests.engine.standin import ContextModel
from tests.engine.test_view_mode import LEFT, RIGHT, UTM, leftmost_scene
from tests.live_server import live_server
from tests.plugin.conftest import wait_until

PHRASE = "the leftmost red field"
# A rectangle of the area (map units, EPSG:32633) still holding both objects, as a bbox everywhere.
RECTANGLE = pixel_box(10, 20, 250, 180, UTM)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The service's real app with the stand-in model (tests/live_server.py), reading paths under its
    own folder. (Named like the plugin tests' `server`; this module's is the view-mode stand-in's.)"""
    folder = tmp_path_factory.mktemp("served")
    config = ServiceConfig(allowed_roots=(folder.resolve(),))
    with live_server(ContextModel(64), config, record=False) as live:
        yield {"url": live.url, "folder": folder}


@pytest.fixture(scope="module")
def scene(server) -> str:
    return str(write_geotiff(server["folder"] / "leftmost.tif", leftmost_scene()))


@pytest.fixture()
def dock(qgis_iface, qgis_canvas, plugin_settings, clean_project, server):
    PluginSettings(server_url=server["url"]).save()
    qgis_iface.messageBar().clearWidgets()
    panel = SegmentDock(qgis_iface)
    yield panel
    panel.shutdown()
    panel.deleteLater()
    qgis_iface.messageBar().clearWidgets()


def cli_answer(monkeypatch, raster: str, out, bbox: shapely.Polygon | None) -> shapely.Geometry:
    monkeypatch.setattr("backend.engine.model_loading.load_model", lambda *args, **kwargs: ContextModel(64))
    area = ["--bbox", ",".join(map(str, bbox.bounds))] if bbox is not None else []
    assert rs2sam2(["segment", raster, PHRASE, "-o", str(out), "--keep", "best", "--quiet", *area]) == 0
    _, _, geometries, _ = pyogrio.raw.read(out)
    (geometry,) = geometries
    return shapely.from_wkb(geometry)


def service_answer(server, raster: str, bbox: shapely.Polygon | None) -> shapely.Geometry:
    params = {"phrases": [PHRASE], **({"bbox": list(bbox.bounds)} if bbox is not None else {})}
    answer = httpx.post(
        f"{server['url']}{API_PREFIX}/segment",
        data={"params": json.dumps(params), "path": raster},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    (feature,) = answer.json()["features"]
    return shapely.geometry.shape(feature["geometry"])


def panel_answer(dock: SegmentDock, project, raster: str, bbox: shapely.Polygon | None) -> shapely.Geometry:
    layer = QgsRasterLayer(raster, "leftmost")
    assert layer.isValid()
    project.addMapLayer(layer)
    dock.layer_combo.setLayer(layer)
    if bbox is None:
        dock.set_area_mode(AREA_WHOLE_LAYER)
    else:
        dock.set_area_mode(AREA_RECTANGLE)
        dock.set_drawn_rectangle(QgsRectangle(*bbox.bounds), QgsCoordinateReferenceSystem("EPSG:32633"))
    dock.phrase_combo.setEditText(PHRASE)
    assert dock.options().context is None and dock.options().keep == "best"  # the panel's defaults
    dock.run_button.click()
    wait_until(lambda: dock.task is None, timeout_s=60, what="the panel's run")
    (result,) = [lyr for lyr in project.mapLayers().values() if lyr.customProperty(PHRASE_PROPERTY)]
    (feature,) = list(result.getFeatures())
    return shapely.from_wkt(feature.geometry().asWkt())


@pytest.mark.parametrize("bbox", [None, RECTANGLE], ids=["whole raster", "rectangle"])
@pytest.mark.parametrize("send_mode", ["auto", "upload"])
def test_cli_service_and_panel_name_the_same_object(
    monkeypatch, tmp_path, server, scene, dock, clean_project, bbox, send_mode
):
    dock.settings.send_mode = send_mode  # auto: the file's path (the service may read it); upload: pixels
    by_cli = cli_answer(monkeypatch, scene, tmp_path / "cli.gpkg", bbox)
    by_service = service_answer(server, scene, bbox)
    by_panel = panel_answer(dock, clean_project, scene, bbox)
    for answer in (by_cli, by_service, by_panel):
        assert answer.intersection(LEFT).area > 0.95 * LEFT.area and not answer.intersects(RIGHT)
        assert answer.symmetric_difference(by_cli).area <= 1e-6 * LEFT.area


def test_a_too_large_area_is_refused_the_same_way_everywhere(
    monkeypatch, tmp_path, capsys, server, dock, clean_project, qgis_iface
):
    side = MAX_CONTEXT_SHRINK * 64 + 64
    huge = str(write_geotiff(server["folder"] / "huge.tif", background(16, side)))
    monkeypatch.setattr("backend.engine.model_loading.load_model", lambda *args, **kwargs: ContextModel(64))
    assert rs2sam2(["segment", huge, PHRASE, "-o", str(tmp_path / "x.gpkg"), "--keep", "best"]) == 2
    # The error is the last line on stderr (the first says what runs: model, precision, threads).
    cli_message = capsys.readouterr().err.strip().splitlines()[-1].removeprefix("rs2sam2 segment: error: ")
    assert "'tiles'" in cli_message and not (tmp_path / "x.gpkg").exists()

    answer = httpx.post(
        f"{server['url']}{API_PREFIX}/segment",
        data={"params": json.dumps({"phrases": [PHRASE]}), "path": huge},
        timeout=60,
    )
    assert answer.status_code == 400 and answer.json()["error"]["code"] == AREA_TOO_LARGE
    assert answer.json()["error"]["message"] == cli_message

    layer = QgsRasterLayer(huge, "huge")
    clean_project.addMapLayer(layer)
    dock.layer_combo.setLayer(layer)
    dock.set_area_mode(AREA_WHOLE_LAYER)
    dock.phrase_combo.setEditText(PHRASE)
    dock.run_button.click()
    wait_until(lambda: dock.task is None, timeout_s=60, what="the panel's run")
    shown = [item.text() for item in qgis_iface.messageBar().items() if item.level() == Qgis.Critical]
    assert len(shown) == 1 and "'tiles'" in shown[0] and f"{side}×16 pixels" in shown[0]

    tiles = dock.option_inputs.widgets["context"]  # the same area in tiles mode runs
    tiles.setCurrentIndex(tiles.findData("tiles"))
    dock.run_button.click()
    wait_until(lambda: dock.task is None, timeout_s=60, what="the panel's run in tiles mode")
    assert "Nothing found" in dock.status_label.text()


@pytest.mark.parametrize("context, expected", [(0, LEFT), (1, LEFT), (2, RIGHT)])
def test_the_processing_algorithm_follows_the_same_context(
    qgis_processing, plugin_settings, server, scene, tmp_path, context, expected
):
    """CONTEXT 0 (by KEEP: best → view), 1 (view) and 2 (tiles: each tile's leftmost, the largest wins)."""
    import processing
    from qgis.core import QgsApplication, QgsVectorLayer

    from rs2sam2_qgis.processing.provider import RS2SAM2Provider

    registry = QgsApplication.processingRegistry()
    registry.addProvider(RS2SAM2Provider())
    try:
        PluginSettings(server_url=server["url"]).save()
        result = processing.run(
            "rs2sam2:segmentbytext",
            {
                "INPUT": scene,
                "PHRASES": PHRASE,
                "KEEP": 0,
                "CONTEXT": context,
                "OUTPUT": str(tmp_path / "o.gpkg"),
            },
        )
    finally:
        registry.removeProvider("rs2sam2")
    (feature,) = list(QgsVectorLayer(result["OUTPUT"], "out", "ogr").getFeatures())
    found = shapely.from_wkt(feature.geometry().asWkt())
    assert found.intersection(expected).area > 0.95 * expected.area
    assert found.intersection(expected).area > 0.95 * found.area
