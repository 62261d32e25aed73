"""The dock panel: choose a raster, type a phrase, run."""

from __future__ import annotations

from qgis.core import QgsMapLayerProxyModel
from qgis.gui import QgsDockWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtWidgets import QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget


class SegmentDock(QgsDockWidget):
    def __init__(self, iface, parent=None):
        super().__init__(self.tr("RS2-SAM 2"), parent)
        self.iface = iface
        body = QWidget(self)
        layout = QVBoxLayout(body)
        self.layer_combo = QgsMapLayerComboBox(body)
        self.layer_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.phrase_edit = QLineEdit(body)
        self.phrase_edit.setPlaceholderText(self.tr("Describe the object, e.g. the large white building"))
        self.run_button = QPushButton(self.tr("Run"), body)
        self.status_label = QLabel(body)
        for widget in (QLabel(self.tr("Raster layer"), body), self.layer_combo,
                       QLabel(self.tr("Phrase"), body), self.phrase_edit, self.run_button, self.status_label):
            layout.addWidget(widget)
        layout.addStretch(1)
        self.setWidget(body)

    def tr(self, message: str) -> str:  # noqa: D401 - Qt naming
        return QCoreApplication.translate("SegmentDock", message)

    def shutdown(self) -> None:
        """Stop whatever the panel started (tasks, local backend) before the plugin unloads."""
