"""The panel's fine-tune dialog (panel/finetune_dialog.py) against real backends with real, short
`rs2sam2 train` runs on a 256² labelled region (tests/service/training_regions.py, 36 labels):

- end to end from the panel: the local backend (the real `rs2sam2 serve` of this checkout, the demo
  model) is started by Start, the run is followed to its end, the starting and new models are compared
  on the validation labels, the new model appears in the model manager, "Use this model" restarts the
  shared local backend with `--model NAME` and the panel segments with it;
- cancel (the run stops at a step boundary, resumable) and Resume to the end, on a server;
- the backend's refusals (409 model_exists, 400 too_few_labels) as one sentence in the dialog.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from qgis.core import QgsFeature, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtWidgets import QToolButton

from backend.weights.person_models import ModelStore
from rs2sam2_qgis.connection.backend import shared_backend
from rs2sam2_qgis.layers.area import AREA_WHOLE_LAYER
from rs2sam2_qgis.panel.finetune_dialog import FineTuneDialog
from rs2sam2_qgis.panel.model_manager import ModelManager
from rs2sam2_qgis.qt_compat import new_field
from tests.plugin.conftest import wait_until
from tests.service.training_regions import region

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "backend" / "demo" / "assets" / "rs2sam2-demo.safetensors"


@pytest.fixture()
def own_folders(tmp_path, monkeypatch):
    """The person's store and the training folder in the test's folder; one thread per process (the
    backend, its training child and this process share two cores)."""
    monkeypatch.setenv("RS2SAM2_TRAINING_DIR", str(tmp_path / "training"))
    monkeypatch.setenv("RS2SAM2_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return tmp_path


@pytest.fixture()
def scene(own_folders, clean_project):
    """The region's raster and labels as project layers: (raster layer, labels layer)."""
    raster_path, labels_path = region(own_folders)
    raster = QgsRasterLayer(str(raster_path), "region")
    labels = QgsVectorLayer(str(labels_path), "my labels", "ogr")
    assert raster.isValid() and labels.isValid() and labels.featureCount() == 36
    clean_project.addMapLayer(raster)
    clean_project.addMapLayer(labels)
    return raster, labels


def _dialog(dock, scene, name: str, steps: int, validate: bool = False):
    raster, labels = scene
    dock.backend_row.training.finetune_action.trigger()
    dialog = dock.backend_row.training.dialog
    assert dialog is not None and dialog.isVisible()
    form = dialog.form
    form.region.raster_combo.setLayer(raster)
    form.region.labels_combo.setLayer(labels)
    form.widgets["name"].setText(name)
    form.widgets["max_steps"].setValue(steps)
    form.widgets["replay"].setChecked(False)  # the synthetic replay mix makes the start slower
    if validate:
        form.validation_box.setChecked(True)
        form.validation.raster_combo.setLayer(raster)
        form.validation.labels_combo.setLayer(labels)
    return dialog


def _finished(dialog, timeout_s: float = 240) -> None:
    wait_until(lambda: dialog.task is None, timeout_s=timeout_s, what="the fine-tuning")


