"""Processing algorithms "Fine-tune on labelled polygons" (rs2sam2:finetune) and "Resume fine-tuning"
(rs2sam2:resumefinetune): a raster and labelled polygons in, a new model of the person's on the
backend out (its name, and a report of the labels used and dropped, the recipe, the steps and the
validation scores).

The run is a training job on the backend (POST /api/v1/train; rs2sam2_qgis/training_contract.py): the
algorithm follows it in Processing's worker thread, with the progress of its steps. Cancel cancels the
job there; a training run stops at its next step and stays resumable (rs2sam2:resumefinetune).
"""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..connection.client import BackendError
from ..connection.training_client import TrainingClient, TrainingRequest
from ..layers.raster_source import RasterSourceError
from ..resources import icon_path
from ..training_contract import RESUMABLE_STATES, TRAINING_OPTIONS, PersonModel, model_name_problem
from .backend_choice import backend_client, backend_url_parameter
from .training_parameters import on_processing, params_from, phrase_field_parameter, processing_parameter
from .training_report import training_report, write_report
from .training_run import (
    as_processing_error,
    ended_sentence,
    follow,
    region_plan,
    report_labels,
)

REPORT_FILTER = "HTML files (*.html);;Text files (*.txt)"


class _TrainingAlgorithm(QgsProcessingAlgorithm):
    REPORT = "REPORT"
    MODEL = "MODEL"

    def tr(self, message: str) -> str:
        return QCoreApplication.translate("FineTuneAlgorithm", message)

    def group(self) -> str:
        return self.tr("Training")

    def groupId(self) -> str:  # noqa: N802 - QGIS API name
        return "training"

    def icon(self) -> QIcon:
        return QIcon(icon_path("rs2sam2.svg"))

    def add_outputs(self) -> None:
        self.addParameter(backend_url_parameter())
        self.addParameter(
            QgsProcessingParameterFileDestination(self.REPORT, self.tr("Report"), fileFilter=REPORT_FILTER)
        )
        self.addOutput(QgsProcessingOutputString(self.MODEL, self.tr("New model's name")))

    def finish(self, client: TrainingClient, job_id: str, feedback, parameters, context, created=None):
        """Follow the job to its end; the new model registered, the report written: the results."""
        final = follow(client, job_id, feedback)
        if final.state != "done":
            raise QgsProcessingException(ended_sentence(final))
        try:
            model = client.result(job_id, "train")
        except BackendError as exc:
            raise as_processing_error(exc) from None
        assert isinstance(model, PersonModel)
        labels, val_labels = (created.labels, created.val_labels) if created is not None else (None, None)
        report = training_report(model, final, client.base_url, labels, val_labels)
        path = self.parameterAsFileOutput(parameters, self.REPORT, context)
        write_report(path, report)
        ready = self.tr(
            "The model “{}” is ready: choose it by name in the panel, the “Segment by text” algorithm or "
            "`rs2sam2 segment --model`."
        )
        feedback.pushInfo(ready.format(model.name))
        feedback.setProgress(100)
        return {self.MODEL: model.name, self.REPORT: path}


