"""The dock panel: choose a raster, type a phrase, choose the area, run; the result becomes a layer.

The panel only gathers what the user chose and shows state. The work happens elsewhere:
`layers.raster_source` (what is sent), `connection.tasks`/`connection.runner` (talking to the backend in
the background), `layers.result_layer` (features into a layer), `backend_row` (which backend, its health,
the local backend and the first-run set-up).
"""

from __future__ import annotations

import contextlib

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.gui import QgsDockWidget
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtWidgets import QVBoxLayout, QWidget

from ..auth_token import AuthError
from ..connection.request import SegmentOptions
from ..connection.runner import SegmentJob
from ..connection.tasks import SegmentTask
from ..layers.area import AREA_RECTANGLE, AREA_SELECTED, AreaChoice
from ..layers.raster_source import RasterSourceError, plan_raster
from ..layers.result_layer import ResultLayerError
from .backend_row import BackendRow
from .dock_ui import build_option_inputs, build_run_row, build_source_form
from .map_canvas import RectangleDrawing, show_result
from .notify import guarded, log, notify


class SegmentDock(QgsDockWidget):
    def __init__(self, iface, parent=None):
        super().__init__(self.tr("RS2-SAM 2"), parent)
        self.iface = iface
        self.task: SegmentTask | None = None
        self.drawn_rect: QgsRectangle | None = None  # in drawn_crs
        self.drawn_crs = QgsCoordinateReferenceSystem()
        canvas = iface.mapCanvas() if iface is not None else None
        self.drawing = RectangleDrawing(canvas, self.set_drawn_rectangle)
        self._run_after_start = False
        self.last_layers = []  # the layers the last run added to or created (for callers and tests)
        self._build_ui()
        self._connect()
        self._load_history()
        self.update_run_state()
        self.backend_row.announce_half_made_env()

    def tr(self, message: str) -> str:  # noqa: D401 - Qt naming
        return QCoreApplication.translate("SegmentDock", message)

    # -- widgets ---------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        body = QWidget(self)
        layout = QVBoxLayout(body)
        self.backend_row = BackendRow(self.iface, body, layout, self)
        self.backend_row.ready.connect(self._on_backend_started)
        self.backend_row.start_failed.connect(self._on_backend_failed)
        source = build_source_form(body, layout)
        self.layer_combo, self.phrase_combo = source.layer_combo, source.phrase_combo
        self.area_combo = source.area_combo
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
            self.backend_row.check()

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
        self.drawing.start()
        self.set_status(self.tr("Drag a rectangle on the map."))

    def set_drawn_rectangle(self, rect: QgsRectangle, crs: QgsCoordinateReferenceSystem) -> None:
        self.drawn_rect = QgsRectangle(rect)
        self.drawn_crs = crs
        self.draw_label.setText(self.tr("{:.0f} × {:.0f} map units").format(rect.width(), rect.height()))
        self.update_run_state()

    # -- running ---------------------------------------------------------------------------------
    @property
    def settings(self):
        return self.backend_row.settings

    @guarded
    def run(self) -> None:
        """Start a run with what the panel shows (the Run button, Enter in the phrase box)."""
        blocker = self.run_blocker()
        if blocker is not None:
            self.set_status(blocker)
            return
        if self.backend_row.needs_start():
            self._run_after_start = True
            self.set_status(self.tr("Starting the local backend (the model loads once)…"))
            self.backend_row.start_local()
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
            client = self.backend_row.client()
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
            self.last_layers, status = show_result(self.iface, task, self.settings.output_gpkg)
        except ResultLayerError as exc:
            self._show_error(str(exc))
            return
        self.set_status(status)

    def _show_error(self, message: str, unreachable: bool = False) -> None:
        self.set_status(message)
        buttons = []
        if unreachable:
            buttons = [
                (self.tr("Start local backend"), self.backend_row.start_local),
                (self.tr("Settings…"), self.backend_row.open_settings),
            ]
        notify(self.iface, message, Qgis.Critical, buttons)

    @guarded
    def _on_backend_started(self) -> None:
        if self._run_after_start:
            self._run_after_start = False
            self.run()
        else:
            self.update_run_state()

    @guarded
    def _on_backend_failed(self, first_line: str) -> None:
        self._run_after_start = False
        self.set_status(first_line)

    def shutdown(self) -> None:
        """Stop whatever the panel started (tasks, map tool, local backend) before the plugin unloads."""
        if self.task is not None:
            self.task.on_done = lambda task: None
            self.task.cancel()
            self.task = None
        if self.drawing.canvas is not None:
            with contextlib.suppress(TypeError):  # not connected
                self.drawing.canvas.selectionChanged.disconnect(self.update_run_state)
        self.drawing.close()
        self.backend_row.shutdown()