def test_finetune_compare_and_use_from_the_panel_with_the_local_backend(make_dock, scene, own_folders):
    dock = make_dock(
        start_local=True, python_path=sys.executable, working_dir=str(ROOT), checkpoint=str(DEMO)
    )
    dialog = _dialog(dock, scene, "my roofs", steps=4, validate=True)
    assert dialog.form.widgets["start_model"].currentText() == "demo"
    statuses = []
    dialog.start_button.click()  # no backend yet: the local one starts first, then the run is sent
    wait_until(lambda: dialog.task is not None, timeout_s=120, what="the local backend and the run")
    dialog.task.status_changed.connect(statuses.append)
    _finished(dialog)
    assert dialog.message_label.text() == "", dialog.message_label.text()
    assert dialog.status_label.text() == "Done: your model “my roofs” is ready."
    assert dialog.progress_bar.value() == 100
    phases = {status.phase for status in statuses if not isinstance(status, str)}
    assert "training" in phases or "validating" in phases or "saving" in phases, statuses
    assert any(isinstance(s, str) and s.startswith("scoring") for s in statuses)

    # The comparison: both models scored on the validation labels with the same protocol.
    table = dialog.comparison
    assert table.horizontalHeaderItem(0).text() == "Starting model: demo"
    assert table.horizontalHeaderItem(1).text() == "New model: my roofs"
    cells = [[table.item(row, column).text() for column in (0, 1)] for row in range(table.rowCount())]
    assert all(cell.endswith(" %") for row in cells for cell in row), cells
    assert "36 labels used" in dialog.report_label.text()
    assert "36 validation labels used" in dialog.report_label.text()

    # Use it: the shared local backend restarts serving it by name; the panel segments with it.
    backend = shared_backend()
    first_pid = backend.pid()
    assert dialog.use_button.isEnabled()
    dialog.use_button.click()
    assert dock.settings.model_name == "my roofs", dialog.status_label.text()
    wait_until(
        lambda: backend.local_connection() is not None and backend.pid() != first_pid,
        timeout_s=120,
        what="the restart with the new model",
    )
    assert "--model my roofs" in backend.log_text
    raster, _ = scene
    dock.layer_combo.setLayer(raster)
    dock.set_area_mode(AREA_WHOLE_LAYER)
    dock.phrase_combo.setEditText("the red roof")
    dock.run()
    wait_until(lambda: dock.task is None, timeout_s=120, what="the panel's run")
    status = dock.status_label.text()
    assert re.fullmatch(r"(Added \d+ polygon\(s\) to|Nothing found for) “the red roof”\.", status), status

    # The model manager lists the new model, as the one the local backend serves.
    manager = ModelManager(dock.settings)
    wait_until(lambda: manager.catalogue_task is None, timeout_s=60, what="the model list")
    assert [m.name for m in manager.person_box.models] == ["my roofs"]
    assert manager.person_box.models[0].labels == 36 and manager.served_id() == "person:my roofs"
    manager.shutdown()


def _hand_drawn(labels: QgsVectorLayer, project) -> QgsVectorLayer:
    """The labels as a person draws them: a memory polygon layer with its phrases in a text field of
    its own name (the plugin writes and uploads it)."""
    layer = QgsVectorLayer(f"Polygon?crs={labels.crs().authid()}", "drawn by hand", "memory")
    layer.dataProvider().addAttributes([new_field("id", "int"), new_field("what", "string")])
    layer.updateFields()
    features = []
    for k, source in enumerate(labels.getFeatures()):
        feature = QgsFeature(layer.fields())
        feature.setGeometry(source.geometry())
        feature.setAttributes([k, source["phrase"]])
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    return project.addMapLayer(layer)


def test_cancel_then_resume_on_a_server_with_labels_drawn_by_hand(make_dock, scene, serve, clean_project):
    server = serve()
    dock = make_dock(server_url=server.url, start_local=False)
    raster, labels = scene
    dialog = _dialog(dock, (raster, _hand_drawn(labels, clean_project)), "cancelled roofs", steps=12)
    assert dialog.form.field_combo.currentField() == "what"  # the only text field
    dialog.start_button.click()
    seen = []
    wait_until(lambda: dialog.task is not None, timeout_s=30, what="the run")
    dialog.task.status_changed.connect(seen.append)
    wait_until(lambda: any(getattr(s, "step", 0) >= 1 for s in seen), timeout_s=180, what="a training step")
    assert "step" in dialog.status_label.text() and "loss" in dialog.status_label.text()
    dialog.cancel_button.click()
    _finished(dialog)
    assert dialog.status_label.text().startswith("Cancelled at step "), dialog.status_label.text()
    assert dialog.resume_button.isEnabled() and not dialog.use_button.isEnabled()
    assert dialog.message_label.text() == ""
    dialog.close()

    # Opened again later (a new dialog): the stopped run is offered, and Resume takes it to its end.
    again = FineTuneDialog(dock.backend_row)
    again.list_models()
    wait_until(lambda: again.models_task is None, timeout_s=30, what="the backend's jobs")
    assert again.resume_button.isEnabled(), again.status_label.text()
    assert "Your run for “cancelled roofs” stopped at step" in again.status_label.text()
    again.resume_button.click()
    _finished(again)
    assert again.status_label.text() == "Done: your model “cancelled roofs” is ready."
    assert again.use_button.isEnabled() and not again.resume_button.isEnabled()
    # No validation: nothing to compare, said as "—".
    assert {again.comparison.item(row, 1).text() for row in range(again.comparison.rowCount())} == {"—"}
    assert "No validation labels" in again.report_label.text()
    # A server serves what it was started with: "Use this model" says how, and changes nothing.
    again.use_button.click()
    assert 'rs2sam2 serve --model "cancelled roofs"' in again.status_label.text()
    assert dock.settings.model_name == ""
    again.shutdown()
    again.deleteLater()


