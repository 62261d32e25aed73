"""The plugin's client for the backend's training API (docs/service-api.md, "Training and evaluation";
the wire types and options of `training_contract.py`): start a fine-tuning or an evaluation, follow it,
cancel, resume, fetch its result, list jobs and the person's models.

What travels: the raster as its path when the backend reads paths and runs on this machine (the same
rule as a segmentation: `runner.sends_path`), else as a GeoTIFF upload; the labelled polygons as the
path of their GeoPackage/GeoJSON when the whole of such a file is used and the raster went by path,
else written to a temporary GeoPackage (the phrase field and the geometries, in the layer's own CRS:
the backend reprojects them to the raster's and says so in the LabelReport) and uploaded.

Preparation that touches layers (`plan_labels`, `layers.raster_source.plan_raster`) runs on the main
thread or from a Processing source; everything else blocks and runs in a worker thread (a QgsTask, a
Processing algorithm), like `client.BackendClient`, whose request and error machinery it uses.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureRequest,
    QgsFeedback,
    QgsFields,
    QgsProviderRegistry,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsVectorLayerFeatureSource,
    QgsVectorLayerSelectedFeatureSource,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QCoreApplication

from ..layers.raster_source import RasterPlan, RasterSourceError
from ..qt_compat import new_field
from ..training_contract import (
    FINAL_TRAINING_STATES,
    LABEL_SUFFIXES,
    TRAINING_OPTION_BY_NAME,
    EvaluationResult,
    LabelReport,
    PersonModel,
    PersonModelList,
    TrainingJobCreated,
    TrainingJobList,
    TrainingJobStatus,
)
from .client import (
    PATH_NOT_REACHABLE_CODES,
    BackendClient,
    BackendError,
    BackendUnreachable,
    FormPart,
    RunCancelled,
    upload_part,
)
from .runner import sends_path

FOLLOW_POLL_S = 1.0  # how often `follow` asks for a job's status, at most
FOLLOW_POLL_FIRST_S = 0.1  # its first pause, each next one twice the last: short jobs end sooner
CANCEL_WAIT_S = 180.0  # after a cancel, how long `follow` waits for the run to stop at its step boundary
LOST_AFTER = 3  # unanswered polls in a row before the backend counts as gone
GPKG = "application/geopackage+sqlite3"


def tr(message: str) -> str:
    return QCoreApplication.translate("TrainingClient", message)


class TrainingInterrupted(BackendError):
    """The backend stopped answering while a run was under way: on the server a training run is
    `interrupted` (a restart finds it so) and resumable; `job_id` names it. An evaluation is run again."""

    def __init__(self, base_url: str, job_id: str, reason: str, kind: str = "train"):
        reason = reason.partition(":")[0]
        if kind == "train":
            message = tr(
                "The backend at {} stopped answering during the run ({}); the run {} is interrupted, and can "
                "be resumed once the backend is back."
            ).format(base_url, reason, job_id)
        else:
            message = tr(
                "The backend at {} stopped answering during the evaluation ({}); run it again once the "
                "backend is back."
            ).format(base_url, reason)
        super().__init__(message, code="interrupted")
        self.job_id, self.kind = job_id, kind


# -- labelled polygons ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelsPlan:
    """Labelled polygons to send, captured on the main thread (`plan_labels`) or from a Processing
    feature source: `source` iterates them in any thread (getFeatures)."""

    name: str
    source: Any  # QgsFeatureSource, QgsVectorLayerFeatureSource or QgsProcessingFeatureSource
    fields: QgsFields
    crs: QgsCoordinateReferenceSystem
    file_path: str | None = None  # a GeoPackage/GeoJSON of exactly these features the backend may read


def labels_file_path(layer: QgsVectorLayer) -> str | None:
    """The GeoPackage/GeoJSON behind a whole vector layer, when that file holds it alone (the backend
    reads a file's first layer) and no filter applies; else None."""
    if layer.providerType() != "ogr" or layer.subsetString():
        return None
    parts = QgsProviderRegistry.instance().decodeUri("ogr", layer.source())
    path = parts.get("path") or ""
    if not path.lower().endswith(LABEL_SUFFIXES) or not os.path.isfile(path):
        return None
    if len(layer.dataProvider().subLayers()) > 1:
        return None
    return os.path.abspath(path)


def plan_labels(layer: QgsVectorLayer, selected_only: bool = False) -> LabelsPlan:
    """The layer's features (or only its selected ones), ready to be written from a worker thread."""
    if layer is None or not layer.isValid():
        raise RasterSourceError(tr("The labelled polygon layer is not available."))
    if selected_only:
        source: Any = QgsVectorLayerSelectedFeatureSource(layer)
        path = None
    else:
        source, path = QgsVectorLayerFeatureSource(layer), labels_file_path(layer)
    return LabelsPlan(layer.name(), source, QgsFields(layer.fields()), layer.crs(), path)


def write_labels(
    labels: LabelsPlan, phrase_field: str, out_path: str, feedback: QgsFeedback | None = None
) -> int:
    """Write the features' geometries and phrase field to a new GeoPackage (in their own CRS); how many.

    Features without geometry or phrase are written as they are: the backend drops and counts them."""
    index = labels.fields.indexFromName(phrase_field)
    if index < 0:
        raise RasterSourceError(
            tr("The layer “{}” has no field “{}” (its fields: {}).").format(
                labels.name, phrase_field, ", ".join(labels.fields.names()) or tr("none")
            )
        )
    fields = QgsFields()
    fields.append(new_field(phrase_field, "string"))
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = "labels"
    writer = QgsVectorFileWriter.create(
        out_path, fields, QgsWkbTypes.MultiPolygon, labels.crs, _transform_context(), options
    )
    if writer.hasError() != QgsVectorFileWriter.NoError:
        raise RasterSourceError(
            tr("Could not write the labels of “{}”: {}").format(labels.name, writer.errorMessage())
        )
    count = 0
    request = QgsFeatureRequest().setSubsetOfAttributes([index])
    for feature in labels.source.getFeatures(request):
        if feedback is not None and feedback.isCanceled():
            break
        out = QgsFeature(fields)
        value = feature.attribute(index)
        out.setAttribute(0, None if value is None else str(value))
        if feature.hasGeometry() and not feature.geometry().isEmpty():
            geometry = feature.geometry()
            geometry.convertToMultiType()
            out.setGeometry(geometry)
        writer.addFeature(out)
        count += 1
    del writer  # closes the file
    return count


def _transform_context():
    from qgis.core import QgsProject

    return QgsProject.instance().transformContext()


# -- what one job sends ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RegionPlan:
    """A raster and its labelled polygons (the training pair, or the validation pair)."""

    raster: RasterPlan
    labels: LabelsPlan


@dataclass(frozen=True)
class TrainingRequest:
    """A fine-tuning (`kind` "train": params from TRAINING_OPTIONS) or an evaluation ("evaluate":
    params from EVALUATION_OPTIONS) of one region, with an optional validation region (train only)."""

    kind: str
    params: dict[str, Any]
    region: RegionPlan
    validation: RegionPlan | None = None
    send_mode: str = "auto"  # auto | path | upload (settings.SEND_MODES)


class _Form:
    """The form fields of one request, with the temporary files written for it."""

    def __init__(self, folder: str, phrase_field: str, log, feedback):
        self.folder, self.phrase_field, self.log, self.feedback = folder, phrase_field, log, feedback
        self.parts: list[FormPart] = []

    def text(self, name: str, value: str) -> None:
        self.parts.append((name, value.encode("utf-8"), None, None))

    def region(self, prefix: str, region: RegionPlan, by_path: bool, max_upload_mb: float) -> None:
        raster, labels = region.raster, region.labels
        if by_path:
            self.text(f"{prefix}path", raster.file_path)
        else:
            self.parts.append(self._raster_upload(f"{prefix}raster", raster, max_upload_mb))
        if by_path and labels.file_path:
            self.text(f"{prefix}labels_path", labels.file_path)
            return
        out = os.path.join(self.folder, f"{prefix}labels.gpkg")
        count = write_labels(labels, self.phrase_field, out, self.feedback)
        self.log(tr("Sending {} labelled feature(s) of “{}”").format(count, labels.name))
        self.parts.append(upload_part(f"{prefix}labels", out, f"{labels.name}.gpkg", GPKG))

    def _raster_upload(self, field: str, plan: RasterPlan, max_upload_mb: float) -> FormPart:
        out = os.path.join(self.folder, f"{field}.tif")
        self.log(
            tr("Writing {} × {} pixels of “{}” as a GeoTIFF").format(plan.width_px, plan.height_px, plan.name)
        )
        plan.write_geotiff(out, self.feedback)
        if self.feedback is not None and self.feedback.isCanceled():
            raise RunCancelled()
        size_mb = os.path.getsize(out) / 1e6
        if max_upload_mb and size_mb > max_upload_mb:
            raise BackendError(
                tr("The raster “{}” is {:.0f} MB, more than the backend accepts ({:.0f} MB).").format(
                    plan.name, size_mb, max_upload_mb
                ),
                code="too_large",
            )
        name = plan.name if plan.name.lower().endswith((".tif", ".tiff")) else f"{plan.name}.tif"
        return upload_part(field, out, name, "image/tiff")


# -- the client --------------------------------------------------------------------------------------
class TrainingClient:
    """The training endpoints over a BackendClient (its URL, token, time-outs and error sentences)."""

    def __init__(self, client: BackendClient):
        self.client = client

    @property
    def base_url(self) -> str:
        return self.client.base_url

    def start(
        self,
        request: TrainingRequest,
        log: Callable[[str], None] = lambda message: None,
        feedback: QgsFeedback | None = None,
    ) -> TrainingJobCreated:
        """Send the request (POST /train or /evaluate); the job is queued on the backend."""
        health = self.client.health(timeout_s=10)
        regions = [("", request.region)] + ([("val_", request.validation)] if request.validation else [])
        by_path = all(
            sends_path(region.raster.file_path, request.send_mode, health, self.base_url)
            for _, region in regions
        )
        if by_path:
            try:
                return self._post(request, regions, True, health.max_upload_mb, log, feedback)
            except BackendError as exc:
                if request.send_mode != "auto" or exc.code not in PATH_NOT_REACHABLE_CODES:
                    raise
                log(tr("The backend cannot read the files ({}); uploading them instead.").format(exc.message))
        return self._post(request, regions, False, health.max_upload_mb, log, feedback)

    def _post(
        self, request, regions, by_path: bool, max_upload_mb: float, log, feedback
    ) -> TrainingJobCreated:
        phrase_field = str(
            request.params.get("phrase_field") or TRAINING_OPTION_BY_NAME["phrase_field"].default
        )
        with tempfile.TemporaryDirectory(prefix="rs2sam2-training-") as folder:
            form = _Form(folder, phrase_field, log, feedback)
            form.text("params", json.dumps(request.params))
            for prefix, region in regions:
                form.region(prefix, region, by_path, max_upload_mb)
            if feedback is not None and feedback.isCanceled():
                raise RunCancelled()
            endpoint = "/train" if request.kind == "train" else "/evaluate"
            answer = self.client.call("POST", endpoint, form=form.parts)
        return created_from_json(answer)

    def status(self, job_id: str) -> TrainingJobStatus:
        return TrainingJobStatus.from_json(self.client.call("GET", _job_path(job_id)))

    def cancel(self, job_id: str) -> TrainingJobStatus:
        """Ask the job to stop: a waiting one at once, a training run at its next step (resumable)."""
        return TrainingJobStatus.from_json(self.client.call("DELETE", _job_path(job_id), timeout_s=10))

    def resume(self, job_id: str) -> TrainingJobStatus:
        """Queue a cancelled or interrupted training run again; it continues from its last saved step."""
        return TrainingJobStatus.from_json(self.client.call("POST", _job_path(job_id) + "/resume"))

    def result(self, job_id: str, kind: str) -> EvaluationResult | PersonModel:
        """The finished job's result: the EvaluationResult ("evaluate") or the PersonModel ("train")."""
        answer = self.client.call("GET", _job_path(job_id) + "/result")
        return EvaluationResult.from_json(answer) if kind == "evaluate" else PersonModel.from_json(answer)

    def jobs(self) -> TrainingJobList:
        answer = self.client.call("GET", "/training")
        jobs = [TrainingJobStatus.from_json(item) for item in answer.get("jobs") or []]
        return TrainingJobList(jobs, answer.get("running") or None)

    def models(self) -> PersonModelList:
        """The person's own models on this backend (GET /models)."""
        answer = self.client.call("GET", "/models")
        models = [PersonModel.from_json(item) for item in answer.get("models") or []]
        return PersonModelList(models, str(answer.get("folder") or ""))

    def follow(
        self,
        job_id: str,
        on_status: Callable[[TrainingJobStatus], None] = lambda status: None,
        is_cancelled: Callable[[], bool] = lambda: False,
        poll_s: float = FOLLOW_POLL_S,
        cancel_wait_s: float = CANCEL_WAIT_S,
    ) -> TrainingJobStatus:
        """Poll the job until it ends (pauses from FOLLOW_POLL_FIRST_S doubling up to `poll_s`); its final
        status (done, failed, cancelled or interrupted).

        `on_status` hears every status polled. Once `is_cancelled()` turns true the job is cancelled on
        the backend (DELETE) and followed until it has stopped (a training run stops at its next step,
        resumable), for at most `cancel_wait_s`; then the last status is returned as it is. A backend
        that stops answering raises TrainingInterrupted."""
        cancel_sent_at: float | None = None
        unanswered, kind = 0, "train"
        pause = min(FOLLOW_POLL_FIRST_S, poll_s)
        while True:
            if cancel_sent_at is None and is_cancelled():
                cancel_sent_at = time.monotonic()
                status = self._cancel_quietly(job_id)
                if status is not None:
                    on_status(status)
            try:
                status = self.status(job_id)
                unanswered = 0
            except BackendUnreachable as exc:
                unanswered += 1
                if unanswered >= LOST_AFTER:
                    raise TrainingInterrupted(self.base_url, job_id, exc.reason, kind) from None
                time.sleep(poll_s)
                continue
            kind = status.kind
            on_status(status)
            if status.state in FINAL_TRAINING_STATES:
                return status
            if cancel_sent_at is not None and time.monotonic() - cancel_sent_at > cancel_wait_s:
                return status
            time.sleep(pause)
            pause = min(2 * pause, poll_s)

    def _cancel_quietly(self, job_id: str) -> TrainingJobStatus | None:
        try:
            return self.cancel(job_id)
        except BackendUnreachable:
            raise
        except BackendError:  # it may just have finished: the next status says how it ended
            return None


def _job_path(job_id: str) -> str:
    return f"/training/{urllib.parse.quote(job_id, safe='')}"


def created_from_json(data: dict) -> TrainingJobCreated:
    return TrainingJobCreated(
        job_id=str(data.get("job_id", "")),
        kind=str(data.get("kind", "train")),
        state=str(data.get("state", "queued")),  # type: ignore[arg-type]
        status_url=str(data.get("status_url", "")),
        queue_position=int(data.get("queue_position") or 0),
        labels=LabelReport.from_json(data.get("labels")),
        val_labels=LabelReport.from_json(data.get("val_labels")),
    )


# -- sentences ---------------------------------------------------------------------------------------
def explained(exc: BackendError, params: dict[str, Any] | None = None) -> str:
    """The backend's refusal of a training or evaluation as one sentence a person can act on."""
    params = params or {}
    if exc.code == "model_exists":
        hint = (
            tr("pick another name for the new model")
            if params.get("overwrite")
            else tr("pick another name for the new model, or tick “Replace” to overwrite yours")
        )
        fact = exc.message.split(";")[0].rstrip(".")  # the backend's advice is the CLI's; ours replaces it
        return f"{fact}: {hint}."
    if exc.code == "unreachable":
        return (
            exc.message
            + " "
            + tr(
                "Start it with `rs2sam2 serve` (or from the RS2-SAM 2 panel) or set its URL in the plugin's "
                "settings."
            )
        )
    return exc.message


def label_report_text(report: LabelReport | None, what: str = "labels") -> str:
    """“36 labels used; dropped: 1 off the raster, …; reprojected from EPSG:4326 by the backend”."""
    if report is None:
        return tr("{}: no report").format(what)
    dropped = [
        tr("{} off the raster").format(report.outside) if report.outside else "",
        tr("{} with no area").format(report.empty) if report.empty else "",
        tr("{} without a phrase").format(report.no_phrase) if report.no_phrase else "",
    ]
    text = tr("{} {} used").format(report.used, what)
    if any(dropped):
        text += tr("; dropped: {}").format(", ".join(part for part in dropped if part))
    if report.reprojected_from:
        text += tr("; reprojected by the backend from {} to the raster's CRS").format(
            _short_crs(report.reprojected_from)
        )
    return text


def _short_crs(text: str) -> str:
    """A CRS the backend reported (an authority id or WKT) as a short name."""
    if len(text) < 40:
        return text
    crs = QgsCoordinateReferenceSystem.fromWkt(text)
    return crs.authid() or crs.description() or text[:40]
