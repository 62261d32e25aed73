"""The dock workflow in real QGIS, driven like a person would, against a contract-following backend."""

from __future__ import annotations

import socket

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

from rs2sam2_qgis.area import AREA_MAP_VIEW, AREA_RECTANGLE, AREA_SELECTED, AREA_WHOLE_LAYER
from rs2sam2_qgis.dock import SegmentDock
from rs2sam2_qgis.result_layer import PHRASE_PROPERTY
from rs2sam2_qgis.settings import PluginSettings
from tests.plugin.conftest import RASTER_EPSG, wait_until, write_geotiff, xyz_layer_uri

RESULT_FIELDS = ["phrase", "score", "area", "source", "model", "created"]


def _messages(iface, level=None) -> list[str]:
    bar = iface.messageBar()
    return [item.text() for item in bar.items() if level is None or item.level() == level]


def _result_layers(project) -> list[QgsVectorLayer]:
    return [lyr for lyr in project.mapLayers().values() if lyr.customProperty(PHRASE_PROPERTY)]


@pytest.fixture()
def make_dock(qgis_iface, qgis_canvas, plugin_settings, clean_project):
    docks = []
    qgis_iface.messageBar().clearWidgets()
    qgis_canvas.resize(400, 300)

    def make(**settings) -> SegmentDock:
        PluginSettings(**settings).save()
        dock = SegmentDock(qgis_iface)
        docks.append(dock)
        return dock

    yield make
    for dock in docks:
        dock.shutdown()
        dock.deleteLater()
    qgis_iface.messageBar().clearWidgets()


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


def test_run_is_disabled_with_the_reason_until_raster_and_phrase(make_dock, stand_in, raster_layer):
    dock = make_dock(server_url=stand_in.url)
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
    assert stand_in.requests == []


def test_dock_defaults_to_the_active_raster(make_dock, stand_in, raster_layer, qgis_iface):
    qgis_iface.setActiveLayer(raster_layer)
    dock = make_dock(server_url=stand_in.url)
    assert dock.layer_combo.currentLayer() is raster_layer
    # Opening the panel again picks the raster that is active then.
    other = QgsRasterLayer(raster_layer.source(), "other")
    QgsProject.instance().addMapLayer(other)
    qgis_iface.setActiveLayer(other)
    dock.show()
    assert dock.layer_combo.currentLayer() is other
    dock.hide()


def test_run_adds_a_layer_named_after_the_phrase_in_the_raster_crs(
    make_dock, stand_in, raster_layer, clean_project, geotiff
):
    dock = make_dock(server_url=stand_in.url)
    dock.layer_combo.setLayer(raster_layer)
    dock.set_area_mode(AREA_WHOLE_LAYER)
    _run_and_wait(dock, "the red roof")

    (layer,) = _result_layers(clean_project)
    assert layer.name() == "the red roof"
    assert layer.crs().authid() == f"EPSG:{RASTER_EPSG}"
    assert layer.fields().names() == RESULT_FIELDS
    (feature,) = list(layer.getFeatures())
    assert feature["phrase"] == "the red roof" and feature["model"] == "stand-in"
    assert feature["score"] == pytest.approx(0.9)
    # The stand-in answers the middle third of the whole raster (640 m square from 500000, 4999360).
    box = feature.geometry().boundingBox()
    assert (box.xMinimum(), box.yMaximum()) == pytest.approx((500000 + 640 / 3, 5000000 - 640 / 3))
    assert not layer.renderer().symbol().symbolLayer(0).brushStyle()  # outline only, no fill
    # The file travelled as its path (the stand-in shares this machine), without a bbox for "whole layer".
    assert stand_in.requests[-1]["kind"] == "path" and stand_in.requests[-1]["path"] == geotiff
    assert "bbox" not in stand_in.requests[-1]["params"]
    assert dock.progress_bar.value() == 100
    assert dock.status_label.text() == "Added 1 polygon(s) to “the red roof”."
    # The phrase is remembered, most recent first.
    assert PluginSettings.load().phrase_history == ["the red roof"]


