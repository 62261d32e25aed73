"""Processing algorithm "Segment by text": a raster and phrases in, a polygon feature sink out.

It runs in Processing's worker thread and blocks there (never on the UI thread); batch mode, the
Modeler and `qgis_process` come with Processing. The backend is the BACKEND_URL parameter, else the
local backend running in this QGIS process, else the server in the plugin's settings; when none answers
and local backends are allowed (the default), the algorithm starts the local backend itself and leaves
it running for the next run (`connection.backend`). Otherwise the run stops with one clear sentence.
"""

from __future__ import annotations

from qgis.core import (
    QgsFeatureSink,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..connection.client import BackendClient, BackendError, RunCancelled
from ..connection.request import SegmentOptions, split_phrases
from ..connection.runner import SegmentJob, run_segmentation
from ..contract import PROCESSING, options_on
from ..layers.raster_source import RasterSourceError, area_in_raster_crs, plan_raster
from ..layers.result_layer import collection_crs, features_from_collection, result_fields
from ..panel.option_forms import processing_parameter, processing_value
from ..resources import icon_path
from .backend_choice import BACKEND_URL, backend_client, backend_url_parameter

PROBE_TIMEOUT_S = 3


class SegmentByTextAlgorithm(QgsProcessingAlgorithm):
    INPUT = "INPUT"
    PHRASES = "PHRASES"
    EXTENT = "EXTENT"
    BACKEND_URL = BACKEND_URL
    OUTPUT = "OUTPUT"

    def tr(self, message: str) -> str:
        return QCoreApplication.translate("SegmentByTextAlgorithm", message)

    def createInstance(self):  # noqa: N802 - QGIS API name
        return SegmentByTextAlgorithm()

    def name(self) -> str:
        return "segmentbytext"

    def displayName(self) -> str:  # noqa: N802
        return self.tr("Segment by text")

    def group(self) -> str:
        return self.tr("Segmentation")

    def groupId(self) -> str:  # noqa: N802
        return "segmentation"

    def icon(self) -> QIcon:
        return QIcon(icon_path("rs2sam2.svg"))

    def shortHelpString(self) -> str:  # noqa: N802
        return self.tr(
            "Finds what each phrase describes in the raster (RS2-SAM 2) and writes it as polygons in the "
            "raster's CRS, with the phrase, score, area, source and model as attributes. "
            "One phrase per line. "
            "The model runs in the RS2-SAM 2 backend service (`rs2sam2 serve`): the backend URL given here, "
            "else the one in the plugin's settings; when none answers, the local backend the plugin set up "
            "is started and kept running for the next run (unless turned off in the settings)."
        )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Raster")))
        self.addParameter(
            QgsProcessingParameterString(self.PHRASES, self.tr("Phrases (one per line)"), multiLine=True)
        )
        self.addParameter(
            QgsProcessingParameterExtent(
                self.EXTENT, self.tr("Area (default: the whole raster)"), optional=True
            )
        )
        for option in options_on(PROCESSING):  # TILE_SIZE, THRESHOLD, KEEP, … from the contract
            self.addParameter(processing_parameter(option))
        self.addParameter(backend_url_parameter())
        self.addParameter(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT, self.tr("Segmented polygons"), QgsProcessing.TypeVectorPolygon
            )
        )

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        phrases = split_phrases(self.parameterAsString(parameters, self.PHRASES, context))
        if layer is None:
            raise QgsProcessingException(self.tr("The input raster could not be opened."))
        if not phrases:
            raise QgsProcessingException(self.tr("Give at least one phrase."))
        options = SegmentOptions(
            **{
                option.name: processing_value(self, option, parameters, context)
                for option in options_on(PROCESSING)
            }
        )
        client, settings = backend_client(self, parameters, context, feedback)
        plan = self._plan(layer, parameters, context, options)
        job = SegmentJob(phrases, options, plan, settings.send_mode)
        outcome = self._run(client, job, feedback)

        crs = collection_crs(outcome.collection, layer.crs())
        sink, dest_id = self.parameterAsSink(
            parameters, self.OUTPUT, context, result_fields(), QgsWkbTypes.MultiPolygon, crs
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        features = features_from_collection(outcome.collection)
        for feature in features:
            sink.addFeature(feature, QgsFeatureSink.FastInsert)
        stats = outcome.collection.get("stats") or {}
        feedback.pushInfo(
            self.tr("{} polygon(s) for {} phrase(s); {} tile(s) in {:.1f} s; sent as {}.").format(
                len(features),
                len(phrases),
                stats.get("tiles", "?"),
                float(stats.get("seconds") or 0),
                outcome.sent_as,
            )
        )
        return {self.OUTPUT: dest_id}

    def _plan(self, layer, parameters, context, options: SegmentOptions):
        """What of the raster is sent: the EXTENT (in the raster's CRS) or the whole layer."""
        try:
            area = None
            if parameters.get(self.EXTENT):
                rect = self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs())
                area = area_in_raster_crs(layer, rect, layer.crs(), context.transformContext())
            # Web layers (no pixels of their own) are rendered at the GSD, in the layer's units.
            return plan_raster(layer, area, context.transformContext(), units_per_pixel=options.gsd)
        except RasterSourceError as exc:
            raise QgsProcessingException(str(exc)) from None

    def _run(self, client: BackendClient, job: SegmentJob, feedback):
        """The run on the backend, its failures as Processing's exceptions (one sentence each)."""
        try:
            return run_segmentation(
                client,
                job,
                feedback.isCanceled,
                lambda fraction: feedback.setProgress(100.0 * fraction),
                feedback.pushInfo,
                feedback,
            )
        except RunCancelled:
            raise QgsProcessingException(self.tr("The run was cancelled; nothing was written.")) from None
        except BackendError as exc:
            message = exc.message
            if exc.code == "unreachable":
                message += " " + self.tr(
                    "Start it with `rs2sam2 serve` (or from the RS2-SAM 2 panel) or set its "
                    "URL in the plugin's settings."
                )
            raise QgsProcessingException(message) from None
        except RasterSourceError as exc:
            raise QgsProcessingException(str(exc)) from None
