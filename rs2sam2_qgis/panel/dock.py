"""The dock panel: choose a raster, type a phrase, choose the area, run; the result becomes a layer.

The panel only gathers what the user chose and shows state. The work happens elsewhere:
`raster_source` (what is sent), `tasks`/`runner` (talking to the backend in the background),
`result_layer` (features into a layer), `local_backend` (the backend process), `setup_controller`
(the first-run set-up of the local backend's environment).
"""

from __future__ import annotations

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsMessageOutput,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.gui import QgsDockWidget, QgsMapToolExtent
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtWidgets import QVBoxLayout, QWidget

from .area import AREA_RECTANGLE, AREA_SELECTED, AreaChoice
from .auth_token import AuthError
from .backend_env import INCOMPLETE, OUTDATED
from .client import BackendClient
from .dock_ui import (
    build_backend_row,
    build_option_inputs,
    build_run_row,
    build_setup_row,
    build_source_form,
)
from .local_backend import LocalBackend, current_endpoint
from .notify import guarded, log, notify
from .raster_source import RasterSourceError, plan_raster
from .request import SegmentOptions
from .result_layer import ResultLayerError, store_collection
from .runner import SegmentJob
from .settings import PluginSettings
from .setup_controller import SetupController
from .shared_backend import stop_started_backends
from .tasks import HealthTask, SegmentTask


