"""From answers to labels (rs2sam2_qgis/layers/labels.py and the panel's dialog): the panel's result
layers, as the person corrected them, go with their phrases into a labels layer — an existing memory or
GeoPackage polygon layer with a text field, or a new GeoPackage layer — reprojected to its CRS, in one
committed edit; features without a phrase are skipped and counted; a layer being edited is not touched."""

from __future__ import annotations

import sqlite3

import pytest
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsVectorLayer,
)

from rs2sam2_qgis.layers.labels import (
    LabelsError,
    add_answers_to_labels,
    answer_layers,
    new_labels_layer,
)
from rs2sam2_qgis.layers.result_layer import store_in_memory_layer
from rs2sam2_qgis.qt_compat import new_field

UTM = QgsCoordinateReferenceSystem("EPSG:32633")
WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")
X0, Y0 = 500000.0, 5000000.0


def _square(x: float, y: float, size: float = 20.0) -> QgsGeometry:
    return QgsGeometry.fromMultiPolygonXY(
        [
            [
                [
                    QgsPointXY(x, y),
                    QgsPointXY(x + size, y),
                    QgsPointXY(x + size, y + size),
                    QgsPointXY(x, y + size),
                ]
            ]
        ]
    )


def _answers(project, phrase: str, squares: list[tuple[float, float]], blank: int = 0):
    """A result layer as the panel makes it (store_in_memory_layer), `blank` of its features with the
    phrase cleared (as a person editing the attribute table might)."""
    from rs2sam2_qgis.layers.result_layer import result_fields

    features = []
    for k, (x, y) in enumerate(squares):
        feature = QgsFeature(result_fields())
        feature.setGeometry(_square(X0 + x, Y0 + y))
        feature["phrase"] = "  " if k < blank else phrase
        feature["score"] = 0.9
        features.append(feature)
    return store_in_memory_layer(project, phrase, UTM, features).layer


def _memory_labels(crs: str = "EPSG:4326", geometry: str = "Polygon", field: str = "what") -> QgsVectorLayer:
    layer = QgsVectorLayer(f"{geometry}?crs={crs}", "hand-drawn labels", "memory")
    layer.dataProvider().addAttributes([new_field(field, "string"), new_field("note", "string")])
    layer.updateFields()
    return layer


def test_answers_go_reprojected_into_a_memory_layer_blank_phrases_skipped(clean_project):
    roofs = _answers(clean_project, "the red roof", [(0, 0), (40, 0), (80, 0)], blank=1)
    pools = _answers(clean_project, "the blue pool", [(0, 40), (40, 40)])
    assert {layer.id() for layer in answer_layers(clean_project)} == {roofs.id(), pools.id()}
    labels = clean_project.addMapLayer(_memory_labels())

    outcome = add_answers_to_labels([roofs, pools], labels, "what")
    assert (outcome.added, outcome.no_phrase, outcome.no_polygon) == (4, 1, 0)
    assert "4 labelled polygon(s)" in outcome.summary() and "1 without a phrase" in outcome.summary()
    assert not labels.isEditable() and labels.featureCount() == 4
    phrases = sorted(feature["what"] for feature in labels.getFeatures())
    assert phrases == ["the blue pool", "the blue pool", "the red roof", "the red roof"]
    first = next(labels.getFeatures()).geometry()
    assert first.wkbType() == labels.wkbType()  # single polygons in a Polygon layer
    centre = first.centroid().asPoint()
    assert 14.9 < centre.x() < 15.1 and 45.0 < centre.y() < 45.2  # degrees: reprojected from UTM 33N


def test_answers_go_into_a_geopackage_layer_and_a_new_one(clean_project, tmp_path):
    roofs = _answers(clean_project, "the red roof", [(0, 0), (40, 0)])
    gpkg = str(tmp_path / "labels.gpkg")
    labels = new_labels_layer(gpkg, "my labels", UTM, clean_project)
    assert labels.isValid() and labels.customProperty("rs2sam2/phrase") in (None, "")
    outcome = add_answers_to_labels([roofs], labels)
    assert outcome.added == 2
    reread = QgsVectorLayer(f"{gpkg}|layername=my labels", "reread", "ogr")
    assert [f["phrase"] for f in reread.getFeatures()] == ["the red roof", "the red roof"]
    assert abs(next(reread.getFeatures()).geometry().area() - 400.0) < 1e-6
    with pytest.raises(LabelsError, match="already holds a layer “my labels”"):
        new_labels_layer(gpkg, "my labels", UTM, clean_project)
    # A second batch appends to the same layer.
    assert add_answers_to_labels([roofs], labels).added == 2
    assert QgsVectorLayer(f"{gpkg}|layername=my labels", "again", "ogr").featureCount() == 4