class FineTuneAlgorithm(_TrainingAlgorithm):
    INPUT = "INPUT"
    LABELS = "LABELS"
    VALIDATION_INPUT = "VALIDATION_INPUT"
    VALIDATION_LABELS = "VALIDATION_LABELS"

    def createInstance(self):  # noqa: N802
        return FineTuneAlgorithm()

    def name(self) -> str:
        return "finetune"

    def displayName(self) -> str:  # noqa: N802
        return self.tr("Fine-tune on labelled polygons")

    def shortHelpString(self) -> str:  # noqa: N802
        return self.tr(
            "Fine-tunes a model on your own region: a raster and polygons you labelled with what each one "
            "is (the phrase field, e.g. “the red roof”; several phrases separated by |). At least 30 "
            "labelled polygons, 5 or more per kind. Only the selected polygons are used when “Selected "
            "features only” is ticked. Polygons in another CRS are reprojected by the backend. "
            "An optional validation raster and polygons score the model while it trains. The new model is "
            "saved on the backend under its name, ready to segment with. The run happens in the RS2-SAM 2 "
            "backend and shares it with segmentation meanwhile; Cancel stops it at its next step, and it "
            "can be resumed with “Resume fine-tuning”."
        )

    def initAlgorithm(self, config=None):  # noqa: N802
        polygons = [QgsProcessing.TypeVectorPolygon]
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Raster")))
        self.addParameter(
            QgsProcessingParameterFeatureSource(self.LABELS, self.tr("Labelled polygons"), polygons)
        )
        for option in on_processing(TRAINING_OPTIONS):
            if option.name == "phrase_field":
                self.addParameter(phrase_field_parameter(option, self.LABELS))
            else:
                self.addParameter(processing_parameter(option))
        self.addParameter(
            QgsProcessingParameterRasterLayer(
                self.VALIDATION_INPUT, self.tr("Validation raster (optional)"), optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.VALIDATION_LABELS, self.tr("Validation polygons (optional)"), polygons, optional=True
            )
        )
        self.add_outputs()

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        params = params_from(self, on_processing(TRAINING_OPTIONS), parameters, context)
        problem = model_name_problem(params.get("name"))
        if problem:
            raise QgsProcessingException(problem[0].upper() + problem[1:] + ".")
        region = region_plan(self, parameters, context, self.INPUT, self.LABELS)
        validation = self._validation(parameters, context)
        client, settings = backend_client(self, parameters, context, feedback)
        training = TrainingClient(client)
        request = TrainingRequest("train", params, region, validation, settings.send_mode)
        try:
            created = training.start(request, feedback.pushInfo, feedback)
        except (BackendError, RasterSourceError) as exc:
            raise as_processing_error(exc, params) from None
        feedback.pushInfo(
            self.tr("The fine-tuning of “{}” is run {} on {}.").format(
                params["name"], created.job_id, client.base_url
            )
        )
        report_labels(feedback, created.labels, self.tr("labels"))
        report_labels(feedback, created.val_labels, self.tr("validation labels"))
        return self.finish(training, created.job_id, feedback, parameters, context, created)

    def _validation(self, parameters, context):
        raster = parameters.get(self.VALIDATION_INPUT)
        labels = parameters.get(self.VALIDATION_LABELS)
        if not raster and not labels:
            return None
        if not raster or not labels:
            raise QgsProcessingException(
                self.tr("Give both a validation raster and validation polygons, or neither.")
            )
        return region_plan(self, parameters, context, self.VALIDATION_INPUT, self.VALIDATION_LABELS)


class ResumeFineTuneAlgorithm(_TrainingAlgorithm):
    RUN_ID = "RUN_ID"

    def createInstance(self):  # noqa: N802
        return ResumeFineTuneAlgorithm()

    def name(self) -> str:
        return "resumefinetune"

    def displayName(self) -> str:  # noqa: N802
        return self.tr("Resume fine-tuning")

    def shortHelpString(self) -> str:  # noqa: N802
        return self.tr(
            "Continues a fine-tuning run that was cancelled or interrupted (the backend stopped while it "
            "ran) from its last step, on the backend that ran it, and saves the model as the first run "
            "would have. The run id is in the log of the run that stopped."
        )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterString(self.RUN_ID, self.tr("Run id")))
        self.add_outputs()

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        job_id = self.parameterAsString(parameters, self.RUN_ID, context).strip()
        if not job_id:
            raise QgsProcessingException(self.tr("Give the run id of the fine-tuning to resume."))
        client, _ = backend_client(self, parameters, context, feedback)
        training = TrainingClient(client)
        try:
            status = training.status(job_id)
            if status.kind != "train":
                raise QgsProcessingException(
                    self.tr("The run {} is an evaluation, not a fine-tuning.").format(job_id)
                )
            if status.state in RESUMABLE_STATES:
                status = training.resume(job_id)
            elif status.state == "failed":
                raise QgsProcessingException(ended_sentence(status))
        except BackendError as exc:
            raise as_processing_error(exc) from None
        feedback.pushInfo(
            self.tr("Resuming the fine-tuning of “{}” (run {}) at step {}.").format(
                status.model_name, job_id, status.step
            )
        )
        return self.finish(training, job_id, feedback, parameters, context)
