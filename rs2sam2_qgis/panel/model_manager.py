"""The settings' Models tab: the models the local backend can serve and the weights it can download —
which are here, their size, a Download button with a progress bar (through the backend's own resumable,
verified `rs2sam2 weights download`), and which one the local backend serves. The user's own trained
`.safetensors` files are added here too, and the person's own models (fine-tuned or imported) are listed
with their scores below (`person_models.PersonModelsBox`). Choosing another model restarts the local
backend when the dialog is accepted (`BackendRow.apply_settings`); a person's model is served by name
(`serve --model NAME`, the `model_name` setting)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from qgis.core import QgsApplication
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..auth_token import AuthError
from ..connection.backend import shared_backend
from ..connection.backend_commands import CatalogueTask, DownloadTask, ModelEntry
from ..connection.local_process import not_set_up_message
from ..connection.training_tasks import ModelsTask
from ..settings import PluginSettings
from .notify import guarded
from .person_models import PersonModelsBox

DEMO_ID = "demo"
PERSON_PREFIX = "person:"  # the catalogue's id of a person's model: person:NAME
COLUMNS = ("Use", "Model", "Here", "Size", "")


def tr(message: str) -> str:
    return QCoreApplication.translate("ModelManager", message)


def own_entry(path: str) -> ModelEntry:
    file = Path(path)
    present = file.is_file()
    return ModelEntry(
        id=f"file:{path}",
        label=tr("Your model: {}").format(file.name),
        kind="own",
        present=present,
        size_bytes=file.stat().st_size if present else 0,
        servable=True,
        checkpoint=str(path),
    )


def size_text(size_bytes: int) -> str:
    if size_bytes <= 0:
        return ""
    return f"{size_bytes / 2**20:.0f} MiB" if size_bytes < 2**30 else f"{size_bytes / 2**30:.1f} GiB"


class ModelManager(QWidget):
    def __init__(self, settings: PluginSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = settings
        self.entries: list[ModelEntry] = []
        self.user_models = list(settings.user_models)
        self.chosen: str | None = None  # the entry id the user picked; None: keep the settings' model
        self.catalogue_task: CatalogueTask | None = None
        self.remote_task: ModelsTask | None = None
        self.download_task: DownloadTask | None = None
        self.cache_dir = ""
        self._note = ""  # the outcome of the last download, shown once the list is fresh again
        self._build()
        self.refresh()

    # -- widgets ---------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels([tr(c) for c in COLUMNS])
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        layout.addWidget(self.table, 2)
        self.person_box = PersonModelsBox(self.current_settings, self._on_person_change, self)
        layout.addWidget(self.person_box, 1)
        self.group = QButtonGroup(self)
        self.group.setExclusive(True)

        row = QHBoxLayout()
        self.add_button = QPushButton(tr("Add a model file…"), self)
        self.add_button.setToolTip(
            tr("A trained RS2-SAM 2 checkpoint (.safetensors), e.g. from `rs2sam2 train`")
        )
        self.refresh_button = QPushButton(tr("Refresh"), self)
        row.addWidget(self.add_button)
        row.addStretch(1)
        row.addWidget(self.refresh_button)
        layout.addLayout(row)

        form = QFormLayout()
        self.mirror_edit = QLineEdit(self.settings.download_mirror, self)
        self.mirror_edit.setPlaceholderText(tr("the official sites"))
        self.mirror_edit.setToolTip(tr("Base URL of a mirror that keeps the official download paths"))
        self.cache_edit = QgsFileWidget(self)
        self.cache_edit.setStorageMode(QgsFileWidget.GetDirectory)
        self.cache_edit.setFilePath(self.settings.weights_cache)
        self.cache_edit.setToolTip(tr("Where downloaded weights are kept (empty: ~/.cache/rs2sam2)"))
        form.addRow(tr("Download from"), self.mirror_edit)
        form.addRow(tr("Weights folder"), self.cache_edit)
        layout.addLayout(form)

        self.progress_bar = QProgressBar(self)
        self.progress_bar.setRange(0, 100)
        self.progress_bar.hide()
        self.status_label = QLabel(self)
        self.status_label.setWordWrap(True)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        self.add_button.clicked.connect(self._pick_model_file)
        self.refresh_button.clicked.connect(self.refresh)

    # -- what the dialog reads -------------------------------------------------------------------
    def current_settings(self) -> PluginSettings:
        """The settings with this tab's values (model, mirror, folder, own files)."""
        values = {
            "download_mirror": self.mirror_edit.text().strip(),
            "weights_cache": self.cache_edit.filePath().strip(),
            "user_models": list(self.user_models),
        }
        if self.chosen is not None:
            entry = next((e for e in self._all_entries() if e.id == self.chosen), None)
            if entry is not None and entry.id.startswith(PERSON_PREFIX):
                values.update(model_name=entry.id[len(PERSON_PREFIX) :], checkpoint="", preset="")
            elif entry is not None:
                values["checkpoint"] = "" if entry.id == DEMO_ID else str(entry.checkpoint or "")
                values.update(preset="", model_name="")
        return dataclasses.replace(self.settings, **values)

    def served_id(self) -> str | None:
        """The entry the local backend serves with the current choice."""
        if self.chosen is not None:
            return self.chosen
        if self.settings.model_name.strip():
            wanted = self.settings.model_name.strip().casefold()
            ids = [e.id for e in self._all_entries() if e.id.startswith(PERSON_PREFIX)]
            return next((i for i in ids if i[len(PERSON_PREFIX) :].casefold() == wanted), None)
        checkpoint, preset = self.settings.checkpoint.strip(), self.settings.preset.strip()
        if not checkpoint and not preset:
            return DEMO_ID  # the backend's default: its bundled demo model
        for entry in self._all_entries():
            if checkpoint and entry.checkpoint and Path(entry.checkpoint) == Path(checkpoint):
                return entry.id
        return None

    # -- listing ---------------------------------------------------------------------------------
    @guarded
    def refresh(self) -> None:
        if self.catalogue_task is not None:
            return
        settings = self.current_settings()
        self._list_remote(settings)
        blocker = not_set_up_message(settings)
        if blocker is not None:
            self.entries = []
            self._fill()
            self.status_label.setText(blocker)
            return
        self.status_label.setText(tr("Asking the backend which models it has…"))
        self.catalogue_task = CatalogueTask(settings, self._on_catalogue)
        QgsApplication.taskManager().addTask(self.catalogue_task)

    def _list_remote(self, settings: PluginSettings) -> None:
        """With a server chosen (not the local backend): its person's models, read-only (GET /models)."""
        if settings.start_local or self.remote_task is not None:
            return
        try:
            client = shared_backend().client(settings, timeout_s=10)
        except AuthError as exc:
            self.person_box.note_label.setText(str(exc))
            return
        self.remote_task = ModelsTask(client, self._on_remote)
        QgsApplication.taskManager().addTask(self.remote_task)

    def _on_remote(self, task: ModelsTask) -> None:
        self.remote_task = None
        if task.error:
            self.person_box.note_label.setText(
                tr("The server's models could not be listed: {}").format(task.error)
            )
        else:
            self.person_box.show_models(task.models, task.url, read_only=True)

    def _on_catalogue(self, task: CatalogueTask) -> None:
        self.catalogue_task = None
        if task.error or task.isCanceled():
            self.status_label.setText(
                tr("The models could not be listed: {}").format(task.error or tr("cancelled"))
            )
            return
        self.entries = task.entries
        self.cache_dir = task.cache
        self.status_label.setText(self._note or tr("Weights folder: {}").format(task.cache))
        self._note = ""
        self._fill()
        if self.settings.start_local:
            self.person_box.show_models(task.person_models, task.person_folder)

    def _on_person_change(self, action: str, answer: dict) -> None:
        """A person's model was renamed, deleted or imported: list again; the choice follows it."""
        served = self.served_id()
        if action == "rename" and served == f"{PERSON_PREFIX}{answer.get('old_name', '')}":
            self.chosen = f"{PERSON_PREFIX}{answer.get('name', '')}"
        elif action == "delete" and served == f"{PERSON_PREFIX}{answer.get('deleted', '')}":
            self.chosen = DEMO_ID
        self.refresh()

    def _all_entries(self) -> list[ModelEntry]:
        return [*self.entries, *(own_entry(path) for path in self.user_models)]

    def _fill(self) -> None:
        entries = self._all_entries()
        self.table.setRowCount(len(entries))
        for button in self.group.buttons():
            self.group.removeButton(button)
        served = self.served_id()
        for row, entry in enumerate(entries):
            use = QRadioButton(self.table)
            use.setObjectName(f"use:{entry.id}")
            use.setEnabled(entry.servable and entry.present)
            use.setChecked(entry.id == served)
            use.setToolTip(
                tr("The local backend serves this model")
                if entry.servable
                else tr("Not a model to serve by itself")
            )
            use.toggled.connect(lambda on, key=entry.id: self._choose(key) if on else None)
            self.group.addButton(use)
            self.table.setCellWidget(row, 0, use)
            self.table.setItem(row, 1, QTableWidgetItem(entry.label))
            self.table.setItem(row, 2, QTableWidgetItem(tr("yes") if entry.present else tr("no")))
            self.table.setItem(row, 3, QTableWidgetItem(size_text(entry.size_bytes)))
            self.table.setCellWidget(row, 4, self._action_button(entry))

    def _action_button(self, entry: ModelEntry) -> QWidget:
        if entry.kind == "own":
            button = QPushButton(tr("Remove"), self.table)
            button.clicked.connect(lambda _=False, path=entry.checkpoint: self.remove_model_file(path))
        elif entry.download and not entry.present:
            button = QPushButton(tr("Download"), self.table)
            button.clicked.connect(lambda _=False, key=entry.id: self.download(key))
            button.setEnabled(self.download_task is None)
        else:
            return QLabel("", self.table)
        button.setObjectName(f"action:{entry.id}")
        return button

    def _choose(self, key: str) -> None:
        self.chosen = key

    # -- the user's own files --------------------------------------------------------------------
    @guarded
    def _pick_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, tr("A trained RS2-SAM 2 model"), "", "Safetensors (*.safetensors)"
        )
        if path:
            self.add_model_file(path)

    def add_model_file(self, path: str) -> None:
        if path not in self.user_models:
            self.user_models.append(path)
        self._fill()

    def remove_model_file(self, path: str) -> None:
        self.user_models = [p for p in self.user_models if p != path]
        if self.chosen == f"file:{path}":
            self.chosen = DEMO_ID
        self._fill()

    # -- downloads -------------------------------------------------------------------------------
    @guarded
    def download(self, key: str) -> None:
        entry = next((e for e in self.entries if e.id == key), None)
        if entry is None or self.download_task is not None:
            return
        self.download_task = DownloadTask(self.current_settings(), entry, self._on_download)
        self.download_task.progressChanged.connect(lambda value: self.progress_bar.setValue(int(value)))
        self.progress_bar.setValue(0)
        self.progress_bar.show()
        self.status_label.setText(tr("Downloading {}…").format(entry.label))
        self._fill()
        QgsApplication.taskManager().addTask(self.download_task)

    def _on_download(self, task: DownloadTask) -> None:
        self.download_task = None
        if task.isCanceled():
            self._note = tr("The download was cancelled; it resumes where it stopped next time.")
        elif task.error:
            self._note = tr("The download failed: {}").format(task.error)
        else:
            self.progress_bar.setValue(100)
            self._note = tr("{} is downloaded and verified.").format(task.entry.label)
        self.status_label.setText(self._note)
        self.refresh()

    def shutdown(self) -> None:
        """Closing the dialog cancels a download (the backend resumes it next time)."""
        for task in (self.download_task, self.catalogue_task, self.remote_task):
            if task is not None:
                task.on_done = lambda task: None
                task.cancel()
        self.download_task = self.catalogue_task = self.remote_task = None
        self.person_box.shutdown()
