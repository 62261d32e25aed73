"""The dock workflow in real QGIS, driven like a person would, against the real service app on loopback
(stand-in model: tests/plugin/conftest.py)."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsGeometry,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtTest import QTest

from rs2sam2_qgis.layers.area import AREA_MAP_VIEW, AREA_RECTANGLE, AREA_SELECTED, AREA_WHOLE_LAYER
from rs2sam2_qgis.layers.result_layer import PHRASE_PROPERTY
from rs2sam2_qgis.panel.dock import SegmentDock
from rs2sam2_qgis.settings import PluginSettings
from tests.engine.standin import HeldModel
from tests.plugin.conftest import (
    RASTER_EPSG,
    RED_SQUARE,
    STANDIN_MODEL_ID,
    lost_backend_sentences,
    pixel_rect,
    wait_until,
    write_geotiff,
    xyz_layer_uri,
)

RESULT_FIELDS = ["phrase", "score", "area", "source", "model", "created"]


def _messages(iface, level=None) -> list[str]:
    bar = iface.messageBar()
    return [item.text() for item in bar.items() if level is None or item.level() == level]


def _result_layers(project) -> list[QgsVectorLayer]:
    return [lyr for lyr in project.mapLayers().values() if lyr.customProperty(PHRASE_PROPERTY)]


@pytest.fixture()
def raster_layer(geotiff, clean_project, qgis_canvas):
    layer = QgsRasterLayer(geotiff, "scene")
    assert layer.isValid()
    clean_project.addMapLayer(layer)
    qgis_canvas.setDestinationCrs(layer.crs())
    qgis_canvas.setExtent(layer.extent())
    return layer


def _run_and_wait(dock: SegmentDock, phrase: str) -> None:
    dock.phrase_combo.setEditText(phrase)
    assert dock.run_button.isEnabled(), dock.status_label.text()
    dock.run_button.click()
    wait_until(lambda: dock.task is None, what="the segmentation task")


def test_run_is_disabled_with_the_reason_until_raster_and_phrase(make_dock, server, raster_layer):
    dock = make_dock(server_url=server.url)
    dock.layer_combo.setLayer(None)
    assert not dock.run_button.isEnabled()
    assert dock.status_label.text() == "Choose a raster layer to search in."
    dock.layer_combo.setLayer(raster_layer)
    assert not dock.run_button.isEnabled()
    assert dock.status_label.text() == "Type a phrase describing what to find."
    dock.phrase_combo.setEditText("   ")
    assert not dock.run_button.isEnabled()
    dock.phrase_combo.setEditText("the red roof")
    assert dock.run_button.isEnabled()
    dock.set_area_mode(AREA_RECTANGLE)
    assert not dock.run_button.isEnabled()
    assert dock.status_label.text() == "Draw a rectangle on the map to give the area."
    assert server.requests == []


def test_dock_defaults_to_the_active_raster(make_dock, server, raster_layer, qgis_iface):
    qgis_iface.setActiveLayer(raster_layer)
    dock = make_dock(server_url=server.url)
    assert dock.layer_combo.currentLayer() is raster_layer
    # Opening the panel again picks the raster that is active then.
    other = QgsRasterLayer(raster_layer.source(), "other")
    QgsProject.instance().addMapLayer(other)
    qgis_iface.setActiveLayer(other)
    dock.show()
    assert dock.layer_combo.currentLayer() is other
    dock.hide()


def test_run_adds_a_layer_named_after_the_phrase_in_the_raster_crs(
    make_dock, server, raster_layer, clean_project, geotiff
):
    dock = make_dock(server_url=server.url)
    dock.layer_combo.setLayer(raster_layer)
    dock.set_area_mode(AREA_WHOLE_LAYER)
    _run_and_wait(dock, "the red roof")

    (layer,) = _result_layers(clean_project)
    assert layer.name() == "the red roof"
    assert layer.crs().authid() == f"EPSG:{RASTER_EPSG}"
    assert layer.fields().names() == RESULT_FIELDS
    (feature,) = list(layer.getFeatures())
    assert feature["phrase"] == "the red roof" and feature["model"] == STANDIN_MODEL_ID
    assert feature["score"] == pytest.approx(1.0)  # pure red: the colour model is sure
    # The red square of the scene (a 240 m square).
    box = feature.geometry().boundingBox()
    expected = pixel_rect(RED_SQUARE)
    assert (box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum()) == pytest.approx(
        expected, abs=0.01
    )
    assert feature["area"] == pytest.approx(240 * 240)
    assert not layer.renderer().symbol().symbolLayer(0).brushStyle()  # outline only, no fill
    # The file travelled as its path (the backend shares this machine), without a bbox for "whole layer".
    (received,) = server.requests
    assert received.kind == "path" and received.path == geotiff and received.status == 202
    assert "bbox" not in received.params
    assert dock.progress_bar.value() == 100
    assert dock.status_label.text() == "Added 1 polygon(s) to “the red roof”."
    # The phrase is remembered, most recent first.
    assert PluginSettings.load().phrase_history == ["the red roof"]


def test_same_phrase_appends_to_the_same_layer_and_enter_runs(make_dock, server, raster_layer, clean_project):
    dock = make_dock(server_url=server.url)
    dock.layer_combo.setLayer(raster_layer)
    dock.set_area_mode(AREA_MAP_VIEW)
    _run_and_wait(dock, "a red field")
    dock.phrase_combo.setEditText("a red field")
    QTest.keyClick(dock.phrase_combo.lineEdit(), Qt.Key_Return)
    wait_until(lambda: dock.task is None and len(server.requests) == 2, what="the second run")
    (layer,) = _result_layers(clean_project)
    assert layer.featureCount() == 2
    # The map view travelled as a bbox in the raster's CRS.
    bbox = server.requests[-1].params["bbox"]
    assert bbox[0] >= 500000 and bbox[3] <= 5000000 and bbox[2] > bbox[0]


def test_upload_when_the_backend_cannot_read_paths(make_dock, serve, raster_layer, clean_project):
    """The area goes as a GeoTIFF carrying the CRS; the answer lands where the area is."""
    server = serve(allowed_roots=())
    dock = make_dock(server_url=server.url)
    dock.layer_combo.setLayer(raster_layer)
    dock.set_area_mode(AREA_RECTANGLE)
    dock.set_drawn_rectangle(QgsRectangle(500100, 4999500, 500300, 4999700), raster_layer.crs())
    _run_and_wait(dock, "a red road")
    assert server.requests, dock.status_label.text()
    (received,) = server.requests  # the backend said it reads no paths: no path was tried
    assert received.kind == "upload" and received.status == 202
    assert QgsCoordinateReferenceSystem.fromWkt(received.raster["crs_wkt"]).authid() == f"EPSG:{RASTER_EPSG}"
    assert received.raster["size"] == (20, 20)  # 200 m at 10 m per pixel
    assert received.raster["box"] == pytest.approx([500100, 4999500, 500300, 4999700])
    (layer,) = _result_layers(clean_project)
    (feature,) = layer.getFeatures()
    # The part of the red square inside the rectangle, in the raster's coordinates.
    box = feature.geometry().boundingBox()
    expected = (pixel_rect(RED_SQUARE)[0], pixel_rect(RED_SQUARE)[1], 500300, 4999700)
    assert (box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum()) == pytest.approx(
        expected, abs=0.01
    )
    assert feature["source"] == "scene.tif"  # the upload carries the layer's name


def test_a_refused_path_falls_back_to_an_upload(make_dock, serve, raster_layer, clean_project, tmp_path):
    server = serve(allowed_roots=(tmp_path / "shared",))  # the backend reads paths, but not this folder
    dock = make_dock(server_url=server.url)
    dock.layer_combo.setLayer(raster_layer)
    dock.set_area_mode(AREA_WHOLE_LAYER)
    _run_and_wait(dock, "a red roof")
    assert [(r.kind, r.status) for r in server.requests] == [("path", 403), ("upload", 202)]
    assert server.requests[0].answer_json["error"]["code"] == "path_not_allowed"
    assert server.requests[1].raster["size"] == (64, 64)
    (layer,) = _result_layers(clean_project)
    assert layer.featureCount() == 1


def test_selected_polygons_give_the_area_in_another_crs(make_dock, server, raster_layer):
    polygons = QgsVectorLayer("Polygon?crs=EPSG:4326", "fields", "memory")
    corner = QgsGeometry.fromWkt("POINT(500200 4999600)")
    from qgis.core import QgsCoordinateTransform

    to_wgs84 = QgsCoordinateTransform(raster_layer.crs(), polygons.crs(), QgsProject.instance())
    corner.transform(to_wgs84)
    lon, lat = corner.asPoint().x(), corner.asPoint().y()
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromRect(QgsRectangle(lon, lat, lon + 0.002, lat + 0.001)))
    polygons.dataProvider().addFeatures([feature])
    QgsProject.instance().addMapLayer(polygons)
    dock = make_dock(server_url=server.url)
    dock.layer_combo.setLayer(raster_layer)
    dock.set_area_mode(AREA_SELECTED)
    dock.polygon_combo.setLayer(polygons)
    dock.phrase_combo.setEditText("a red tree")
    assert not dock.run_button.isEnabled()
    assert dock.status_label.text() == "Select polygons in “fields” to give the area."
    polygons.selectAll()
    _run_and_wait(dock, "a red tree")
    xmin, ymin, xmax, ymax = server.requests[-1].params["bbox"]
    assert xmin == pytest.approx(500200, abs=1) and ymin == pytest.approx(4999600, abs=1)
    assert 100 < xmax - xmin < 200 and 50 < ymax - ymin < 150  # 0.002° × 0.001° near 45° N


def test_results_are_cut_to_the_selected_polygons(make_dock, server, raster_layer, clean_project):
    """The request covers the polygons' bounding box; what comes back is trimmed to the polygons."""
    from qgis.core import QgsCoordinateTransform

    polygons = QgsVectorLayer("Polygon?crs=EPSG:4326", "parcels", "memory")
    to_wgs84 = QgsCoordinateTransform(raster_layer.crs(), polygons.crs(), QgsProject.instance())
    triangle = QgsGeometry.fromWkt(
        "POLYGON((500100 4999500, 500400 4999500, 500100 4999800, 500100 4999500))"
    )
    triangle_in_raster_crs = QgsGeometry(triangle)
    triangle.transform(to_wgs84)
    feature = QgsFeature()
    feature.setGeometry(triangle)
    polygons.dataProvider().addFeatures([feature])
    clean_project.addMapLayer(polygons)
    polygons.selectAll()
    dock = make_dock(server_url=server.url)
    dock.layer_combo.setLayer(raster_layer)
    dock.set_area_mode(AREA_SELECTED)
    dock.polygon_combo.setLayer(polygons)
    _run_and_wait(dock, "a red pond")

    (layer,) = _result_layers(clean_project)
    (result,) = list(layer.getFeatures())
    # The backend finds the red square within the triangle's bounding box; the triangle's diagonal
    # crosses it, so only the part inside the triangle is kept, and `area` shrinks with it.
    geometry = result.geometry()
    inside = QgsGeometry.fromRect(QgsRectangle(*pixel_rect(RED_SQUARE))).intersection(triangle_in_raster_crs)
    assert 0 < inside.area() < 240 * 240 / 2  # the cut is real: a part of the square, not all of it
    assert geometry.difference(triangle_in_raster_crs.buffer(0.5, 4)).isEmpty()
    assert geometry.symDifference(inside).area() <= 0.01 * inside.area()
    assert result["area"] == pytest.approx(geometry.area(), rel=1e-6)


