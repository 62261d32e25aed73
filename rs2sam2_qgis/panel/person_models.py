"""The person's own models in the settings' Models tab: the models they fine-tuned (or imported), with
their date, starting model, number of labels and validation scores; rename, delete (after asking),
export to one file and import from one — through the local backend's `rs2sam2 models … --json`
(`connection.backend_commands.ModelActionTask`). A remote server's models are listed read-only (GET
/models). Which model the local backend serves is chosen in the catalogue above (`model_manager`): a
person's model becomes the `model_name` setting (`serve --model NAME`)."""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..connection.backend_commands import ModelActionTask
from ..settings import PluginSettings
from ..training_contract import PersonModel, Scores, model_name_problem
from .notify import guarded

COLUMNS = ("Name", "Created", "Started from", "Labels", "mIoU", "oIoU", "Pr@0.5")
SCORE_COLUMNS = ("mIoU", "oIoU", "Pr@0.5")
NO_SCORE = "—"
EXPORT_FILTER = "RS2-SAM 2 model (*.zip)"
IMPORT_FILTER = "RS2-SAM 2 model (*.zip *.safetensors)"


def tr(message: str) -> str:
    return QCoreApplication.translate("PersonModels", message)


def score_text(scores: Scores | None, key: str) -> str:
    """A score as a percentage ("41.2 %"), or "—" when there is none (no validation)."""
    if scores is None or scores.values.get(key) is None:
        return NO_SCORE
    return f"{100.0 * scores.values[key]:.1f} %"