def test_same_phrase_appends_to_the_same_layer_and_enter_runs(
    make_dock, stand_in, raster_layer, clean_project
):
    dock = make_dock(server_url=stand_in.url)
    dock.layer_combo.setLayer(raster_layer)
    dock.set_area_mode(AREA_MAP_VIEW)
    _run_and_wait(dock, "a field")
    dock.phrase_combo.setEditText("a field")
    QTest.keyClick(dock.phrase_combo.lineEdit(), Qt.Key_Return)
    wait_until(lambda: dock.task is None and len(stand_in.requests) == 2, what="the second run")
    (layer,) = _result_layers(clean_project)
    assert layer.featureCount() == 2
    # The map view travelled as a bbox in the raster's CRS.
    bbox = stand_in.requests[-1]["params"]["bbox"]
    assert bbox[0] >= 500000 and bbox[3] <= 5000000 and bbox[2] > bbox[0]


def test_upload_when_the_backend_cannot_read_paths(make_dock, stand_in, raster_layer, clean_project):
    """The area goes as a GeoTIFF carrying the CRS; the answer lands where the area is."""
    stand_in.behaviour.allow_paths = False
    dock = make_dock(server_url=stand_in.url)
    dock.layer_combo.setLayer(raster_layer)
    dock.set_area_mode(AREA_RECTANGLE)
    dock.set_drawn_rectangle(QgsRectangle(500100, 4999500, 500300, 4999700), raster_layer.crs())
    _run_and_wait(dock, "a road")
    assert stand_in.requests, dock.status_label.text()
    received = stand_in.requests[-1]
    assert received["kind"] == "upload"
    assert QgsCoordinateReferenceSystem.fromWkt(received["crs_wkt"]).authid() == f"EPSG:{RASTER_EPSG}"
    assert received["size"] == (20, 20)  # 200 m at 10 m per pixel
    assert received["raster_box"] == pytest.approx([500100, 4999500, 500300, 4999700])
    (layer,) = _result_layers(clean_project)
    feature = next(layer.getFeatures())
    assert QgsRectangle(500100, 4999500, 500300, 4999700).contains(feature.geometry().boundingBox())
    assert feature["source"] == "scene.tif"  # the upload carries the layer's name


def test_a_refused_path_falls_back_to_an_upload(make_dock, stand_in, raster_layer, clean_project):
    stand_in.behaviour.path_roots = ("/srv/shared/",)  # the backend reads paths, but not this folder
    dock = make_dock(server_url=stand_in.url)
    dock.layer_combo.setLayer(raster_layer)
    dock.set_area_mode(AREA_WHOLE_LAYER)
    _run_and_wait(dock, "a roof")
    assert [r["kind"] for r in stand_in.requests] == ["upload"]
    assert stand_in.requests[0]["size"] == (64, 64)
    assert len(_result_layers(clean_project)) == 1


def test_selected_polygons_give_the_area_in_another_crs(make_dock, stand_in, raster_layer):
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
    dock = make_dock(server_url=stand_in.url)
    dock.layer_combo.setLayer(raster_layer)
    dock.set_area_mode(AREA_SELECTED)
    dock.polygon_combo.setLayer(polygons)
    dock.phrase_combo.setEditText("a tree")
    assert not dock.run_button.isEnabled()
    assert dock.status_label.text() == "Select polygons in “fields” to give the area."
    polygons.selectAll()
    _run_and_wait(dock, "a tree")
    xmin, ymin, xmax, ymax = stand_in.requests[-1]["params"]["bbox"]
    assert xmin == pytest.approx(500200, abs=1) and ymin == pytest.approx(4999600, abs=1)
    assert 100 < xmax - xmin < 200 and 50 < ymax - ymin < 150  # 0.002° × 0.001° near 45° N


def test_results_are_cut_to_the_selected_polygons(make_dock, stand_in, raster_layer, clean_project):
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
    dock = make_dock(server_url=stand_in.url)
    dock.layer_combo.setLayer(raster_layer)
    dock.set_area_mode(AREA_SELECTED)
    dock.polygon_combo.setLayer(polygons)
    _run_and_wait(dock, "a pond")

    (layer,) = _result_layers(clean_project)
    (result,) = list(layer.getFeatures())
    # The stand-in answers the middle third of the bounding box (a 100 m square); the triangle's
    # diagonal runs through its centre, so half of it is kept, and `area` shrinks with it.
    geometry = result.geometry()
    assert geometry.difference(triangle_in_raster_crs.buffer(0.5, 4)).isEmpty()
    assert geometry.area() == pytest.approx(100 * 100 / 2, rel=0.03)
    assert result["area"] == pytest.approx(geometry.area(), rel=1e-6)


