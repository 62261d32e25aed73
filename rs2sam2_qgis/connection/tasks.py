"""Background work for the dock: QgsTasks that talk to the backend off the UI thread.

`run()` never raises and never touches main-thread objects; `finished()` runs on the main thread and
hands the outcome to a callback (where layers are added).
"""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import Qgis, QgsFeedback, QgsMessageLog, QgsTask

from ..contract import Health
from ..layers.raster_source import RasterSourceError
from ..resources import LOG_TAG
from ..settings import PluginSettings
from .backend import Backend, Connection
from .client import BackendClient, BackendError, RunCancelled
from .local_process import LocalStartError
from .runner import SegmentJob, SegmentOutcome, run_segmentation


class SegmentTask(QgsTask):
    """One run of the dock: `outcome` on success, `error` (a person's sentence) on failure."""

    def __init__(
        self, description: str, client: BackendClient, job: SegmentJob, on_done: Callable[[SegmentTask], None]
    ):
        super().__init__(description, QgsTask.CanCancel)
        self.client = client
        self.job = job
        self.on_done = on_done
        self.outcome: SegmentOutcome | None = None
        self.error: BackendError | None = None
        self.cancelled = False
        self._export_feedback = QgsFeedback()

    def cancel(self) -> None:
        self._export_feedback.cancel()
        super().cancel()

    def run(self) -> bool:
        try:
            self.outcome = run_segmentation(
                self.client,
                self.job,
                self.isCanceled,
                lambda fraction: self.setProgress(100.0 * fraction),
                lambda message: QgsMessageLog.logMessage(message, LOG_TAG, Qgis.Info),
                self._export_feedback,
            )
            return True
        except RunCancelled:
            self.cancelled = True
        except BackendError as exc:
            self.error = exc
        except RasterSourceError as exc:
            self.error = BackendError(str(exc), code="raster")
        except Exception as exc:  # noqa: BLE001 - a task must never raise; the log keeps the detail
            self.error = BackendError(f"Unexpected error: {exc}", code="internal")
        if self.isCanceled():
            self.cancelled = True
        return False

    def finished(self, result: bool) -> None:  # noqa: ARG002 - the state is in outcome/error
        if self.isCanceled():
            self.cancelled = True
        self.on_done(self)


class HealthTask(QgsTask):
    """Asks the backend for its health; `health` or `error` afterwards."""

    def __init__(self, client: BackendClient, on_done: Callable[[HealthTask], None]):
        super().__init__("RS2-SAM 2: checking the backend", QgsTask.Flags())
        self.client = client
        self.on_done = on_done
        self.health: Health | None = None
        self.error: BackendError | None = None

    def run(self) -> bool:
        try:
            self.health = self.client.health(timeout_s=5)
            return True
        except BackendError as exc:
            self.error = exc
        except Exception as exc:  # noqa: BLE001 - a task must never raise
            self.error = BackendError(f"Unexpected error: {exc}", code="internal")
        return False

    def finished(self, result: bool) -> None:  # noqa: ARG002
        self.on_done(self)


class StartLocalTask(QgsTask):
    """Starts the shared local backend (or finds it running); `connection` or `error` afterwards."""

    def __init__(self, backend: Backend, settings: PluginSettings, on_done: Callable[[StartLocalTask], None]):
        super().__init__("RS2-SAM 2: starting the local backend", QgsTask.CanCancel)
        self.backend = backend
        self.settings = settings
        self.on_done = on_done
        self.connection: Connection | None = None
        self.error: str | None = None  # one sentence, then the process's last output

    def run(self) -> bool:
        log = lambda message: QgsMessageLog.logMessage(message, LOG_TAG, Qgis.Info)  # noqa: E731
        try:
            self.connection = self.backend.ensure_local(self.settings, self.isCanceled, log)
            return True
        except LocalStartError as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a task must never raise
            self.error = f"Unexpected error while starting the local backend: {exc}"
        return False

    def finished(self, result: bool) -> None:  # noqa: ARG002
        self.on_done(self)