def test_area_outside_the_raster_is_explained(make_dock, server, raster_layer, qgis_iface, clean_project):
    dock = make_dock(server_url=server.url)
    dock.layer_combo.setLayer(raster_layer)
    dock.set_area_mode(AREA_RECTANGLE)
    dock.set_drawn_rectangle(QgsRectangle(600000, 4000000, 600100, 4000100), raster_layer.crs())
    dock.phrase_combo.setEditText("a road")
    dock.run_button.click()
    assert dock.task is None
    assert _messages(qgis_iface, Qgis.Critical) == ["The chosen area is outside the raster “scene”."]
    assert server.requests == [] and _result_layers(clean_project) == []


def test_cancel_stops_the_run_and_adds_nothing(make_dock, serve, raster_layer, clean_project, qgis_iface):
    model = HeldModel()
    server = serve(model)
    dock = make_dock(server_url=server.url)
    dock.layer_combo.setLayer(raster_layer)
    dock.phrase_combo.setEditText("a red lake")
    dock.run_button.click()
    assert dock.cancel_button.isEnabled() and not dock.run_button.isEnabled()
    wait_until(model.entered.is_set, what="the job to start")  # and it stays running: the model is held
    dock.cancel_button.click()
    wait_until(lambda: dock.task is None, what="the task to stop")
    (job_id,) = server.job_ids
    assert server.job(job_id)["status"] == "cancelled"
    model.release()
    with server.client() as client:
        wait_until(lambda: not client.get("/health").json()["busy"], what="the backend to stop")
    assert model.started == 1 and server.job(job_id)["status"] == "cancelled"  # no tile after the cancel
    assert _result_layers(clean_project) == []
    assert dock.status_label.text() == "Cancelled: nothing was added."
    assert dock.run_button.isEnabled()


