"""The panel's backend row: which backend the panel uses, its health, starting the local one, the settings
dialog and the first-run set-up. The backend itself is this QGIS process's shared `Backend`
(`connection.backend`); this row only shows it and asks it to start, stop or restart.
"""

from __future__ import annotations

from qgis.core import Qgis, QgsApplication, QgsMessageOutput
from qgis.PyQt.QtCore import QCoreApplication, QObject, pyqtSignal

from ..auth_token import AuthError
from ..connection.backend import RUNNING, shared_backend
from ..connection.client import BackendClient
from ..connection.tasks import HealthTask, StartLocalTask
from ..settings import PluginSettings
from ..setup.backend_env import INCOMPLETE, OUTDATED
from .dock_ui import build_backend_row, build_setup_row
from .notify import guarded, log, notify
from .setup_controller import SetupController
from .training_actions import TrainingActions


class BackendRow(QObject):
    ready = pyqtSignal()  # the local backend answered after a start this row asked for
    start_failed = pyqtSignal(str)  # its first line

    def __init__(self, iface, body, layout, parent):
        super().__init__(parent)
        self.iface = iface
        self.settings = PluginSettings.load()
        self.backend = shared_backend()
        self.health_task: HealthTask | None = None
        self.start_task: StartLocalTask | None = None
        widgets = build_backend_row(body, layout)
        self.label, self.check_button = widgets.label, widgets.check_button
        self.start_button, self.settings_button = widgets.start_button, widgets.settings_button
        self.training = TrainingActions(iface, self, widgets.train_button, self)
        self.setup_row = build_setup_row(body, layout)
        self.setup = SetupController(self.setup_row, iface, parent)
        self.setup.finished.connect(self._on_setup_done)
        self.setup_row.setup_button.clicked.connect(self.start_setup)
        self.check_button.clicked.connect(self.check)
        self.start_button.clicked.connect(self.start_local)
        self.settings_button.clicked.connect(self.open_settings)

    def tr(self, message: str) -> str:  # noqa: D401 - Qt naming
        return QCoreApplication.translate("BackendRow", message)

    # -- the backend in use -----------------------------------------------------------------------
    def url(self) -> str:
        return self.backend.url if self.settings.start_local else self.settings.server_url

    def client(self) -> BackendClient:
        """The client for the backend in use; AuthError when the server's token cannot be read."""
        return self.backend.client(self.settings)

    def needs_start(self) -> bool:
        """A run must first start the local backend."""
        return self.settings.start_local and self.backend.local_connection() is None

    @guarded
    def check(self) -> None:
        if self.health_task is not None:
            return
        if self.needs_start():
            self.label.setText(self.tr("Backend: local, not started"))
            self.setup.refresh(self.settings, offer_when_missing=True)
            return
        try:
            client = self.client()
        except AuthError as exc:
            self.label.setText(self.tr("Backend: the access token cannot be read"))
            self.label.setToolTip(str(exc))
            return
        self.label.setText(self.tr("Backend: checking {}…").format(self.url()))
        self.health_task = HealthTask(client, self._on_health)
        QgsApplication.taskManager().addTask(self.health_task)

    @guarded
    def _on_health(self, task: HealthTask) -> None:
        self.health_task = None
        if task.health is not None:
            self._show_health(task.health)
        else:
            self.label.setText(self.tr("Backend: not reachable"))
            self.label.setToolTip(task.error.message if task.error else "")
            # No backend answers: offer the local one (set it up first when needed).
            self.setup.refresh(self.settings, offer_when_missing=True)

    def _show_health(self, health) -> None:
        model = health.model_id or health.preset or "?"
        busy = self.tr(", busy") if health.busy else ""
        if health.training:  # segmenting still answers, sharing the CPU/GPU with the run
            busy += self.tr(", {} (shares the {})").format(health.training, health.device.upper())
        self.label.setText(
            self.tr("Backend: connected — {} on {}{}{}").format(
                model, health.device, self._runtime_text(health.model), busy
            )
        )
        self.label.setToolTip(self.tr("{} (version {})").format(self.url(), health.version))

    def _runtime_text(self, model) -> str:
        """How the backend computes, as its health says: " (bf16, 2 threads)"; empty from older servers."""
        parts = [model.precision] if model.precision else []
        if model.threads:
            parts.append(
                self.tr("1 thread") if model.threads == 1 else self.tr("{} threads").format(model.threads)
            )
        return f" ({', '.join(parts)})" if parts else ""

    # -- the local backend ------------------------------------------------------------------------
    @guarded
    def start_local(self) -> None:
        if self.start_task is not None or self.setup.task is not None:
            return
        if not self.settings.start_local:
            # The button means "use a local backend from now on".
            self.settings.start_local = True
            self.settings.save()
        if self.backend.local_connection() is not None:
            self._on_started_ok()
            return
        self.label.setText(self.tr("Backend: starting locally…"))
        self.start_task = StartLocalTask(self.backend, self.settings, self._on_started)
        QgsApplication.taskManager().addTask(self.start_task)

    @guarded
    def _on_started(self, task: StartLocalTask) -> None:
        if task is not self.start_task:
            return
        self.start_task = None
        if task.connection is not None and self.backend.state == RUNNING:
            self._on_started_ok()
            return
        self.label.setText(self.tr("Backend: local start failed"))
        self.setup.refresh(self.settings, offer_when_missing=True)
        first_line, _, details = (task.error or self.tr("The local backend did not start.")).partition("\n")
        notify(
            self.iface,
            first_line,
            Qgis.Critical,
            [(self.tr("Show output"), self.show_output), (self.tr("Settings…"), self.open_settings)],
            details,
        )
        self.start_failed.emit(first_line)

    def _on_started_ok(self) -> None:
        if self.backend.health is not None:
            self._show_health(self.backend.health)
        log(self.tr("Local backend ready at {}").format(self.backend.url))
        self.ready.emit()

    @guarded
    def show_output(self) -> None:
        """The local backend's command line and last output lines, in a window the user can copy from."""
        viewer = QgsMessageOutput.createMessageOutput()
        viewer.setTitle(self.tr("RS2-SAM 2 local backend output"))
        viewer.setMessage(self.backend.log_text or self.tr("(no output)"), QgsMessageOutput.MessageText)
        viewer.showMessage()

    # -- settings and set-up ----------------------------------------------------------------------
    @guarded
    def open_settings(self) -> None:
        from .settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.settings, self.parent())
        if dialog.exec():
            self.apply_settings(dialog.result_settings())
            if dialog.repair_requested:
                self.start_setup()

    def apply_settings(self, settings: PluginSettings) -> None:
        """Save `settings`; a local backend running with another command (another model) is restarted,
        one that is no longer wanted is stopped."""
        old, self.settings = self.settings, settings
        self.settings.save()
        if self.backend.apply_settings(old, settings):
            log(self.tr("Restarting the local backend with the new settings."))
            self.start_local()
            return
        self.setup.refresh(self.settings)
        self.check()

    def announce_half_made_env(self) -> None:
        """At start: a set-up that did not finish (QGIS closed, a crash) is reported with Repair."""
        status = self.setup.refresh(self.settings, offer_when_missing=self.settings.start_local)
        if status is not None and status.status in (INCOMPLETE, OUTDATED):
            notify(self.iface, status.message, Qgis.Warning, [(self.tr("Repair"), self.start_setup)])

    @guarded
    def start_setup(self) -> None:
        """(Re)build the local backend's environment; a backend running from it is stopped first."""
        if self.settings.uses_setup_env:
            self.backend.stop()
        self.setup.start(self.settings)

    @guarded
    def _on_setup_done(self, task) -> None:
        if task.state is not None:
            self.settings.start_local = True
            self.settings.python_path = ""  # the set-up's environment
            self.settings.save()
            self.setup.refresh(self.settings)
            notify(self.iface, self.tr("The local backend is set up; starting it."), Qgis.Success)
            self.start_local()
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
        """Forget pending tasks, stop the set-up and the local backend (the plugin unloads)."""
        for task in (self.health_task, self.start_task):
            if task is not None:
                task.on_done = lambda task: None
        if self.start_task is not None:
            self.start_task.cancel()
        self.health_task = self.start_task = None
        self.training.shutdown()
        self.setup.shutdown()
        self.backend.stop()