def test_area_outside_the_raster_is_explained(make_dock, stand_in, raster_layer, qgis_iface, clean_project):
    dock = make_dock(server_url=stand_in.url)
    dock.layer_combo.setLayer(raster_layer)
    dock.set_area_mode(AREA_RECTANGLE)
    dock.set_drawn_rectangle(QgsRectangle(600000, 4000000, 600100, 4000100), raster_layer.crs())
    dock.phrase_combo.setEditText("a road")
    dock.run_button.click()
    assert dock.task is None
    assert _messages(qgis_iface, Qgis.Critical) == ["The chosen area is outside the raster “scene”."]
    assert stand_in.requests == [] and _result_layers(clean_project) == []


def test_cancel_stops_the_run_and_adds_nothing(make_dock, stand_in, raster_layer, clean_project, qgis_iface):
    stand_in.behaviour.tiles = 400
    stand_in.behaviour.seconds_per_tile = 0.05
    dock = make_dock(server_url=stand_in.url)
    dock.layer_combo.setLayer(raster_layer)
    dock.phrase_combo.setEditText("a lake")
    dock.run_button.click()
    assert dock.cancel_button.isEnabled() and not dock.run_button.isEnabled()
    wait_until(lambda: any(j.done > 0 for j in stand_in.jobs.values()), what="the job to start")
    dock.cancel_button.click()
    wait_until(lambda: dock.task is None, what="the task to stop")
    (job,) = stand_in.jobs.values()
    assert job.status == "cancelled" and job.done < job.total
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


def test_bad_phrase_shows_the_backends_message(make_dock, stand_in, raster_layer, qgis_iface, clean_project):
    stand_in.behaviour.reject_phrase = "qwxz"
    dock = make_dock(server_url=stand_in.url)
    dock.layer_combo.setLayer(raster_layer)
    _run_and_wait(dock, "qwxz")
    assert _messages(qgis_iface, Qgis.Critical) == ["The phrase “qwxz” has no words the model knows."]
    assert _result_layers(clean_project) == []


def test_raster_without_crs_is_refused_before_sending(
    make_dock, stand_in, tmp_path, qgis_iface, clean_project
):
    layer = QgsRasterLayer(write_geotiff(tmp_path / "nocrs.tif", epsg=None), "no crs")
    clean_project.addMapLayer(layer)
    dock = make_dock(server_url=stand_in.url)
    dock.layer_combo.setLayer(layer)
    dock.set_area_mode(AREA_WHOLE_LAYER)
    dock.phrase_combo.setEditText("a roof")
    dock.run_button.click()
    assert _messages(qgis_iface, Qgis.Critical) == [
        "The raster “no crs” has no coordinate reference system; set one in its layer properties first."
    ]
    assert stand_in.requests == []