def test_backend_down_is_a_clear_message_with_buttons(make_dock, raster_layer, qgis_iface, clean_project):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    dock = make_dock(server_url=url)
    dock.layer_combo.setLayer(raster_layer)
    _run_and_wait(dock, "a roof")
    expected = f"The backend at {url} is not reachable (connection refused: is it running?)."
    assert _messages(qgis_iface, Qgis.Critical) == [expected]
    item = qgis_iface.messageBar().items()[0]
    from qgis.PyQt.QtWidgets import QPushButton

    assert [b.text() for b in item.findChildren(QPushButton)] == ["Start local backend", "Settings…"]
    assert dock.status_label.text() == expected
    assert _result_layers(clean_project) == []


def test_a_backend_killed_mid_run_is_one_sentence_and_adds_nothing(
    make_dock, killable_backend, raster_layer, qgis_iface, clean_project, tmp_path
):
    """The backend process dies (SIGKILL) while the job is in its model: the panel says so in one
    sentence, offers to start a backend, and adds and writes nothing."""
    url, process, marker = killable_backend
    gpkg = tmp_path / "results.gpkg"
    dock = make_dock(server_url=url, output_gpkg=str(gpkg))
    dock.layer_combo.setLayer(raster_layer)
    dock.phrase_combo.setEditText("a red lake")
    dock.run_button.click()
    wait_until(marker.exists, timeout_s=60, what="the job to reach the model")
    process.kill()
    process.wait(10)
    wait_until(lambda: dock.task is None, timeout_s=60, what="the panel to notice")
    (said,) = _messages(qgis_iface, Qgis.Critical)
    assert said in lost_backend_sentences(url)
    from qgis.PyQt.QtWidgets import QPushButton

    item = qgis_iface.messageBar().items()[0]
    assert [b.text() for b in item.findChildren(QPushButton)] == ["Start local backend", "Settings…"]
    assert dock.status_label.text() == said and dock.run_button.isEnabled()
    assert _result_layers(clean_project) == [] and not gpkg.exists()


