"""The first-run set-up as a QgsTask: a progress bar and a cancel button in QGIS's task manager (and in
the panel), pip's output streamed to the log panel under "RS2-SAM2". When QGIS closes, its task
manager cancels the task, which stops pip; a killed QGIS leaves the folder marked "installing", which
the next start reads as incomplete (see backend_env)."""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import Qgis, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from ..resources import LOG_TAG
from .backend_env import Bundle
from .steps import SetupCancelled, SetupError, SetupOptions, SetupRunner


class SetupTask(QgsTask):
    """Builds the local backend's environment; `state` (the "ready" state) or `error` afterwards."""

    stepChanged = pyqtSignal(str)  # noqa: N815 - Qt naming; the label of the running step

    def __init__(self, options: SetupOptions, bundle: Bundle, on_done: Callable[[SetupTask], None]):
        super().__init__("RS2-SAM 2: setting up the local backend", QgsTask.CanCancel)
        self.options = options
        self.bundle = bundle
        self.on_done = on_done
        self.state: dict | None = None
        self.error: str | None = None
        self.cancelled = False
        self.step = ""

    def run(self) -> bool:
        runner = SetupRunner(
            self.options,
            self.bundle,
            on_line=lambda line: QgsMessageLog.logMessage(line, LOG_TAG, Qgis.Info),
            on_progress=self._progress,
            is_cancelled=self.isCanceled,
        )
        try:
            self.state = runner.run()
            return True
        except SetupCancelled:
            self.cancelled = True
        except SetupError as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a task must never raise; the log keeps the detail
            self.error = f"The set-up of the local backend failed unexpectedly ({exc})."
            QgsMessageLog.logMessage(self.error, LOG_TAG, Qgis.Critical)
        return False

    def _progress(self, fraction: float, label: str) -> None:
        self.setProgress(100.0 * fraction)
        if label != self.step:
            self.step = label
            self.stepChanged.emit(label)

    def finished(self, result: bool) -> None:  # noqa: ARG002 - the outcome is in state/error
        if self.isCanceled():
            self.cancelled = True
        if self.error:
            QgsMessageLog.logMessage(self.error, LOG_TAG, Qgis.Critical)
        self.on_done(self)
