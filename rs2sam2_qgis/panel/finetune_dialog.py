"""The fine-tune dialog: fine-tune a model on the person's own labelled region, watch it (phase, step,
loss), cancel it (the run stays resumable: Resume continues it), compare the new model with the one it
started from on the validation labels, and use it in the panel and Processing.

The work runs on the backend the panel uses (POST /train through `connection.training_tasks.FineTuneTask`
and the training client); "Use this model" makes it the `model_name` setting, so the shared local backend
restarts serving it (`BackendRow.apply_settings`). Whatever the backend refuses (400, 409 …) is shown as
one sentence in the dialog."""

from __future__ import annotations

import dataclasses

from qgis.core import QgsApplication, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtWidgets import (
    QDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from ..auth_token import AuthError
from ..connection.training_client import RegionPlan, TrainingRequest, label_report_text, plan_labels
from ..connection.training_tasks import FineTuneTask, ModelsTask
from ..layers.raster_source import RasterSourceError, plan_raster
from ..training_contract import (
    DEFAULT_START_MODEL,
    MIN_TRAINING_LABELS,
    SCORE_KEYS,
    Scores,
    TrainingJobStatus,
    model_name_problem,
)
from .finetune_form import build_form
from .notify import guarded, log
from .person_models import NO_SCORE, score_text

COMPARED_KEYS = ("mIoU", "oIoU", *(key for key in SCORE_KEYS if key.startswith("Pr@")))


def tr(message: str) -> str:
    return QCoreApplication.translate("FineTuneDialog", message)


def status_text(status: TrainingJobStatus) -> str:
    """“training — step 12 of 30 — loss 0.412”, then the backend's own sentence."""
    parts = [status.phase or status.state]
    if status.total_steps:
        parts.append(tr("step {} of {}").format(status.step, status.total_steps))
    if status.loss is not None:
        parts.append(tr("loss {:.3f}").format(status.loss))
    return " — ".join(parts) + (f"\n{status.message}" if status.message else "")


class FineTuneDialog(QDialog):
    def __init__(self, backend_row, parent=None):
        super().__init__(parent)
        self.setWindowTitle(tr("Fine-tune a model on your region"))
        self.setObjectName("RS2SAM2FineTuneDialog")
        self.row = backend_row
        self.task: FineTuneTask | None = None
        self.job_id = ""  # the last run on the backend (what Resume continues)
        self.request: TrainingRequest | None = None
        self.new_model = ""  # the name of the model the last run made
        self._start_after_backend: bool | str = False
        self._resumable = False
        self.known_models: list[str] = []  # the person's models on the backend (GET /models)
        self.models_task: ModelsTask | None = None
        self._build()
        self.row.ready.connect(self._on_backend_ready)
        self.row.start_failed.connect(self._on_backend_failed)
        self.refresh_models()
        self._update_buttons()

    # -- widgets ---------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        body, self.form = build_form(scroll)
        scroll.setWidget(body)
        layout.addWidget(scroll, 1)
        self.form.region.labels_combo.layerChanged.connect(self._on_labels_layer)
        self._on_labels_layer(self.form.region.labels_combo.currentLayer())
        buttons = QHBoxLayout()
        self.start_button = QPushButton(tr("Start"), self)
        self.cancel_button = QPushButton(tr("Cancel"), self)
        self.resume_button = QPushButton(tr("Resume"), self)
        self.close_button = QPushButton(tr("Close"), self)
        self.cancel_button.setToolTip(tr("Stop at the next step; the run stays resumable"))
        self.resume_button.setToolTip(tr("Continue the cancelled or interrupted run where it stopped"))
        for button in (self.start_button, self.cancel_button, self.resume_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)
        layout.addLayout(buttons)
        self.progress_bar = QProgressBar(self)
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setValue(0)
        self.status_label = QLabel(tr("Choose your region and a name for the new model."), self)
        self.status_label.setWordWrap(True)
        self.message_label = QLabel(self)  # what went wrong, one sentence
        self.message_label.setWordWrap(True)
        self.message_label.setStyleSheet("color: #b00020")
        for widget in (self.progress_bar, self.status_label, self.message_label):
            layout.addWidget(widget)
        layout.addWidget(self._comparison_box())
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button.clicked.connect(self.resume)
        self.close_button.clicked.connect(self.close)
        self.use_button.clicked.connect(self.use_model)
        self.resize(620, 860)

    def _comparison_box(self) -> QGroupBox:
        box = QGroupBox(tr("Result"), self)
        box_layout = QVBoxLayout(box)
        self.comparison = QTableWidget(len(COMPARED_KEYS), 2, box)
        self.comparison.setVerticalHeaderLabels(list(COMPARED_KEYS))
        self.comparison.setHorizontalHeaderLabels([tr("Starting model"), tr("New model")])
        self.comparison.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.comparison.resizeRowsToContents()
        rows = (
            self.comparison.verticalHeader().length() + self.comparison.horizontalHeader().sizeHint().height()
        )
        self.comparison.setMinimumHeight(rows + 2 * self.comparison.frameWidth())
        self.report_label = QLabel(box)
        self.report_label.setWordWrap(True)
        self.use_button = QPushButton(tr("Use this model"), box)
        self.use_button.setToolTip(tr("The panel and Processing segment with the new model from now on"))
        box_layout.addWidget(self.comparison)
        box_layout.addWidget(self.report_label)
        box_layout.addWidget(self.use_button)
        self._show_scores(None, None)
        return box

    def _on_labels_layer(self, layer) -> None:
        self.form.field_combo.setLayer(layer)
        if isinstance(layer, QgsVectorLayer):
            wanted = self.form.params().get("phrase_field") or "phrase"
            if layer.fields().indexFromName(wanted) >= 0:
                self.form.field_combo.setField(wanted)

    def refresh_models(self) -> None:
        """The starting-model choices: the demo model, the panel's model, and the person's models."""
        combo = self.form.widgets["start_model"]
        names = [DEFAULT_START_MODEL, self.row.settings.model_name.strip(), *self.known_models]
        current = combo.currentText()
        combo.clear()
        combo.addItems(list(dict.fromkeys(name for name in names if name)))
        combo.setEditText(current or self.row.settings.model_name.strip() or DEFAULT_START_MODEL)

    def list_models(self) -> None:
        """Ask the backend in use for the person's models (when it runs), for the starting-model list."""
        if self.models_task is not None or self.row.needs_start():
            return
        try:
            client = self.row.client()
        except AuthError:
            return
        self.models_task = ModelsTask(client, self._on_models, with_jobs=True)
        QgsApplication.taskManager().addTask(self.models_task)

    def _on_models(self, task: ModelsTask) -> None:
        self.models_task = None
        if task.error:
            return
        self.known_models = [model.name for model in task.models]
        self.refresh_models()
        waiting = next((job for job in task.jobs if job.kind == "train" and job.resumable), None)
        if waiting is not None and self.task is None and not self.job_id:
            # A run stopped before (cancelled, or the backend stopped while it ran): offer to resume it.
            self.job_id, self._resumable, self.request = waiting.job_id, True, None
            self.say(
                tr("Your run for “{}” stopped at step {} of {} ({}); Resume continues it.").format(
                    waiting.model_name, waiting.step, waiting.total_steps, waiting.state
                )
            )
            self._update_buttons()

    # -- state -----------------------------------------------------------------------------------
    def _update_buttons(self) -> None:
        idle = self.task is None
        self.start_button.setEnabled(idle)
        self.cancel_button.setEnabled(not idle)
        self.resume_button.setEnabled(idle and bool(self.job_id) and self._resumable)
        self.use_button.setEnabled(idle and bool(self.new_model))

    def say(self, text: str, problem: bool = False) -> None:
        (self.message_label if problem else self.status_label).setText(text)
        if problem:
            log(text)

    def input_problem(self) -> str | None:
        """Why Start cannot send the run, as a sentence; None when it can."""
        raster, labels = (
            self.form.region.raster_combo.currentLayer(),
            self.form.region.labels_combo.currentLayer(),
        )
        if not isinstance(raster, QgsRasterLayer):
            return tr("Choose the raster of your region.")
        if not isinstance(labels, QgsVectorLayer):
            return tr("Choose the layer of your labelled polygons.")
        if not self.form.field_combo.currentField():
            return tr("Choose the text field of “{}” that holds the phrases.").format(labels.name())
        if labels.featureCount() < MIN_TRAINING_LABELS:
            return tr("“{}” holds {} polygons; fine-tuning needs at least {} (5 or more per kind).").format(
                labels.name(), labels.featureCount(), MIN_TRAINING_LABELS
            )
        problem = model_name_problem(self.form.params().get("name"))
        if problem:
            return problem[0].upper() + problem[1:] + "."
        if self.form.validated() and not (
            isinstance(self.form.validation.raster_combo.currentLayer(), QgsRasterLayer)
            and isinstance(self.form.validation.labels_combo.currentLayer(), QgsVectorLayer)
        ):
            return tr("Choose the validation raster and its labelled polygons, or untick validation.")
        return self._unsaved_problem()

    def _unsaved_problem(self) -> str | None:
        """Labels with unsaved edits: the run would learn from the saved ones, not from what is shown."""
        layers = [self.form.region.labels_combo.currentLayer()]
        if self.form.validated():
            layers.append(self.form.validation.labels_combo.currentLayer())
        for layer in layers:
            if isinstance(layer, QgsVectorLayer) and layer.isEditable() and layer.isModified():
                return tr(
                    "“{}” has unsaved edits: save them (or discard them) first, so the run learns "
                    "from the polygons you see."
                ).format(layer.name())
        return None

    def build_request(self) -> TrainingRequest:
        context = QgsProject.instance().transformContext()

        def region(inputs) -> RegionPlan:
            raster = inputs.raster_combo.currentLayer()
            return RegionPlan(
                plan_raster(raster, None, context), plan_labels(inputs.labels_combo.currentLayer())
            )

        validation = region(self.form.validation) if self.form.validated() else None
        params = {key: value for key, value in self.form.params().items() if value is not None}
        return TrainingRequest(
            "train", params, region(self.form.region), validation, self.row.settings.send_mode
        )

    # -- running ---------------------------------------------------------------------------------
    @guarded
    def start(self) -> None:
        if self.task is not None:
            return
        problem = self.input_problem()
        if problem:
            self.say(problem, problem=True)
            return
        try:
            self.request = self.build_request()
        except RasterSourceError as exc:
            self.say(str(exc), problem=True)
            return
        self.job_id, self._resumable, self.new_model = "", False, ""
        self._show_scores(None, None)
        self._launch()

    @guarded
    def resume(self) -> None:
        if self.task is None and self.job_id:
            self._launch(self.job_id)

    def _launch(self, resume_job: str = "") -> None:
        self.message_label.setText("")
        if self.row.needs_start():
            self._start_after_backend = resume_job or True
            self.say(tr("Starting the local backend first (the model loads once)…"))
            self.row.start_local()
            return
        try:
            client = self.row.client()
        except AuthError as exc:
            self.say(str(exc), problem=True)
            return
        self.task = FineTuneTask(client, self.request, self._on_done, resume_job)
        self.task.status_changed.connect(self._show_status)
        self.progress_bar.setValue(0)
        what = tr("Resuming") if resume_job else tr("Starting")
        self.say(tr("{} the fine-tuning of “{}”…").format(what, self.task.params.get("name", "")))
        self._update_buttons()
        QgsApplication.taskManager().addTask(self.task)

    def _on_backend_ready(self) -> None:
        self.list_models()
        pending, self._start_after_backend = self._start_after_backend, False
        if pending and self.task is None:
            self._launch(pending if isinstance(pending, str) else "")

    def _on_backend_failed(self, first_line: str) -> None:
        if self._start_after_backend:
            self._start_after_backend = False
            self.say(first_line, problem=True)

    @guarded
    def cancel(self) -> None:
        if self.task is not None:
            self.say(tr("Cancelling: the run stops at its next step and stays resumable…"))
            self.task.cancel()

    def _show_status(self, status) -> None:
        if isinstance(status, TrainingJobStatus):
            self.job_id = status.job_id or self.job_id
            if status.total_steps:
                self.progress_bar.setValue(int(100 * status.fraction))
            self.say(status_text(status))
        else:
            self.say(tr(str(status)).capitalize() + "…")

    @guarded
    def _on_done(self, task: FineTuneTask) -> None:
        if task is not self.task:
            return
        self.task = None
        self.job_id = task.job_id or self.job_id
        final = task.final
        self._resumable = bool(final and final.resumable) or (bool(task.error) and bool(task.job_id))
        if task.model is not None:
            self.new_model = task.model.name
            self.progress_bar.setValue(100)
            self.say(tr("Done: your model “{}” is ready.").format(task.model.name))
            self._show_result(task)
        elif task.error:
            self.say(tr("The fine-tuning stopped."))
            self.say(task.error, problem=True)
        elif task.cancelled or (final and final.state == "cancelled"):
            step = final.step if final else 0
            self.say(
                tr("Cancelled at step {}; Resume continues it.").format(step)
                if self._resumable
                else tr("Cancelled.")
            )
        elif final is not None:
            self.say(tr("The fine-tuning stopped."))
            message = final.error.message if final.error else final.message
            self.say(message or tr("The run ended as {}.").format(final.state), problem=True)
        self._update_buttons()

    # -- the result ------------------------------------------------------------------------------
    def _show_result(self, task: FineTuneTask) -> None:
        start = task.comparison.get("start")
        new = task.comparison.get("new")
        new_scores = new.overall if new is not None else (task.model.scores if task.model else None)
        self._show_scores(start.overall if start is not None else None, new_scores, task)
        lines = [label_report_text(task.labels, tr("labels"))]
        if task.val_labels is not None:
            lines.append(label_report_text(task.val_labels, tr("validation labels")))
        if task.request is None or not task.request.validation:
            lines.append(tr("No validation labels: no scores to compare (“—”)."))
        if task.comparison_error:
            lines.append(tr("The comparison could not be made: {}").format(task.comparison_error))
        self.report_label.setText("\n".join(lines))

    def _show_scores(
        self, start: Scores | None, new: Scores | None, task: FineTuneTask | None = None
    ) -> None:
        known = task is not None and task.request is not None
        start_name = str(task.params.get("start_model") or DEFAULT_START_MODEL) if known else ""
        new_name = task.model.name if task and task.model else ""
        self.comparison.setHorizontalHeaderLabels(
            [
                tr("Starting model") + (f": {start_name}" if start_name else ""),
                tr("New model") + (f": {new_name}" if new_name else ""),
            ]
        )
        for row, key in enumerate(COMPARED_KEYS):
            for column, scores in enumerate((start, new)):
                self.comparison.setItem(
                    row, column, QTableWidgetItem(score_text(scores, key) if scores else NO_SCORE)
                )

    @guarded
    def use_model(self) -> None:
        """The panel and Processing use the new model: the local backend restarts with it."""
        if not self.new_model:
            return
        settings = self.row.settings
        if not settings.start_local:
            self.say(
                tr(
                    "The server at {} serves the model it was started with; start it with "
                    '`rs2sam2 serve --model "{}"` to use the new one.'
                ).format(settings.server_url, self.new_model)
            )
            return
        self.row.apply_settings(dataclasses.replace(settings, model_name=self.new_model, preset=""))
        self.say(tr("The panel now uses “{}”; the local backend restarts with it.").format(self.new_model))

    def shutdown(self) -> None:
        """The plugin unloads: the run is cancelled (it stays resumable on the backend)."""
        if self.models_task is not None:
            self.models_task.on_done = lambda task: None
        if self.task is not None:
            self.task.on_done = lambda task: None
            self.task.cancel()
            self.task = None