def test_results_go_into_the_settings_geopackage_without_touching_its_other_layers(
    make_dock, stand_in, raster_layer, clean_project, tmp_path
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

    dock = make_dock(server_url=stand_in.url, output_gpkg=str(gpkg))
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


def test_zooms_to_the_result_when_it_is_outside_the_view(make_dock, stand_in, raster_layer, qgis_canvas):
    dock = make_dock(server_url=stand_in.url)
    dock.layer_combo.setLayer(raster_layer)
    dock.set_area_mode(AREA_WHOLE_LAYER)
    qgis_canvas.setExtent(QgsRectangle(400000, 4800000, 400100, 4800100))  # far away
    _run_and_wait(dock, "a roof")
    result_box = QgsRectangle(
        500000 + 640 / 3, 5000000 - 2 * 640 / 3, 500000 + 2 * 640 / 3, 5000000 - 640 / 3
    )
    assert qgis_canvas.extent().contains(result_box)


def test_a_web_layer_is_rendered_for_the_area_and_sent_as_a_geotiff(
    make_dock, stand_in, clean_project, tmp_path, qgis_canvas
):
    """An XYZ layer (no file behind it) travels as the map shows it: RGBA at the map's resolution, in its
    CRS."""
    web = QgsRasterLayer(xyz_layer_uri(tmp_path), "web map", "wms")
    assert web.isValid()
    clean_project.addMapLayer(web)
    qgis_canvas.setDestinationCrs(web.crs())
    qgis_canvas.setExtent(QgsRectangle(0, 0, 4e6, 3e6))
    dock = make_dock(server_url=stand_in.url)
    dock.layer_combo.setLayer(web)
    dock.set_area_mode(AREA_RECTANGLE)
    dock.set_drawn_rectangle(QgsRectangle(1e6, 1e6, 2e6, 2e6), web.crs())
    _run_and_wait(dock, "a red field")
    received = stand_in.requests[-1]
    assert received["kind"] == "upload"
    assert QgsCoordinateReferenceSystem.fromWkt(received["crs_wkt"]).authid() == "EPSG:3857"
    side = round(1e6 / qgis_canvas.mapUnitsPerPixel())
    assert abs(received["size"][0] - side) <= 1 and abs(received["size"][1] - side) <= 1
    assert received["bands"] == 4 and received["band_max"][:3] == [200, 30, 30]
    (layer,) = _result_layers(clean_project)
    assert layer.crs().authid() == "EPSG:3857"


def test_drawing_a_rectangle_sets_the_area_and_gives_the_map_tool_back(
    make_dock, stand_in, raster_layer, qgis_canvas
):
    from qgis.gui import QgsMapToolPan

    pan = QgsMapToolPan(qgis_canvas)
    qgis_canvas.setMapTool(pan)
    dock = make_dock(server_url=stand_in.url)
    dock.layer_combo.setLayer(raster_layer)
    dock.set_area_mode(AREA_RECTANGLE)
    assert dock.draw_button.isVisibleTo(dock) and not dock.polygon_combo.isVisibleTo(dock)
    dock.draw_button.click()
    assert qgis_canvas.mapTool() is dock.extent_tool
    dock.extent_tool.extentChanged.emit(QgsRectangle(500100, 4999500, 500300, 4999700))  # what a drag emits
    assert qgis_canvas.mapTool() is pan
    _run_and_wait(dock, "a pool")
    assert stand_in.requests[-1]["params"]["bbox"] == pytest.approx([500100, 4999500, 500300, 4999700])


def test_nothing_found_is_said_and_adds_no_layer(
    make_dock, stand_in, raster_layer, qgis_iface, clean_project
):
    stand_in.behaviour.empty_result = True
    dock = make_dock(server_url=stand_in.url)
    dock.layer_combo.setLayer(raster_layer)
    _run_and_wait(dock, "a submarine")
    assert _messages(qgis_iface, Qgis.Info) == ["Nothing matching “a submarine” was found in the area."]
    assert dock.status_label.text() == "Nothing found for “a submarine”."
    assert _result_layers(clean_project) == []


def test_backend_state_is_shown(make_dock, stand_in):
    dock = make_dock(server_url=stand_in.url)
    dock.check_button.click()
    wait_until(lambda: dock.health_task is None, what="the health check")
    assert dock.backend_label.text() == "Backend: connected — stand-in on cpu"
    stand_in.stop()
    dock.check_backend()
    wait_until(lambda: dock.health_task is None, what="the second health check")
    assert dock.backend_label.text() == "Backend: not reachable"
    assert "not reachable" in dock.backend_label.toolTip()


def test_an_unexpected_error_in_a_slot_is_a_message_not_a_traceback(
    make_dock, stand_in, raster_layer, qgis_iface, monkeypatch
):
    dock = make_dock(server_url=stand_in.url)
    dock.layer_combo.setLayer(raster_layer)
    dock.phrase_combo.setEditText("a roof")

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("rs2sam2_qgis.dock.plan_raster", broken)
    dock.run_button.click()  # clicked(bool) reaches run(), which takes no argument
    assert _messages(qgis_iface, Qgis.Critical) == [
        "Something went wrong in RS2-SAM 2 (disk on fire); the details are in the log panel."
    ]
    assert dock.task is None


def test_a_foreign_table_of_the_same_name_is_left_alone(
    make_dock, stand_in, raster_layer, clean_project, tmp_path, qgis_iface
):
    from qgis.core import QgsVectorFileWriter

    gpkg = tmp_path / "results.gpkg"
    theirs = QgsVectorLayer("Point?crs=EPSG:4326&field=name:string", "a_roof", "memory")
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName, options.layerName = "GPKG", "a_roof"
    QgsVectorFileWriter.writeAsVectorFormatV3(
        theirs, str(gpkg), QgsProject.instance().transformContext(), options
    )
    before = gpkg.read_bytes()
    dock = make_dock(server_url=stand_in.url, output_gpkg=str(gpkg))
    dock.layer_combo.setLayer(raster_layer)
    _run_and_wait(dock, "a roof")
    assert _messages(qgis_iface, Qgis.Critical) == [
        f"The GeoPackage {gpkg} already holds a layer “a_roof” with other fields or another CRS; "
        "choose another "
        "GeoPackage in the settings."
    ]
    assert _result_layers(clean_project) == []
    assert gpkg.read_bytes() == before