def test_the_backends_refusals_are_one_sentence(
    make_dock, scene, serve, own_folders, tmp_path, clean_project
):
    ModelStore(own_folders / "models").add("taken", DEMO, {"start_model": "demo", "labels": 30})
    server = serve()
    dock = make_dock(server_url=server.url, start_local=False)
    dialog = _dialog(dock, scene, "taken", steps=2)
    dialog.start_button.click()
    _finished(dialog, 60)
    assert dialog.message_label.text() == (
        "You already have a model named 'taken': pick another name for the new model, or tick “Replace” "
        "to overwrite yours."
    )
    assert "Traceback" not in dialog.message_label.text() and not dialog.resume_button.isEnabled()

    # 28 usable labels (and 3 the backend drops): too few, said by the backend.
    (tmp_path / "few").mkdir()
    _, few = region(tmp_path / "few", labels=28, with_bad=True)
    few_layer = clean_project.addMapLayer(QgsVectorLayer(str(few), "few labels", "ogr"))
    assert few_layer.featureCount() == 31
    dialog.form.region.labels_combo.setLayer(few_layer)
    dialog.form.widgets["name"].setText("few")
    dialog.start_button.click()
    _finished(dialog, 60)
    assert "30" in dialog.message_label.text() and "\n" not in dialog.message_label.text()

    # Checked here before anything is sent: a bad name, labels with unsaved edits.
    dialog.form.widgets["name"].setText("a/b")
    dialog.start_button.click()
    assert dialog.task is None and "may hold only letters" in dialog.message_label.text()
    dialog.form.widgets["name"].setText("edited")
    dialog.form.region.labels_combo.setLayer(scene[1])
    scene[1].startEditing()
    scene[1].deleteFeature(next(scene[1].getFeatures()).id())
    dialog.start_button.click()
    assert dialog.task is None and dialog.message_label.text().startswith("“my labels” has unsaved edits")
    scene[1].rollBack()


def test_the_raster_menu_and_the_panels_train_menu_open_the_dialogs(
    qgis_main_iface, plugin_settings, clean_project
):
    import rs2sam2_qgis

    plugin = rs2sam2_qgis.classFactory(qgis_main_iface)
    plugin.initGui()
    try:
        submenu = next(a.menu() for a in qgis_main_iface.raster_menu.actions() if a.text() == "&RS2-SAM 2")
        entries = {action.objectName(): action for action in submenu.actions()}
        assert entries["RS2SAM2FineTuneMenu"].text() == "Fine-tune a model…"
        entries["RS2SAM2FineTuneMenu"].trigger()
        training = plugin.dock.backend_row.training
        assert training.dialog is not None and training.dialog.isVisible()
        # The form shows the training options of the contract, with their defaults.
        widgets = training.dialog.form.widgets
        assert set(widgets) == {"name", "start_model", "max_steps", "freeze", "replay", "seed", "overwrite"}
        assert widgets["max_steps"].text().startswith("the recipe's choice")
        assert widgets["replay"].isChecked() and widgets["seed"].value() == 2401
        assert not training.dialog.resume_button.isEnabled() and not training.dialog.use_button.isEnabled()
        training.dialog.start_button.click()  # nothing chosen: one sentence, nothing sent
        assert training.dialog.message_label.text() == "Choose the raster of your region."

        button = plugin.dock.findChild(QToolButton, "RS2SAM2TrainButton")
        names = [action.objectName() for action in button.menu().actions()]
        assert names == ["RS2SAM2FineTune", "RS2SAM2AnswersToLabels"]
    finally:
        plugin.unload()
    assert not [a for a in submenu.actions() if a.objectName() == "RS2SAM2FineTuneMenu"]
