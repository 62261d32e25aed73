"""What the training and evaluation algorithms share: reading a raster + labelled polygons pair from the
parameters, following a job on the backend with Processing's feedback (progress, phase, loss and
validation lines; Cancel cancels the job there), and every way a run ends as one sentence."""

from __future__ import annotations

from qgis.core import QgsProcessingException, QgsProcessingFeatureSourceDefinition
from qgis.PyQt.QtCore import QCoreApplication

from ..connection.client import BackendError, RunCancelled
from ..connection.training_client import (
    LabelsPlan,
    RegionPlan,
    TrainingClient,
    TrainingInterrupted,
    explained,
    label_report_text,
    labels_file_path,
)
from ..layers.raster_source import RasterSourceError, plan_raster
from ..training_contract import SCORE_KEYS, LabelReport, Scores, TrainingJobStatus

RESUME_ALGORITHM = "rs2sam2:resumefinetune"


def tr(message: str) -> str:
    return QCoreApplication.translate("TrainingRun", message)


def how_to_resume(job_id: str) -> str:
    return tr("resume it with the Processing algorithm “Resume fine-tuning” ({}) and the run id {}").format(
        RESUME_ALGORITHM, job_id
    )


def region_plan(algorithm, parameters, context, raster_name: str, labels_name: str) -> RegionPlan:
    """The raster layer and labelled polygons of two parameters (the polygons' selected features only
    when the parameter says so)."""
    layer = algorithm.parameterAsRasterLayer(parameters, raster_name, context)
    if layer is None:
        raise QgsProcessingException(tr("The raster could not be opened."))
    source = algorithm.parameterAsSource(parameters, labels_name, context)
    if source is None:
        raise QgsProcessingException(tr("The labelled polygons could not be opened."))
    vector = algorithm.parameterAsVectorLayer(parameters, labels_name, context)
    name = vector.name() if vector is not None else source.sourceName()
    if source.featureCount() == 0:
        raise QgsProcessingException(
            tr("The layer “{}” has no features to learn from (or none is selected).").format(name)
        )
    value = parameters.get(labels_name)
    whole = not (isinstance(value, QgsProcessingFeatureSourceDefinition) and value.selectedFeaturesOnly)
    path = labels_file_path(vector) if vector is not None and whole else None
    labels = LabelsPlan(name, source, source.fields(), source.sourceCrs(), path)
    try:
        return RegionPlan(plan_raster(layer, None, context.transformContext()), labels)
    except RasterSourceError as exc:
        raise QgsProcessingException(str(exc)) from None


def scores_text(scores: Scores) -> str:
    return ", ".join(
        f"{key} {100 * scores.values[key]:.1f}%" for key in SCORE_KEYS if key in scores.values
    ) + tr(" ({} sample(s))").format(scores.samples)


class ProgressLog:
    """Turns the statuses `TrainingClient.follow` hears into Processing's progress and log lines."""

    def __init__(self, feedback):
        self.feedback = feedback
        self.phase = self.validation = None
        self.step = -1
        self.queue_position = None

    def __call__(self, status: TrainingJobStatus) -> None:
        feedback = self.feedback
        if status.state == "queued" and status.queue_position != self.queue_position:
            self.queue_position = status.queue_position
            feedback.pushInfo(tr("Queued: {}").format(status.message))
        if status.phase != self.phase and status.state == "running":
            self.phase = status.phase
            feedback.pushInfo(tr("Phase: {}").format(status.phase))
        if status.total_steps and status.step != self.step:
            self.step = status.step
            feedback.setProgress(100.0 * status.fraction)
            every = max(1, status.total_steps // 10)
            if status.loss is not None and (status.step % every == 0 or status.step == status.total_steps):
                feedback.pushInfo(
                    tr("Step {} of {}: loss {:.4f}").format(status.step, status.total_steps, status.loss)
                )
        if status.validation is not None and status.validation != self.validation:
            self.validation = status.validation
            feedback.pushInfo(
                tr("Validation at step {}: {}").format(status.step, scores_text(status.validation))
            )


def report_labels(feedback, labels: LabelReport | None, what: str) -> None:
    if labels is not None:
        feedback.pushInfo(label_report_text(labels, what) + ".")


def follow(client: TrainingClient, job_id: str, feedback) -> TrainingJobStatus:
    """Follow the job to its end with the feedback; a lost backend as one sentence."""
    try:
        return client.follow(job_id, ProgressLog(feedback), feedback.isCanceled)
    except TrainingInterrupted as exc:
        if exc.kind != "train":
            raise QgsProcessingException(exc.message) from None
        raise QgsProcessingException(f"{exc.message.rstrip('.')}: {how_to_resume(job_id)}.") from None
    except BackendError as exc:
        raise QgsProcessingException(explained(exc)) from None


def ended_sentence(status: TrainingJobStatus) -> str:
    """Why a job that is not done stopped, and what to do: one sentence."""
    training = status.kind == "train"
    what = tr("fine-tuning") if training else tr("evaluation")
    if status.state == "cancelled":
        if training and status.resumable:
            sentence = tr(
                "The fine-tuning was cancelled at step {} of {}; no model was saved, and the run is kept on "
                "the backend: {}."
            )
            return sentence.format(status.step, status.total_steps, how_to_resume(status.job_id))
        return tr("The {} was cancelled; nothing was written.").format(what)
    if status.state == "interrupted":
        return tr("The backend stopped while the {} ran (at step {}), so it is interrupted; {}.").format(
            what, status.step, how_to_resume(status.job_id) if training else tr("run it again")
        )
    if status.state in ("queued", "running"):  # a cancel the backend did not act on in time
        return tr(
            "The {} was asked to stop but still runs on the backend (run id {}); nothing was written."
        ).format(what, status.job_id)
    message = status.error.message if status.error else status.message
    return tr("The {} failed: {}").format(what, message.rstrip(".") + ".")


def as_processing_error(exc: Exception, params: dict | None = None) -> QgsProcessingException:
    """A failure before or after following the job, as Processing's one sentence."""
    if isinstance(exc, RunCancelled):
        return QgsProcessingException(tr("The run was cancelled before it was sent; nothing was written."))
    if isinstance(exc, BackendError):
        return QgsProcessingException(explained(exc, params))
    return QgsProcessingException(str(exc))
