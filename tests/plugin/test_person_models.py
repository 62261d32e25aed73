"""The person's own models in the settings' Models tab (panel/person_models.py, model_manager.py): a
real store (backend/weights/person_models.py) listed through the real `rs2sam2 models --json` of this
checkout, with date, starting model, labels and scores; chosen for the local backend (`serve --model
NAME`); renamed, exported, deleted after asking, imported — each through the real CLI, driven from the
UI; a remote server's models listed read-only (GET /models)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from qgis.PyQt.QtWidgets import QFileDialog, QInputDialog, QMessageBox

from backend.weights.person_models import ModelStore
from rs2sam2_qgis.panel.model_manager import ModelManager
from rs2sam2_qgis.settings import PluginSettings
from tests.plugin.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "backend" / "demo" / "assets" / "rs2sam2-demo.safetensors"
SCORES = {"Pr@0.5": 0.5, "Pr@0.6": 0.4, "Pr@0.7": 0.3, "Pr@0.8": 0.2, "Pr@0.9": 0.1}


@pytest.fixture()
def store(tmp_path, monkeypatch) -> ModelStore:
    """The person's store in the test's folder, holding two models (one validated, one not)."""
    monkeypatch.setenv("RS2SAM2_MODELS", str(tmp_path / "models"))
    store = ModelStore(tmp_path / "models")
    scores = {**SCORES, "oIoU": 0.38, "mIoU": 0.412, "samples": 12}
    recipe = {"steps": 30, "freeze": "none", "replay": True}
    store.add("my roofs", DEMO, {"start_model": "demo", "labels": 36, "scores": scores, "recipe": recipe})
    store.add("pools", DEMO, {"start_model": "my roofs", "labels": 31})
    return store


def _manager(qgis_app, **settings) -> ModelManager:
    manager = ModelManager(
        PluginSettings(python_path=sys.executable, working_dir=str(ROOT), start_local=True, **settings)
    )
    _listed(manager)
    return manager


def _listed(manager: ModelManager) -> None:
    wait_until(lambda: manager.catalogue_task is None, timeout_s=60, what="the model list")
    wait_until(lambda: manager.person_box.task is None, timeout_s=60, what="the model action")
    wait_until(lambda: manager.catalogue_task is None, timeout_s=60, what="the model list")


def _row(box, name: str) -> list[str]:
    row = [m.name for m in box.models].index(name)
    return [box.table.item(row, column).text() for column in range(box.table.columnCount())]


def test_the_models_tab_lists_chooses_renames_exports_deletes_and_imports(
    qgis_app, store, tmp_path, monkeypatch
):
    manager = _manager(qgis_app)
    box = manager.person_box
    assert manager.status_label.text().startswith("Weights folder"), manager.status_label.text()
    assert [m.name for m in box.models] == ["my roofs", "pools"]
    roofs = _row(box, "my roofs")
    assert roofs[1] == store.get("my roofs").created[:10] and roofs[2:] == [
        "demo",
        "36",
        "41.2 %",
        "38.0 %",
        "50.0 %",
    ]
    assert _row(box, "pools")[2:] == ["my roofs", "31", "—", "—", "—"]
    assert str(store.folder) in box.note_label.text()
    assert (
        "steps 30" in box.table.item(0, 0).toolTip()
        and "12 validation samples" in box.table.item(0, 0).toolTip()
    )

    # Chosen in the catalogue: the local backend serves it by name.
    use = manager.table.findChild(object, "use:person:my roofs")
    assert use is not None and use.isEnabled()
    use.setChecked(True)
    chosen = manager.current_settings()
    assert (chosen.model_name, chosen.checkpoint, chosen.preset) == ("my roofs", "", "")
    assert chosen.backend_command(1)[1][-2:] == ["--model", "my roofs"]

    # Rename (the choice follows the model).
    box.select("my roofs")
    monkeypatch.setattr(QInputDialog, "getText", lambda *args, **kwargs: ("roofs v2", True))
    box.rename_button.click()
    _listed(manager)
    assert [m.name for m in box.models] == ["pools", "roofs v2"] and store.names() == ["pools", "roofs v2"]
    assert manager.current_settings().model_name == "roofs v2"
    assert box.note_label.text() == "Renamed to “roofs v2”."

    # A refused rename is one sentence.
    box.select("pools")
    box.rename_button.click()
    _listed(manager)
    assert box.note_label.text().startswith("Rename did not work: you already have a model named 'roofs v2'")

    # Export to one file.
    exported = tmp_path / "out" / "roofs.zip"
    exported.parent.mkdir()
    box.select("roofs v2")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *args, **kwargs: (str(exported)[:-4], ""))
    box.export_button.click()
    _listed(manager)
    assert exported.is_file() and box.note_label.text() == f"Exported to {exported}."

    # Delete: asked first; "No" keeps it; "Yes" deletes it, and the choice falls back to the demo model.
    answers = [QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes]
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *args: asked.append(args[2]) or answers.pop(0))
    box.select("roofs v2")
    box.delete_button.click()
    assert store.names() == ["pools", "roofs v2"] and "Delete your model “roofs v2”?" in asked[0]
    box.delete_button.click()
    _listed(manager)
    assert store.names() == ["pools"] and [m.name for m in box.models] == ["pools"]
    settings = manager.current_settings()
    assert settings.model_name == "" and manager.served_id() == "demo"

    # Import it back from the file.
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args, **kwargs: (str(exported), ""))
    box.import_button.click()
    _listed(manager)
    assert [m.name for m in box.models] == [
        "pools",
        "roofs v2",
    ] and box.note_label.text() == "Imported as “roofs v2”."
    assert _row(box, "roofs v2")[2:4] == ["demo", "36"]
    manager.shutdown()


def test_a_remote_servers_models_are_listed_read_only(qgis_app, store, serve):
    server = serve()
    manager = ModelManager(PluginSettings(server_url=server.url.removesuffix("/api/v1"), start_local=False))
    wait_until(
        lambda: manager.remote_task is None and manager.person_box.models, timeout_s=30, what="GET /models"
    )
    box = manager.person_box
    assert [m.name for m in box.models] == ["my roofs", "pools"] and box.read_only
    assert "read-only here" in box.note_label.text()
    box.select("pools")
    assert not any(
        b.isEnabled() for b in (box.rename_button, box.delete_button, box.export_button, box.import_button)
    )
    manager.shutdown()