def test_bad_phrase_shows_the_backends_message(make_dock, server, raster_layer, qgis_iface, clean_project):
    dock = make_dock(server_url=server.url)
    dock.layer_combo.setLayer(raster_layer)
    _run_and_wait(dock, "x" * 501)
    assert _messages(qgis_iface, Qgis.Critical) == ["Phrase 1 is longer than 500 characters."]
    assert [(r.status, r.answer_json["error"]["code"]) for r in server.requests] == [(400, "phrase_too_long")]
    assert _result_layers(clean_project) == []


def test_raster_without_crs_is_refused_before_sending(make_dock, server, tmp_path, qgis_iface, clean_project):
    layer = QgsRasterLayer(write_geotiff(tmp_path / "nocrs.tif", epsg=None), "no crs")
    clean_project.addMapLayer(layer)
    dock = make_dock(server_url=server.url)
    dock.layer_combo.setLayer(layer)
    dock.set_area_mode(AREA_WHOLE_LAYER)
    dock.phrase_combo.setEditText("a roof")
    dock.run_button.click()
    assert _messages(qgis_iface, Qgis.Critical) == [
        "The raster “no crs” has no coordinate reference system; set one in its layer properties first."
    ]
    assert server.requests == []


def test_results_go_into_the_settings_geopackage_without_touching_its_other_layers(
    make_dock, server, raster_layer, clean_project, tmp_path
):
    gpkg = tmp_path / "results.gpkg"
    # A GeoPackage the user already has, with a layer of their own.
    own = QgsVectorLayer("Point?crs=EPSG:4326&field=name:string", "mine", "memory")
    point = QgsFeature(own.fields())
    point.setGeometry(QgsGeometry.fromWkt("POINT(15 45)"))
    point["name"] = "keep me"
    own.dataProvider().addFeatures([point])
    from qgis.core import QgsVectorFileWriter

    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName, options.layerName = "GPKG", "mine"
    assert (
        QgsVectorFileWriter.writeAsVectorFormatV3(
            own, str(gpkg), QgsProject.instance().transformContext(), options
        )[0]
        == QgsVectorFileWriter.NoError
    )

    dock = make_dock(server_url=server.url, output_gpkg=str(gpkg))
    dock.layer_combo.setLayer(raster_layer)
    dock.set_area_mode(AREA_WHOLE_LAYER)
    _run_and_wait(dock, "The Red Roof")
    _run_and_wait(dock, "The Red Roof")
    (layer,) = _result_layers(clean_project)
    assert layer.providerType() == "ogr" and "layername=the_red_roof" in layer.source()
    reopened = QgsVectorLayer(f"{gpkg}|layername=the_red_roof", "check", "ogr")
    assert reopened.featureCount() == 2
    assert reopened.crs().authid() == f"EPSG:{RASTER_EPSG}"
    assert {f["phrase"] for f in reopened.getFeatures()} == {"The Red Roof"}
    mine = QgsVectorLayer(f"{gpkg}|layername=mine", "check", "ogr")
    assert [f["name"] for f in mine.getFeatures()] == ["keep me"]