class SegmentDock(QgsDockWidget):
    def __init__(self, iface, parent=None):
        super().__init__(self.tr("RS2-SAM 2"), parent)
        self.iface = iface
        self.settings = PluginSettings.load()
        self.local_backend = LocalBackend(self)
        self.local_backend.ready.connect(self._on_local_ready)
        self.local_backend.failed.connect(self._on_local_failed)
        self.task: SegmentTask | None = None
        self.health_task: HealthTask | None = None
        self.drawn_rect: QgsRectangle | None = None  # in drawn_crs
        self.drawn_crs = QgsCoordinateReferenceSystem()
        self.extent_tool: QgsMapToolExtent | None = None
        self._previous_tool = None  # the map tool to give back after drawing the rectangle
        self._run_after_start = False
        self.last_layers = []  # the layers the last run added to or created (for callers and tests)
        self._build_ui()
        self._connect()
        self._load_history()
        self.update_run_state()
        self._announce_half_made_env()

    def tr(self, message: str) -> str:  # noqa: D401 - Qt naming
        return QCoreApplication.translate("SegmentDock", message)

    # -- widgets ---------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        body = QWidget(self)
        layout = QVBoxLayout(body)
        backend = build_backend_row(body, layout)
        self.backend_label, self.check_button = backend.label, backend.check_button
        self.start_button, self.settings_button = backend.start_button, backend.settings_button
        self.setup_row = build_setup_row(body, layout)
        self.setup = SetupController(self.setup_row, self.iface, self)
        self.setup.finished.connect(self._on_setup_done)
        self.setup_row.setup_button.clicked.connect(self.start_setup)
        source = build_source_form(body, layout)
        self.layer_combo, self.phrase_combo, self.area_combo = (
            source.layer_combo,
            source.phrase_combo,
            source.area_combo,
        )
        self.polygon_label, self.polygon_combo = source.polygon_label, source.polygon_combo
        self.draw_button, self.draw_label = source.draw_button, source.draw_label
        self.option_inputs = build_option_inputs(body, layout)
        run_row = build_run_row(body, layout)
        self.run_button, self.cancel_button = run_row.run_button, run_row.cancel_button
        self.progress_bar, self.status_label = run_row.progress_bar, run_row.status_label
        layout.addStretch(1)
        self.setWidget(body)
        self._show_area_widgets()

    def _connect(self) -> None:
        self.layer_combo.layerChanged.connect(self.update_run_state)
        self.phrase_combo.editTextChanged.connect(self.update_run_state)
        self.phrase_combo.lineEdit().returnPressed.connect(self.run)
        self.area_combo.currentIndexChanged.connect(self._show_area_widgets)
        self.area_combo.currentIndexChanged.connect(self.update_run_state)
        self.polygon_combo.layerChanged.connect(self.update_run_state)
        self.draw_button.clicked.connect(self.start_drawing)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.check_button.clicked.connect(self.check_backend)
        self.start_button.clicked.connect(self.start_local_backend)
        self.settings_button.clicked.connect(self.open_settings)
        self.visibilityChanged.connect(self._on_visibility_changed)
        if self.iface is not None and self.iface.mapCanvas() is not None:
            self.iface.mapCanvas().selectionChanged.connect(self.update_run_state)
        self.choose_active_raster()

    def choose_active_raster(self) -> None:
        """Default to the active raster layer (when the panel is created and each time it opens)."""
        active = self.iface.activeLayer() if self.iface is not None else None
        if isinstance(active, QgsRasterLayer) and self.task is None:
            self.layer_combo.setLayer(active)

    def _on_visibility_changed(self, visible: bool) -> None:
        if visible:
            self.choose_active_raster()
            self.check_backend()

    def _load_history(self) -> None:
        self.phrase_combo.blockSignals(True)
        self.phrase_combo.clear()
        self.phrase_combo.addItems(self.settings.phrase_history)
        self.phrase_combo.setEditText("")
        self.phrase_combo.blockSignals(False)

    def _show_area_widgets(self) -> None:
        mode = self.area_mode()
        self.polygon_label.setVisible(mode == AREA_SELECTED)
        self.polygon_combo.setVisible(mode == AREA_SELECTED)
        self.draw_button.setVisible(mode == AREA_RECTANGLE)
        self.draw_label.setVisible(mode == AREA_RECTANGLE)

    # -- state -----------------------------------------------------------------------------------
    def area_mode(self) -> str:
        return self.area_combo.currentData()

    def set_area_mode(self, mode: str) -> None:
        self.area_combo.setCurrentIndex(self.area_combo.findData(mode))

    def phrase(self) -> str:
        return " ".join(self.phrase_combo.currentText().split())

    def options(self) -> SegmentOptions:
        return SegmentOptions(**self.option_inputs.values())

    def run_blocker(self) -> str | None:
        """Why Run cannot start now, in words for the status line; None when it can."""
        if self.task is not None:
            return self.tr("A run is in progress.")
        if not isinstance(self.layer_combo.currentLayer(), QgsRasterLayer):
            return self.tr("Choose a raster layer to search in.")
        if not self.phrase():
            return self.tr("Type a phrase describing what to find.")
        mode = self.area_mode()
        if mode == AREA_SELECTED:
            layer = self.polygon_combo.currentLayer()
            if not isinstance(layer, QgsVectorLayer):
                return self.tr("Choose a polygon layer whose selected polygons give the area.")
            if layer.selectedFeatureCount() == 0:
                return self.tr("Select polygons in “{}” to give the area.").format(layer.name())
        if mode == AREA_RECTANGLE and self.drawn_rect is None:
            return self.tr("Draw a rectangle on the map to give the area.")
        return None

    def update_run_state(self, *_args) -> None:
        blocker = self.run_blocker()
        self.run_button.setEnabled(blocker is None)
        self.run_button.setToolTip(blocker or self.tr("Find the phrase in the raster"))
        if self.task is None:
            self.status_label.setText(blocker or self.tr("Ready."))

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)

    # -- the area --------------------------------------------------------------------------------
    @guarded
    def start_drawing(self) -> None:
        canvas = self.iface.mapCanvas()
        if self.extent_tool is None:
            self.extent_tool = QgsMapToolExtent(canvas)
            self.extent_tool.extentChanged.connect(self._on_rectangle_drawn)
        self._previous_tool = canvas.mapTool()
        canvas.setMapTool(self.extent_tool)
        self.set_status(self.tr("Drag a rectangle on the map."))

    @guarded
    def _on_rectangle_drawn(self, rect: QgsRectangle) -> None:
        if rect.isEmpty():
            return
        canvas = self.iface.mapCanvas()
        self.set_drawn_rectangle(rect, canvas.mapSettings().destinationCrs())
        if self._previous_tool is not None and self._previous_tool is not self.extent_tool:
            canvas.setMapTool(self._previous_tool)
        else:
            canvas.unsetMapTool(self.extent_tool)

    def set_drawn_rectangle(self, rect: QgsRectangle, crs: QgsCoordinateReferenceSystem) -> None:
        self.drawn_rect = QgsRectangle(rect)
        self.drawn_crs = crs
        self.draw_label.setText(self.tr("{:.0f} × {:.0f} map units").format(rect.width(), rect.height()))
        self.update_run_state()

    # -- running ---------------------------------------------------------------------------------
    def backend_url(self) -> str:
        if self.settings.start_local:
            return self.local_backend.url
        return self.settings.server_url

    def client(self) -> BackendClient:
        """The client for the backend in use; AuthError when the server's token cannot be read."""
        token = self.local_backend.token if self.settings.start_local else self.settings.remote_token()
        return BackendClient(self.backend_url(), token, timeout_s=self.settings.request_timeout_s)

    @guarded
    def run(self) -> None:
        """Start a run with what the panel shows (the Run button, Enter in the phrase box)."""
        blocker = self.run_blocker()
        if blocker is not None:
            self.set_status(blocker)
            return
        if self.settings.start_local and self.local_backend.state != "running":
            self._run_after_start = True
            self.start_local_backend()
            return
        layer: QgsRasterLayer = self.layer_combo.currentLayer()
        phrase = self.phrase()
        try:
            choice = AreaChoice(
                self.area_mode(), self.polygon_combo.currentLayer(), self.drawn_rect, self.drawn_crs
            )
            area, units_per_pixel = choice.resolve(
                layer, self.iface.mapCanvas(), QgsProject.instance().transformContext()
            )
            plan = plan_raster(layer, area, QgsProject.instance().transformContext(), units_per_pixel)
            clip = choice.clip_geometry(layer, QgsProject.instance().transformContext())
        except RasterSourceError as exc:
            self._show_error(str(exc))
            return
        self.settings.remember_phrase(phrase)
        self.settings.save()
        self._load_history()
        self.phrase_combo.setEditText(phrase)
        job = SegmentJob([phrase], self.options(), plan, self.settings.send_mode, clip)
        try:
            client = self.client()
        except AuthError as exc:
            self._show_error(str(exc))
            return
        self.task = SegmentTask(
            self.tr("RS2-SAM 2: “{}” in {}").format(phrase, layer.name()), client, job, self._on_task_done
        )
        self.task.progressChanged.connect(lambda value: self.progress_bar.setValue(int(value)))
        self.progress_bar.setValue(0)
        self.cancel_button.setEnabled(True)
        self.update_run_state()
        self.set_status(self.tr("Looking for “{}” in {}…").format(phrase, layer.name()))
        log(self.tr("Run: “{}” in {} ({})").format(phrase, layer.name(), self.area_combo.currentText()))
        QgsApplication.taskManager().addTask(self.task)

    @guarded
    def cancel(self) -> None:
        if self.task is not None:
            self.set_status(self.tr("Cancelling…"))
            self.task.cancel()
        self._run_after_start = False

    @guarded
    def _on_task_done(self, task: SegmentTask) -> None:
        if task is not self.task:
            return
        self.task = None
        self.cancel_button.setEnabled(False)
        phrase = task.job.phrases[0]
        if task.cancelled:
            self.progress_bar.setValue(0)
            self.update_run_state()
            self.set_status(self.tr("Cancelled: nothing was added."))
            notify(
                self.iface,
                self.tr("The run for “{}” was cancelled; nothing was added.").format(phrase),
                Qgis.Info,
            )
            return
        if task.error is not None:
            self.progress_bar.setValue(0)
            self.update_run_state()
            # Gone before or during the run: offer to start (again) or to configure the backend.
            gone = task.error.code in ("unreachable", "backend_lost")
            self._show_error(task.error.message, unreachable=gone)
            return
        self.progress_bar.setValue(100)
        self.update_run_state()
        try:
            self._add_result(task)
        except ResultLayerError as exc:
            self._show_error(str(exc))
            return
        if self.last_layers:
            added = sum(count for _, count in self.last_layers)
            self.set_status(
                self.tr("Added {} polygon(s) to “{}”.").format(added, self.last_layers[0][0].name())
            )

    def _add_result(self, task: SegmentTask) -> None:
        phrase = task.job.phrases[0]
        stored, features = store_collection(
            QgsProject.instance(),
            task.outcome.collection,
            QgsCoordinateReferenceSystem.fromWkt(task.job.plan.crs_wkt),
            self.settings.output_gpkg,
            clip=task.job.clip,
        )
        self.last_layers = [(result.layer, result.added) for result in stored]
        if not features:
            notify(
                self.iface, self.tr("Nothing matching “{}” was found in the area.").format(phrase), Qgis.Info
            )
            self.set_status(self.tr("Nothing found for “{}”.").format(phrase))
            return
        self._zoom_if_outside(stored[0].layer.crs(), features)
        notify(self.iface, self.tr("“{}”: {} polygon(s) added.").format(phrase, len(features)), Qgis.Success)

    def _zoom_if_outside(self, crs, features) -> None:
        canvas = self.iface.mapCanvas()
        extent = QgsRectangle()
        for feature in features:
            extent.combineExtentWith(feature.geometry().boundingBox())
        canvas_crs = canvas.mapSettings().destinationCrs()
        if canvas_crs.isValid() and canvas_crs != crs:
            extent = QgsCoordinateTransform(crs, canvas_crs, QgsProject.instance()).transformBoundingBox(
                extent
            )
        if not canvas.extent().contains(extent):
            extent.scale(1.2)
            canvas.setExtent(extent)
        canvas.refresh()

    def _show_error(self, message: str, unreachable: bool = False) -> None:
        self.set_status(message)
        buttons = []
        if unreachable:
            buttons = [
                (self.tr("Start local backend"), self.start_local_backend),
                (self.tr("Settings…"), self.open_settings),
            ]
        notify(self.iface, message, Qgis.Critical, buttons)

    # -- the backend -----------------------------------------------------------------------------
    @guarded
    def check_backend(self) -> None:
        if self.health_task is not None:
            return
        if self.settings.start_local and self.local_backend.state != "running":
            self.backend_label.setText(self.tr("Backend: local, not started"))
            self.setup.refresh(self.settings, offer_when_missing=True)
            return
        try:
            client = self.client()
        except AuthError as exc:
            self.backend_label.setText(self.tr("Backend: the access token cannot be read"))
            self.backend_label.setToolTip(str(exc))
            return
        self.backend_label.setText(self.tr("Backend: checking {}…").format(self.backend_url()))
        self.health_task = HealthTask(client, self._on_health)
        QgsApplication.taskManager().addTask(self.health_task)

    @guarded
    def _on_health(self, task: HealthTask) -> None:
        self.health_task = None
        if task.health is not None:
            self._show_health(task.health)
        else:
            self.backend_label.setText(self.tr("Backend: not reachable"))
            self.backend_label.setToolTip(task.error.message if task.error else "")
            # No backend answers: offer the local one (set it up first when needed).
            self.setup.refresh(self.settings, offer_when_missing=True)

    def _show_health(self, health) -> None:
        model = health.model_id or health.preset or "?"
        busy = self.tr(", busy") if health.busy else ""
        self.backend_label.setText(
            self.tr("Backend: connected — {} on {}{}{}").format(
                model, health.device, self._runtime_text(health.model), busy
            )
        )
        self.backend_label.setToolTip(self.tr("{} (version {})").format(self.backend_url(), health.version))

    def _runtime_text(self, model) -> str:
        """How the backend computes, as its health says: " (bf16, 2 threads)"; empty from older servers."""
        parts = [model.precision] if model.precision else []
        if model.threads:
            parts.append(
                self.tr("1 thread") if model.threads == 1 else self.tr("{} threads").format(model.threads)
            )
        return f" ({', '.join(parts)})" if parts else ""

    @guarded
    def start_local_backend(self) -> None:
        if self.local_backend.is_running() or self.setup.task is not None:
            return
        if not self.settings.start_local:
            # The button means "use a local backend from now on".
            self.settings.start_local = True
            self.settings.save()
        self.backend_label.setText(self.tr("Backend: starting locally…"))
        self.set_status(self.tr("Starting the local backend (the model loads once)…"))
        self.local_backend.start(self.settings)

    @guarded
    def _on_local_ready(self, health) -> None:
        self._show_health(health)
        log(self.tr("Local backend ready at {}").format(self.local_backend.url))
        if self._run_after_start:
            self._run_after_start = False
            self.run()
        else:
            self.update_run_state()

    @guarded
    def _on_local_failed(self, message: str) -> None:
        self._run_after_start = False
        self.backend_label.setText(self.tr("Backend: local start failed"))
        self.setup.refresh(self.settings, offer_when_missing=True)
        first_line, _, details = message.partition("\n")
        self.set_status(first_line)
        notify(
            self.iface,
            first_line,
            Qgis.Critical,
            [(self.tr("Show output"), self.show_backend_output), (self.tr("Settings…"), self.open_settings)],
            details,
        )

    @guarded
    def show_backend_output(self) -> None:
        """The local backend's command line and last output lines, in a window the user can copy from."""
        viewer = QgsMessageOutput.createMessageOutput()
        viewer.setTitle(self.tr("RS2-SAM 2 local backend output"))
        viewer.setMessage(self.local_backend.log_text or self.tr("(no output)"), QgsMessageOutput.MessageText)
        viewer.showMessage()

    @guarded
    def open_settings(self) -> None:
        from .settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.settings, self)
        if dialog.exec():
            self.apply_settings(dialog.result_settings())
            if dialog.repair_requested:
                self.start_setup()

    def apply_settings(self, settings: PluginSettings) -> None:
        """Save `settings`; a local backend running with another command (another model) is restarted,
        one that is no longer wanted is stopped."""
        running = self.local_backend.is_running() or current_endpoint() is not None
        changed = settings.backend_command(0) != self.settings.backend_command(0)
        self.settings = settings
        self.settings.save()
        if running and (changed or not settings.start_local):
            self.local_backend.stop()
            stop_started_backends()
            if settings.start_local:
                log(self.tr("Restarting the local backend with the new settings."))
                self.start_local_backend()
                return
        self.setup.refresh(self.settings)
        self.check_backend()

    # -- the first-run set-up --------------------------------------------------------------------
    def _announce_half_made_env(self) -> None:
        """At start: a set-up that did not finish (QGIS closed, a crash) is reported with Repair."""
        status = self.setup.refresh(self.settings, offer_when_missing=self.settings.start_local)
        if status is not None and status.status in (INCOMPLETE, OUTDATED):
            notify(self.iface, status.message, Qgis.Warning, [(self.tr("Repair"), self.start_setup)])

    @guarded
    def start_setup(self) -> None:
        """(Re)build the local backend's environment; a backend running from it is stopped first."""
        if self.settings.uses_setup_env:
            self.local_backend.stop()
            stop_started_backends()
        self.setup.start(self.settings)

    @guarded
    def _on_setup_done(self, task) -> None:
        if task.state is not None:
            self.settings.start_local = True
            self.settings.python_path = ""  # the set-up's environment
            self.settings.save()
            self.setup.refresh(self.settings)
            notify(self.iface, self.tr("The local backend is set up; starting it."), Qgis.Success)
            self.start_local_backend()
        elif task.cancelled:
            notify(self.iface, self.tr("The set-up of the local backend was cancelled."), Qgis.Info)
        else:
            notify(
                self.iface,
                task.error or self.tr("The set-up of the local backend failed."),
                Qgis.Critical,
                [(self.tr("Show log"), self.setup.show_log)],
            )

    def shutdown(self) -> None:
        """Stop whatever the panel started (tasks, map tool, local backend) before the plugin unloads."""
        if self.task is not None:
            self.task.on_done = lambda task: None
            self.task.cancel()
            self.task = None
        if self.health_task is not None:
            self.health_task.on_done = lambda task: None
            self.health_task = None
        if self.iface is not None:
            canvas = self.iface.mapCanvas()
            if canvas is not None:
                try:
                    canvas.selectionChanged.disconnect(self.update_run_state)
                except TypeError:
                    pass
                if self.extent_tool is not None:
                    canvas.unsetMapTool(self.extent_tool)
        if self.extent_tool is not None:
            self.extent_tool.deleteLater()
            self.extent_tool = None
        self.setup.shutdown()
        self.local_backend.stop()
        stop_started_backends()
