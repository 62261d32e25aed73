"""Processing algorithm "Evaluate on labelled polygons" (rs2sam2:evaluate): a model's scores on a raster
and polygons labelled with phrases — the papers' metrics (Pr@0.5…0.9, oIoU, mIoU) overall and by kind
as a table (no geometry: one row per kind and one "overall"), and a report with the scores by phrase.

The evaluation is a job on the backend (POST /api/v1/evaluate): each labelled polygon's phrase is
segmented with the product's engine and compared with the polygon."""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureSink,
    QgsFields,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..connection.client import BackendError
from ..connection.training_client import TrainingClient, TrainingRequest
from ..layers.raster_source import RasterSourceError
from ..qt_compat import new_field
from ..resources import icon_path
from ..training_contract import EVALUATION_OPTIONS, SCORE_KEYS, EvaluationResult, Scores
from .backend_choice import backend_client, backend_url_parameter
from .finetune_algorithm import REPORT_FILTER
from .training_parameters import on_processing, params_from, phrase_field_parameter, processing_parameter
from .training_report import evaluation_report, write_report
from .training_run import as_processing_error, ended_sentence, follow, region_plan, report_labels, scores_text


def score_field_name(key: str) -> str:
    """A score's field name in the table: "Pr@0.5" → "pr_50", "oIoU" → "oiou" (every format takes it)."""
    if key.startswith("Pr@"):
        return "pr_" + key[3:].replace("0.", "").ljust(2, "0")
    return key.lower()


def score_fields() -> QgsFields:
    fields = QgsFields()
    fields.append(new_field("kind", "string"))
    fields.append(new_field("model", "string"))
    fields.append(new_field("samples", "int"))
    for key in SCORE_KEYS:
        fields.append(new_field(score_field_name(key), "double"))
    return fields


def score_feature(fields: QgsFields, kind: str, model: str, scores: Scores) -> QgsFeature:
    feature = QgsFeature(fields)
    feature.setAttribute("kind", kind)
    feature.setAttribute("model", model)
    feature.setAttribute("samples", scores.samples)
    for key in SCORE_KEYS:
        feature.setAttribute(score_field_name(key), scores.values.get(key))
    return feature


class EvaluateAlgorithm(QgsProcessingAlgorithm):
    INPUT = "INPUT"
    LABELS = "LABELS"
    OUTPUT = "OUTPUT"
    REPORT = "REPORT"

    def tr(self, message: str) -> str:
        return QCoreApplication.translate("EvaluateAlgorithm", message)

    def createInstance(self):  # noqa: N802 - QGIS API name
        return EvaluateAlgorithm()

    def name(self) -> str:
        return "evaluate"

    def displayName(self) -> str:  # noqa: N802
        return self.tr("Evaluate on labelled polygons")

    def group(self) -> str:
        return self.tr("Training")

    def groupId(self) -> str:  # noqa: N802
        return "training"

    def icon(self) -> QIcon:
        return QIcon(icon_path("rs2sam2.svg"))

    def shortHelpString(self) -> str:  # noqa: N802
        return self.tr(
            "Scores a model on a raster and polygons labelled with what each one is (the phrase field): "
            "every polygon's phrase is segmented and compared with the polygon. The scores are the "
            "papers' metrics — Pr@0.5…Pr@0.9 (the share of phrases found with at least that IoU), oIoU "
            "(overall IoU) and mIoU (mean IoU), as fractions — overall and for each kind (the phrase's "
            "head noun), in a table; the report adds them by phrase. The model is one of the backend's "
            "models or one of yours (default: the model the backend runs)."
        )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Raster")))
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.LABELS, self.tr("Labelled polygons"), [QgsProcessing.TypeVectorPolygon]
            )
        )
        for option in on_processing(EVALUATION_OPTIONS):
            if option.name == "phrase_field":
                self.addParameter(phrase_field_parameter(option, self.LABELS))
            else:
                self.addParameter(processing_parameter(option))
        self.addParameter(backend_url_parameter())
        self.addParameter(
            QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr("Scores"), QgsProcessing.TypeVector)
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(self.REPORT, self.tr("Report"), fileFilter=REPORT_FILTER)
        )

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        params = params_from(self, on_processing(EVALUATION_OPTIONS), parameters, context)
        region = region_plan(self, parameters, context, self.INPUT, self.LABELS)
        client, settings = backend_client(self, parameters, context, feedback)
        training = TrainingClient(client)
        try:
            created = training.start(
                TrainingRequest("evaluate", params, region, send_mode=settings.send_mode),
                feedback.pushInfo,
                feedback,
            )
        except (BackendError, RasterSourceError) as exc:
            raise as_processing_error(exc, params) from None
        feedback.pushInfo(self.tr("The evaluation is run {} on {}.").format(created.job_id, client.base_url))
        report_labels(feedback, created.labels, self.tr("labels"))
        final = follow(training, created.job_id, feedback)
        if final.state != "done":
            raise QgsProcessingException(ended_sentence(final))
        try:
            result = training.result(created.job_id, "evaluate")
        except BackendError as exc:
            raise as_processing_error(exc) from None
        assert isinstance(result, EvaluationResult)
        feedback.pushInfo(self.tr("{} overall: {}").format(result.model, scores_text(result.overall)))
        return self._write(result, parameters, context, client.base_url, created.job_id)

    def _write(self, result: EvaluationResult, parameters, context, base_url: str, job_id: str) -> dict:
        fields = score_fields()
        sink, dest_id = self.parameterAsSink(
            parameters, self.OUTPUT, context, fields, QgsWkbTypes.NoGeometry, QgsCoordinateReferenceSystem()
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        rows = [("overall", result.overall), *sorted(result.by_kind.items())]
        for kind, scores in rows:
            sink.addFeature(score_feature(fields, kind, result.model, scores), QgsFeatureSink.FastInsert)
        path = self.parameterAsFileOutput(parameters, self.REPORT, context)
        write_report(path, evaluation_report(result, base_url, job_id))
        return {self.OUTPUT: dest_id, self.REPORT: path}