def test_zooms_to_the_result_when_it_is_outside_the_view(make_dock, server, raster_layer, qgis_canvas):
    dock = make_dock(server_url=server.url)
    dock.layer_combo.setLayer(raster_layer)
    dock.set_area_mode(AREA_WHOLE_LAYER)
    qgis_canvas.setExtent(QgsRectangle(400000, 4800000, 400100, 4800100))  # far away
    _run_and_wait(dock, "a red roof")
    assert qgis_canvas.extent().contains(QgsRectangle(*pixel_rect(RED_SQUARE)))


def test_a_web_layer_is_rendered_for_the_area_and_sent_as_a_geotiff(
    make_dock, server, clean_project, tmp_path, qgis_canvas
):
    """An XYZ layer (no file behind it) travels as the map shows it: RGBA at the map's resolution, in its
    CRS."""
    web = QgsRasterLayer(xyz_layer_uri(tmp_path), "web map", "wms")
    assert web.isValid()
    clean_project.addMapLayer(web)
    qgis_canvas.setDestinationCrs(web.crs())
    qgis_canvas.setExtent(QgsRectangle(0, 0, 4e6, 3e6))
    dock = make_dock(server_url=server.url)
    dock.layer_combo.setLayer(web)
    dock.set_area_mode(AREA_RECTANGLE)
    dock.set_drawn_rectangle(QgsRectangle(1e6, 1e6, 2e6, 2e6), web.crs())
    _run_and_wait(dock, "a red field")
    (received,) = server.requests
    assert received.kind == "upload"
    assert QgsCoordinateReferenceSystem.fromWkt(received.raster["crs_wkt"]).authid() == "EPSG:3857"
    side = round(1e6 / qgis_canvas.mapUnitsPerPixel())
    width, height = received.raster["size"]
    assert abs(width - side) <= 1 and abs(height - side) <= 1
    assert received.raster["bands"] == 4 and received.raster["band_max"][:3] == [200, 30, 30]
    (layer,) = _result_layers(clean_project)
    assert layer.crs().authid() == "EPSG:3857"
    # The web map is red all over: what comes back is the drawn rectangle.
    (feature,) = layer.getFeatures()
    assert feature.geometry().boundingBox().toString(0) == QgsRectangle(1e6, 1e6, 2e6, 2e6).toString(0)


