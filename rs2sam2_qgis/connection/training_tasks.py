"""Background work for fine-tuning from the panel: QgsTasks over the training client
(`training_client.TrainingClient`). `run()` never raises and touches no main-thread object; statuses
travel to the dialog through a signal (queued onto the main thread); `finished()` hands the outcome to a
callback.

`FineTuneTask` starts a fine-tuning (or resumes a cancelled or interrupted one) and follows it to its
end; with a validation region it then scores the starting model and the new one on it with the
backend's own evaluation (POST /evaluate, the same protocol for both), for the dialog's comparison.
`ModelsTask` lists a backend's person's models (GET /models)."""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import Qgis, QgsFeedback, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from ..layers.raster_source import RasterSourceError
from ..resources import LOG_TAG
from ..training_contract import (
    DEFAULT_START_MODEL,
    EvaluationResult,
    LabelReport,
    PersonModel,
    TrainingJobStatus,
)
from .client import BackendClient, BackendError, RunCancelled
from .training_client import TrainingClient, TrainingInterrupted, TrainingRequest, explained


def _log(message: str) -> None:
    QgsMessageLog.logMessage(message, LOG_TAG, Qgis.Info)


class FineTuneTask(QgsTask):
    """One fine-tuning run. Afterwards: `final` (the job's last status), `model` (the PersonModel when
    done), `comparison` ({"start": EvaluationResult | None, "new": …} when validated), `error` (one
    sentence) or `cancelled`; `job_id` names the run on the backend (resumable when cancelled)."""

    status_changed = pyqtSignal(object)  # a TrainingJobStatus, or a sentence (str) about what happens

    def __init__(
        self,
        client: BackendClient,
        request: TrainingRequest | None,
        on_done: Callable[[FineTuneTask], None],
        resume_job: str = "",
    ):
        """`request` None: resume `resume_job`, a run this dialog did not start (nothing to compare)."""
        self.params = dict(request.params) if request is not None else {}
        super().__init__(f"RS2-SAM 2: fine-tuning “{self.params.get('name', '')}”", QgsTask.CanCancel)
        self.training = TrainingClient(client)
        self.request = request
        self.on_done = on_done
        self.job_id = resume_job
        self.final: TrainingJobStatus | None = None
        self.model: PersonModel | None = None
        self.labels: LabelReport | None = None
        self.val_labels: LabelReport | None = None
        self.comparison: dict[str, EvaluationResult | None] = {}
        self.comparison_error = ""
        self.error = ""
        self.cancelled = False
        self._feedback = QgsFeedback()

    def cancel(self) -> None:
        self._feedback.cancel()
        super().cancel()

    def run(self) -> bool:
        try:
            return self._run()
        except RunCancelled:
            self.cancelled = True
        except TrainingInterrupted as exc:
            self.error, self.job_id = exc.message, exc.job_id
        except BackendError as exc:
            self.error = explained(exc, self.params)
        except RasterSourceError as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a task must never raise; the log keeps the detail
            self.error = f"Unexpected error: {exc}"
        return False

    def _run(self) -> bool:
        if self.job_id:
            self._say(self.training.resume(self.job_id))
        else:
            self.status_changed.emit("sending the raster and the labels")
            created = self.training.start(self.request, _log, self._feedback)
            self.job_id, self.labels, self.val_labels = created.job_id, created.labels, created.val_labels
        self.final = self.training.follow(self.job_id, self._say, self.isCanceled)
        if self.final.state != "done":
            self.cancelled = self.final.state == "cancelled"
            return False
        model = self.training.result(self.job_id, "train")
        self.model = model if isinstance(model, PersonModel) else None
        if self.request is not None and self.request.validation is not None and not self.isCanceled():
            self._compare()
        return True

    def _say(self, status: TrainingJobStatus) -> None:
        if status.total_steps:
            self.setProgress(100.0 * status.fraction)
        self.status_changed.emit(status)

    def _compare(self) -> None:
        """Score the starting model and the new one on the validation region (one job after the other)."""
        start = str(self.params.get("start_model") or DEFAULT_START_MODEL)
        for key, model in (("start", start), ("new", self.model.name if self.model else "")):
            if self.isCanceled() or not model:
                return
            self.status_changed.emit(f"scoring {model} on the validation labels")
            params = {"model": model, "phrase_field": self.params.get("phrase_field")}
            request = TrainingRequest(
                "evaluate", params, self.request.validation, send_mode=self.request.send_mode
            )
            try:
                created = self.training.start(request, _log, self._feedback)
                final = self.training.follow(created.job_id, lambda status: None, self.isCanceled)
                result = self.training.result(created.job_id, "evaluate") if final.state == "done" else None
            except BackendError as exc:
                self.comparison_error = explained(exc)
                return
            self.comparison[key] = result if isinstance(result, EvaluationResult) else None

    def finished(self, result: bool) -> None:  # noqa: ARG002 - the state is in the fields
        if self.isCanceled() and not self.error:
            self.cancelled = True
        self.on_done(self)


class ModelsTask(QgsTask):
    """GET /models of a backend: `models` and `folder`, or `error` (one sentence); `url` names it. With
    `with_jobs`, GET /training too: `jobs` (newest first)."""

    def __init__(self, client: BackendClient, on_done: Callable[[ModelsTask], None], with_jobs=False):
        super().__init__("RS2-SAM 2: listing the server's models", QgsTask.Flags())
        self.client = client
        self.with_jobs = with_jobs
        self.jobs: list[TrainingJobStatus] = []
        self.url = client.base_url
        self.on_done = on_done
        self.models: list[PersonModel] = []
        self.folder = ""
        self.error = ""

    def run(self) -> bool:
        try:
            training = TrainingClient(self.client)
            listing = training.models()
            self.models, self.folder = listing.models, listing.folder
            if self.with_jobs:
                self.jobs = training.jobs().jobs
            return True
        except BackendError as exc:
            self.error = exc.message
        except Exception as exc:  # noqa: BLE001 - a task must never raise
            self.error = f"Unexpected error: {exc}"
        return False

    def finished(self, result: bool) -> None:  # noqa: ARG002
        self.on_done(self)
