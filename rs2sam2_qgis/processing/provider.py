"""The Processing provider "RS2-SAM 2": batch mode, the Modeler and qgis_process for free."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..resources import icon_path
from .evaluate_algorithm import EvaluateAlgorithm
from .finetune_algorithm import FineTuneAlgorithm, ResumeFineTuneAlgorithm
from .segment_algorithm import SegmentByTextAlgorithm


class RS2SAM2Provider(QgsProcessingProvider):
    def id(self) -> str:
        return "rs2sam2"

    def name(self) -> str:
        return "RS2-SAM 2"

    def longName(self) -> str:  # noqa: N802 - QGIS API name
        return "RS2-SAM 2 text segmentation and fine-tuning"

    def icon(self) -> QIcon:
        return QIcon(icon_path("rs2sam2.svg"))

    def loadAlgorithms(self) -> None:  # noqa: N802 - QGIS API name
        # Loads without a backend: the algorithm only contacts it when it runs.
        self.addAlgorithm(SegmentByTextAlgorithm())
        self.addAlgorithm(FineTuneAlgorithm())
        self.addAlgorithm(ResumeFineTuneAlgorithm())
        self.addAlgorithm(EvaluateAlgorithm())