def test_a_layer_in_edit_mode_is_not_touched_and_a_failed_commit_leaves_nothing(clean_project, tmp_path):
    roofs = _answers(clean_project, "the red roof", [(0, 0), (40, 0)])
    labels = clean_project.addMapLayer(_memory_labels(field="phrase"))
    labels.startEditing()
    with pytest.raises(LabelsError, match="is being edited: save or discard its edits first"):
        add_answers_to_labels([roofs], labels)
    assert labels.isEditable() and labels.featureCount() == 0 and not labels.editBuffer().addedFeatures()
    labels.rollBack()

    hand_drawn = clean_project.addMapLayer(_memory_labels(field="what"))
    with pytest.raises(LabelsError, match="has no field “phrase”"):
        add_answers_to_labels([roofs], hand_drawn)
    numbers = clean_project.addMapLayer(QgsVectorLayer("Polygon?crs=EPSG:32633", "numbers", "memory"))
    numbers.dataProvider().addAttributes([new_field("phrase", "int")])
    numbers.updateFields()
    with pytest.raises(LabelsError, match="not a text field"):
        add_answers_to_labels([roofs], numbers)

    # A GeoPackage that refuses the pools (a trigger aborts their insert) after taking the roofs:
    # the commit fails, it is rolled back, nothing is half-written.
    gpkg = str(tmp_path / "strict.gpkg")
    new_labels_layer(gpkg, "labels", UTM, clean_project)
    clean_project.removeAllMapLayers()
    with sqlite3.connect(gpkg) as db:
        db.execute(
            "CREATE TRIGGER no_pools BEFORE INSERT ON labels WHEN NEW.phrase = 'the blue pool' "
            "BEGIN SELECT RAISE(ABORT, 'no pools here'); END"
        )
    roofs = _answers(clean_project, "the red roof", [(0, 0), (40, 0)])
    pools = _answers(clean_project, "the blue pool", [(0, 40)])
    strict = clean_project.addMapLayer(QgsVectorLayer(f"{gpkg}|layername=labels", "strict labels", "ogr"))
    with pytest.raises(LabelsError, match="Nothing was added to “strict labels”"):
        add_answers_to_labels([roofs, pools], strict)
    assert not strict.isEditable()
    assert QgsVectorLayer(f"{gpkg}|layername=labels", "reread", "ogr").featureCount() == 0
    assert add_answers_to_labels([roofs], strict).added == 2  # the roofs alone are taken


def test_the_dialog_adds_the_checked_answers_to_a_new_geopackage_layer(clean_project, tmp_path):
    from rs2sam2_qgis.panel.labels_dialog import LabelsDialog

    roofs = _answers(clean_project, "the red roof", [(0, 0), (40, 0)])
    pools = _answers(clean_project, "the blue pool", [(0, 40)])
    dialog = LabelsDialog(clean_project, chosen_layers=[roofs])
    assert dialog.new_radio.isChecked()  # no polygon layer to take them yet
    assert dialog.checked_layers() == [roofs]
    dialog.add()
    assert "Choose the GeoPackage file" in dialog.message_label.text() and dialog.outcome is None
    dialog.gpkg_edit.setFilePath(str(tmp_path / "labels"))
    dialog.add()
    assert dialog.outcome is not None and dialog.outcome.added == 2
    assert (tmp_path / "labels.gpkg").is_file()
    assert [layer.name() for layer in clean_project.mapLayersByName("labels")] == ["labels"]

    # Later: into that existing layer, both answers now.
    again = LabelsDialog(clean_project)
    assert again.existing_radio.isChecked() and again.field_combo.currentField() == "phrase"
    assert set(again.checked_layers()) == {roofs, pools}
    again.add()
    assert again.outcome.added == 3 and again.outcome.layer.featureCount() == 5


def test_the_train_menus_action_adds_the_answers_and_says_how_many(
    clean_project, qgis_iface, tmp_path, monkeypatch
):
    from qgis.PyQt.QtWidgets import QToolButton

    from rs2sam2_qgis.panel.labels_dialog import LabelsDialog
    from rs2sam2_qgis.panel.training_actions import TrainingActions

    qgis_iface.messageBar().clearWidgets()
    button = QToolButton()
    actions = TrainingActions(qgis_iface, None, button)
    actions.labels_action.trigger()  # no answers yet: said, no dialog
    assert [item.text() for item in qgis_iface.messageBar().items()] == [
        "There are no answer layers yet: run a phrase in the panel first."
    ]

    _answers(clean_project, "the red roof", [(0, 0), (40, 0)], blank=1)
    labels = clean_project.addMapLayer(_memory_labels(field="phrase"))

    def accept_with_the_defaults(dialog):  # the person presses OK as the dialog opens
        assert dialog.existing_radio.isChecked() and dialog.target_combo.currentLayer() == labels
        dialog.add()
        return dialog.result()

    monkeypatch.setattr(LabelsDialog, "exec", accept_with_the_defaults)
    actions.labels_action.trigger()
    assert labels.featureCount() == 1
    assert "1 labelled polygon(s) added to “hand-drawn labels”; skipped: 1 without a phrase." in [
        item.text() for item in qgis_iface.messageBar().items()
    ]
    qgis_iface.messageBar().clearWidgets()