class PersonModelsBox(QGroupBox):
    """The table of the person's models and its buttons; `on_changed(action, answer)` after an action
    changed the store (the model manager then lists again and follows a rename or a deletion)."""

    def __init__(
        self,
        settings: Callable[[], PluginSettings],
        on_changed: Callable[[str, dict], None],
        parent: QWidget | None = None,
    ):
        super().__init__(tr("Your models (fine-tuned or imported)"), parent)
        self.setObjectName("RS2SAM2PersonModels")
        self.settings = settings
        self.on_changed = on_changed
        self.models: list[PersonModel] = []
        self.read_only = False
        self.task: ModelActionTask | None = None
        self.pending_note = ""  # the outcome of the last action, shown once the list is fresh again
        self._build()

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels([tr(c) for c in COLUMNS])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        layout.addWidget(self.table)
        row = QHBoxLayout()
        self.rename_button = QPushButton(tr("Rename…"), self)
        self.delete_button = QPushButton(tr("Delete…"), self)
        self.export_button = QPushButton(tr("Export…"), self)
        self.import_button = QPushButton(tr("Import…"), self)
        self.export_button.setToolTip(tr("Write the chosen model to one .zip file (to use it elsewhere)"))
        self.import_button.setToolTip(tr("Add a model from an exported .zip (or a .safetensors checkpoint)"))
        for button in (self.rename_button, self.delete_button, self.export_button):
            row.addWidget(button)
        row.addStretch(1)
        row.addWidget(self.import_button)
        layout.addLayout(row)
        self.note_label = QLabel(self)
        self.note_label.setWordWrap(True)
        layout.addWidget(self.note_label)
        self.rename_button.clicked.connect(self.rename_chosen)
        self.delete_button.clicked.connect(self.delete_chosen)
        self.export_button.clicked.connect(self.export_chosen)
        self.import_button.clicked.connect(self.import_file)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self._update_buttons()

    # -- showing ---------------------------------------------------------------------------------
    def show_models(self, models: list[PersonModel], where: str, read_only: bool = False) -> None:
        chosen = self.chosen_name()
        self.models, self.read_only = list(models), read_only
        self.table.setRowCount(len(self.models))
        for row, model in enumerate(self.models):
            cells = (
                model.name,
                model.created[:10],
                model.start_model or NO_SCORE,
                str(model.labels),
                *(score_text(model.scores, key) for key in SCORE_COLUMNS),
            )
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column == 0:
                    item.setToolTip(self._details(model))
                self.table.setItem(row, column, item)
            if model.name == chosen:
                self.table.selectRow(row)
        if self.pending_note:
            text, self.pending_note = self.pending_note, ""
        elif not self.models:
            text = tr("None yet: fine-tune a model from the panel (Train ▸ Fine-tune…) or import one.")
        elif read_only:
            text = tr("The models of the server {} (managed there; read-only here).").format(where)
        else:
            text = tr("Kept in {}").format(where)
        self.note_label.setText(text)
        self._update_buttons()

    def _details(self, model: PersonModel) -> str:
        recipe = ", ".join(
            f"{key} {value}" for key, value in sorted(model.recipe.items()) if value is not None
        )
        samples = model.scores.samples if model.scores else 0
        validation = tr("{} validation samples").format(samples) if samples else tr("no validation")
        return f"{model.name}: {recipe or tr('no recipe recorded')}; {validation}"

    def chosen_name(self) -> str | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows or rows[0].row() >= len(self.models):
            return None
        return self.models[rows[0].row()].name

    def select(self, name: str) -> None:
        for row, model in enumerate(self.models):
            if model.name == name:
                self.table.selectRow(row)

    def _update_buttons(self) -> None:
        idle = self.task is None and not self.read_only
        chosen = self.chosen_name() is not None
        for button in (self.rename_button, self.delete_button, self.export_button):
            button.setEnabled(idle and chosen)
        self.import_button.setEnabled(idle)

    # -- actions ---------------------------------------------------------------------------------
    @guarded
    def rename_chosen(self) -> None:
        name = self.chosen_name()
        if name is None:
            return
        new_name, ok = QInputDialog.getText(
            self, tr("Rename a model"), tr("New name for “{}”:").format(name), QLineEdit.EchoMode.Normal, name
        )
        new_name = (new_name or "").strip()
        if not ok or not new_name or new_name == name:
            return
        problem = model_name_problem(new_name)
        if problem:
            self.note_label.setText(problem[0].upper() + problem[1:] + ".")
            return
        self.run_action("rename", [name, new_name])

    @guarded
    def delete_chosen(self) -> None:
        name = self.chosen_name()
        if name is None:
            return
        answer = QMessageBox.question(
            self,
            tr("Delete a model"),
            tr("Delete your model “{}”? Its file is removed; this cannot be undone.").format(name),
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.run_action("delete", [name])

    @guarded
    def export_chosen(self) -> None:
        name = self.chosen_name()
        if name is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, tr("Export a model"), f"{name}.zip", tr(EXPORT_FILTER))
        if path:
            self.run_action("export", [name, path if path.lower().endswith(".zip") else f"{path}.zip"])

    @guarded
    def import_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, tr("Import a model"), "", tr(IMPORT_FILTER))
        if path:
            self.run_action("import", [path])

    def run_action(self, action: str, args: list[str]) -> None:
        """Run `rs2sam2 models ACTION ARGS --json` in the background (one at a time)."""
        if self.task is not None:
            return
        self.task = ModelActionTask(self.settings(), action, args, self._on_action_done)
        self.note_label.setText(tr("Working: {} {}…").format(action, " ".join(args)))
        self._update_buttons()
        QgsApplication.taskManager().addTask(self.task)

    def _on_action_done(self, task: ModelActionTask) -> None:
        self.task = None
        self._update_buttons()
        if task.error or task.isCanceled():
            self.note_label.setText(
                tr("{} did not work: {}").format(task.action.capitalize(), task.error or tr("cancelled"))
            )
            return
        answer = dict(task.answer)
        if task.action == "rename":
            answer["old_name"] = task.args[0]
        done = {
            "rename": tr("Renamed to “{}”.").format(answer.get("name", "")),
            "delete": tr("Deleted “{}”.").format(answer.get("deleted", "")),
            "export": tr("Exported to {}.").format(answer.get("file", "")),
            "import": tr("Imported as “{}”.").format(answer.get("name", "")),
        }[task.action]
        self.note_label.setText(done)
        self.pending_note = done
        self.on_changed(task.action, answer)

    def shutdown(self) -> None:
        if self.task is not None:
            self.task.on_done = lambda task: None
            self.task.cancel()
            self.task = None