def test_drawing_a_rectangle_sets_the_area_and_gives_the_map_tool_back(
    make_dock, server, raster_layer, qgis_canvas
):
    from qgis.gui import QgsMapToolPan

    pan = QgsMapToolPan(qgis_canvas)
    qgis_canvas.setMapTool(pan)
    dock = make_dock(server_url=server.url)
    dock.layer_combo.setLayer(raster_layer)
    dock.set_area_mode(AREA_RECTANGLE)
    assert dock.draw_button.isVisibleTo(dock) and not dock.polygon_combo.isVisibleTo(dock)
    dock.draw_button.click()
    assert qgis_canvas.mapTool() is dock.drawing.tool
    dock.drawing.tool.extentChanged.emit(QgsRectangle(500100, 4999500, 500300, 4999700))  # what a drag emits
    assert qgis_canvas.mapTool() is pan
    _run_and_wait(dock, "a red pool")
    assert server.requests[-1].params["bbox"] == pytest.approx([500100, 4999500, 500300, 4999700])


def test_nothing_found_is_said_and_adds_no_layer(make_dock, server, raster_layer, qgis_iface, clean_project):
    dock = make_dock(server_url=server.url)
    dock.layer_combo.setLayer(raster_layer)
    _run_and_wait(dock, "a submarine")
    assert _messages(qgis_iface, Qgis.Info) == ["Nothing matching “a submarine” was found in the area."]
    assert dock.status_label.text() == "Nothing found for “a submarine”."
    assert _result_layers(clean_project) == []


def test_backend_state_is_shown(make_dock, server, monkeypatch):
    dock = make_dock(server_url=server.url)
    dock.backend_row.check_button.click()
    wait_until(lambda: dock.backend_row.health_task is None, what="the health check")
    # The service reports the test process's one torch thread; the stand-in model has no precision mode.
    assert dock.backend_row.label.text() == f"Backend: connected — {STANDIN_MODEL_ID} on cpu (1 thread)"
    # While a fine-tuning run trains on the backend, segmenting still answers: the row says it shares.
    monkeypatch.setattr(
        server.app.state.training, "_running", SimpleNamespace(kind="train", model_name="fields")
    )
    dock.backend_row.check()
    wait_until(lambda: dock.backend_row.health_task is None, what="the health check during training")
    assert dock.backend_row.label.text() == (
        f"Backend: connected — {STANDIN_MODEL_ID} on cpu (1 thread), fine-tuning “fields” (shares the CPU)"
    )
    server.stop()
    dock.backend_row.check()
    wait_until(lambda: dock.backend_row.health_task is None, what="the second health check")
    assert dock.backend_row.label.text() == "Backend: not reachable"
    assert "not reachable" in dock.backend_row.label.toolTip()


def test_an_unexpected_error_in_a_slot_is_a_message_not_a_traceback(
    make_dock, server, raster_layer, qgis_iface, monkeypatch
):
    dock = make_dock(server_url=server.url)
    dock.layer_combo.setLayer(raster_layer)
    dock.phrase_combo.setEditText("a roof")

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("rs2sam2_qgis.panel.dock.plan_raster", broken)
    dock.run_button.click()  # clicked(bool) reaches run(), which takes no argument
    assert _messages(qgis_iface, Qgis.Critical) == [
        "Something went wrong in RS2-SAM 2 (disk on fire); the details are in the log panel."
    ]
    assert dock.task is None


def test_a_foreign_table_of_the_same_name_is_left_alone(
    make_dock, server, raster_layer, clean_project, tmp_path, qgis_iface
):
    from qgis.core import QgsVectorFileWriter

    gpkg = tmp_path / "results.gpkg"
    theirs = QgsVectorLayer("Point?crs=EPSG:4326&field=name:string", "a_red_roof", "memory")
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName, options.layerName = "GPKG", "a_red_roof"
    QgsVectorFileWriter.writeAsVectorFormatV3(
        theirs, str(gpkg), QgsProject.instance().transformContext(), options
    )
    before = gpkg.read_bytes()
    dock = make_dock(server_url=server.url, output_gpkg=str(gpkg))
    dock.layer_combo.setLayer(raster_layer)
    _run_and_wait(dock, "a red roof")
    assert _messages(qgis_iface, Qgis.Critical) == [
        f"The GeoPackage {gpkg} already holds a layer “a_red_roof” with other fields or another CRS; "
        "choose another "
        "GeoPackage in the settings."
    ]
    assert _result_layers(clean_project) == []
    assert gpkg.read_bytes() == before
