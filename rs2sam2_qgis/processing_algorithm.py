"""Processing algorithm "Segment by text": a raster and phrases in, a polygon feature sink out.

It runs in Processing's worker thread and blocks there (never on the UI thread); batch mode, the
Modeler and `qgis_process` come with Processing. The backend is the one in the plugin's settings, or
the BACKEND_URL parameter; when it cannot be reached the run stops with one clear sentence.
"""

from __future__ import annotations

from qgis.core import (
    QgsFeatureSink,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from .client import BackendClient, BackendError, RunCancelled
from .local_backend import running_local_endpoint
from .raster_source import RasterSourceError, area_in_raster_crs, plan_raster
from .request import KEEP_CHOICES, SegmentOptions, split_phrases
from .resources import icon_path
from .result_layer import collection_crs, features_from_collection, result_fields
from .runner import SegmentJob, run_segmentation
from .settings import PluginSettings


class SegmentByTextAlgorithm(QgsProcessingAlgorithm):
    INPUT = "INPUT"
    PHRASES = "PHRASES"
    EXTENT = "EXTENT"
    TILE_SIZE = "TILE_SIZE"
    OVERLAP = "OVERLAP"
    GSD = "GSD"
    THRESHOLD = "THRESHOLD"
    SIMPLIFY = "SIMPLIFY"
    MIN_AREA = "MIN_AREA"
    KEEP = "KEEP"
    BACKEND_URL = "BACKEND_URL"
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
            "The model runs in the RS2-SAM 2 backend service (`rs2sam2 serve`): the one set in the plugin's "
            "settings, or the backend URL given here."
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
        self.addParameter(
            QgsProcessingParameterNumber(
                self.TILE_SIZE,
                self.tr("Tile size in pixels (default: " "the model's input size)"),
                QgsProcessingParameterNumber.Integer,
                optional=True,
                minValue=16,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.OVERLAP,
                self.tr("Tile overlap in pixels (default: " "the engine's)"),
                QgsProcessingParameterNumber.Integer,
                optional=True,
                minValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.GSD,
                self.tr("Resample to this ground sampling " "distance (default: native)"),
                QgsProcessingParameterNumber.Double,
                optional=True,
                minValue=0.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.THRESHOLD,
                self.tr("Probability threshold"),
                QgsProcessingParameterNumber.Double,
                defaultValue=0.5,
                minValue=0.0,
                maxValue=1.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.SIMPLIFY,
                self.tr("Simplify tolerance (raster units; " "default: the engine's)"),
                QgsProcessingParameterNumber.Double,
                optional=True,
                minValue=0.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.MIN_AREA,
                self.tr("Minimum polygon area (raster " "square units)"),
                QgsProcessingParameterNumber.Double,
                optional=True,
                minValue=0.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                self.KEEP,
                self.tr("Keep"),
                options=[self.tr("best match per phrase"), self.tr("all matches")],
                defaultValue=0,
            )
        )
        url = QgsProcessingParameterString(
            self.BACKEND_URL, self.tr("Backend URL (default: from the plugin " "settings)"), optional=True
        )
        url.setFlags(url.flags() | QgsProcessingParameterString.FlagAdvanced)
        self.addParameter(url)
        self.addParameter(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT, self.tr("Segmented polygons"), QgsProcessing.TypeVectorPolygon
            )
        )

    def _optional_number(self, parameters, name, context, as_int=False):
        value = parameters.get(name)
        if value is None or value == "":
            return None
        return (
            self.parameterAsInt(parameters, name, context)
            if as_int
            else self.parameterAsDouble(parameters, name, context)
        )

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        phrases = split_phrases(self.parameterAsString(parameters, self.PHRASES, context))
        if layer is None:
            raise QgsProcessingException(self.tr("The input raster could not be opened."))
        if not phrases:
            raise QgsProcessingException(self.tr("Give at least one phrase."))
        options = SegmentOptions(
            threshold=self.parameterAsDouble(parameters, self.THRESHOLD, context),
            simplify=self._optional_number(parameters, self.SIMPLIFY, context),
            min_area=self._optional_number(parameters, self.MIN_AREA, context),
            keep=KEEP_CHOICES[self.parameterAsEnum(parameters, self.KEEP, context)],
            tile_size=self._optional_number(parameters, self.TILE_SIZE, context, as_int=True),
            overlap=self._optional_number(parameters, self.OVERLAP, context, as_int=True),
            gsd=self._optional_number(parameters, self.GSD, context),
        )
        settings = PluginSettings.load()
        url, token = settings.server_url, settings.token
        local = running_local_endpoint() if settings.start_local else None
        if local is not None:
            url, token = local  # the backend the panel started in this QGIS session
        given_url = self.parameterAsString(parameters, self.BACKEND_URL, context).strip()
        if given_url:
            url, token = given_url, settings.token
        client = BackendClient(url, token, timeout_s=settings.request_timeout_s)
        try:
            area = None
            if parameters.get(self.EXTENT):
                rect = self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs())
                area = area_in_raster_crs(layer, rect, layer.crs(), context.transformContext())
            # Web layers (no pixels of their own) are rendered at the GSD, in the layer's units.
            plan = plan_raster(layer, area, context.transformContext(), units_per_pixel=options.gsd)
        except RasterSourceError as exc:
            raise QgsProcessingException(str(exc)) from None

        job = SegmentJob(phrases, options, plan, settings.send_mode)
        try:
            outcome = run_segmentation(
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
