"""The panel's first-run set-up row: says what is missing, offers "Set up the local backend" (or
"Repair" / "Update"), runs the `SetupTask` with its progress and cancel, and shows the set-up's log."""

from __future__ import annotations

from qgis.core import Qgis, QgsApplication, QgsMessageOutput
from qgis.PyQt.QtCore import QCoreApplication, QObject, pyqtSignal

from ..settings import PluginSettings
from ..setup.backend_env import INCOMPLETE, MISSING, OUTDATED, READY, Bundle, EnvStatus, inspect
from ..setup.steps import SetupOptions
from ..setup.task import SetupTask
from .dock_ui import SetupRow
from .notify import guarded, log, notify

BUTTON_TEXT = {
    MISSING: "Set up the local backend",
    INCOMPLETE: "Repair the local backend",
    OUTDATED: "Update the local backend",
    READY: "Reinstall the local backend",
}


def tr(message: str) -> str:
    return QCoreApplication.translate("SetupController", message)


def setup_options(settings: PluginSettings) -> SetupOptions:
    return SetupOptions(
        root=settings.setup_layout().root,
        python=settings.setup_python,
        torch_build=settings.torch_build,
        torch_index_url=settings.torch_index_url,
        wheel_folder=settings.wheel_folder,
    )


def env_status(settings: PluginSettings) -> EnvStatus | None:
    """The set-up environment's status; None when the set-up does not apply (a configured Python, or a
    plugin without a bundled backend, i.e. a source checkout)."""
    bundle = Bundle.load()
    if bundle is None or not settings.uses_setup_env:
        return None
    return inspect(settings.setup_layout(), bundle)


class SetupController(QObject):
    finished = pyqtSignal(object)  # the SetupTask, on the main thread

    def __init__(self, row: SetupRow, iface, parent: QObject | None = None):
        super().__init__(parent)
        self.row = row
        self.iface = iface
        self.task: SetupTask | None = None
        self._settings = PluginSettings()
        self._offered = False
        row.cancel_button.clicked.connect(
            self.cancel
        )  # the set-up button is the panel's (it stops the backend)
        row.log_button.clicked.connect(self.show_log)
        self._show_running(False)

    def refresh(self, settings: PluginSettings, offer_when_missing: bool = False) -> EnvStatus | None:
        """Show the row when the environment needs the user (always when half-made or outdated; when
        missing, once the panel knows no other backend answers)."""
        self._settings = settings
        if self.task is not None:
            return env_status(settings)
        status = env_status(settings)
        self._offered = self._offered or offer_when_missing
        visible = status is not None and (
            status.status in (INCOMPLETE, OUTDATED) or (status.status == MISSING and self._offered)
        )
        self.row.frame.setVisible(visible)
        if status is not None and visible:
            text = status.message
            if status.status == MISSING:
                text = tr(
                    "No backend is running. Set up the local backend: it is installed once into its own "
                    "Python environment on this computer (2–6 GB depending on the torch build, a few "
                    "minutes) and then starts by itself."
                )
            self.row.label.setText(text)
            self.row.setup_button.setText(tr(BUTTON_TEXT[status.status]))
        return status

    def start(self, settings: PluginSettings) -> bool:
        """Start the set-up task (the caller stops a local backend running from that folder first)."""
        if self.task is not None:
            return False
        bundle = Bundle.load()
        if bundle is None:
            notify(
                self.iface,
                tr("This copy of the plugin carries no backend to set up (a source checkout: `make setup`)."),
                Qgis.Warning,
            )
            return False
        self._settings = settings
        self.task = SetupTask(setup_options(settings), bundle, self._done)
        self.task.progressChanged.connect(lambda value: self.row.progress_bar.setValue(int(value)))
        self.task.stepChanged.connect(self._step)
        self.row.progress_bar.setValue(0)
        self.row.label.setText(tr("Setting up the local backend in {}…").format(settings.setup_layout().root))
        self.row.frame.show()
        self._show_running(True)
        log(tr("Setting up the local backend in {}").format(settings.setup_layout().root))
        QgsApplication.taskManager().addTask(self.task)
        return True

    def _step(self, label: str) -> None:
        self.row.label.setText(tr("Setting up the local backend: {}…").format(tr(label)))

    @guarded
    def cancel(self) -> None:
        if self.task is not None:
            self.row.label.setText(tr("Cancelling the set-up…"))
            self.task.cancel()

    def shutdown(self) -> None:
        if self.task is not None:
            self.task.on_done = lambda task: None
            self.task.cancel()
            self.task = None

    def _done(self, task: SetupTask) -> None:
        if task is not self.task:
            return
        self.task = None
        self._show_running(False)
        self.finished.emit(task)
        if task.state is None:
            status = self.refresh(self._settings, offer_when_missing=True)
            if status is not None and task.error:
                self.row.label.setText(task.error)

    def _show_running(self, running: bool) -> None:
        self.row.setup_button.setVisible(not running)
        self.row.progress_bar.setVisible(running)
        self.row.cancel_button.setVisible(running)

    @guarded
    def show_log(self) -> None:
        path = self._settings.setup_layout().log_file
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else tr("(no set-up yet)")
        viewer = QgsMessageOutput.createMessageOutput()
        viewer.setTitle(tr("RS2-SAM 2 set-up log ({})").format(path))
        viewer.setMessage(text, QgsMessageOutput.MessageText)
        viewer.showMessage()
