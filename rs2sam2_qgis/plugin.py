"""The plugin object QGIS creates: menu entry, toolbar action, dock panel, Processing provider."""

from __future__ import annotations

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QCoreApplication, Qt
from qgis.PyQt.QtGui import QIcon

from .panel.dock import SegmentDock
from .processing.provider import RS2SAM2Provider
from .qt_compat import QAction
from .resources import icon_path

MENU_NAME = "&RS2-SAM 2"


class RS2SAM2Plugin:
    def __init__(self, iface):
        self.iface = iface
        self.action: QAction | None = None
        self.settings_action: QAction | None = None
        self.finetune_action: QAction | None = None
        self.dock: SegmentDock | None = None
        self.provider: RS2SAM2Provider | None = None

    @staticmethod
    def tr(message: str) -> str:
        return QCoreApplication.translate("RS2SAM2Plugin", message)

    def initProcessing(self) -> None:  # noqa: N802 - QGIS API name
        self.provider = RS2SAM2Provider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 - QGIS API name
        self.initProcessing()
        main_window = self.iface.mainWindow()
        self.dock = SegmentDock(self.iface, main_window)
        self.dock.setObjectName("RS2SAM2SegmentDock")
        self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.hide()

        self.action = QAction(
            QIcon(icon_path("rs2sam2.svg")), self.tr("Segment by text (RS2-SAM 2)"), main_window
        )
        self.action.setObjectName("RS2SAM2ShowDock")
        self.action.setCheckable(True)
        self.action.toggled.connect(self._set_dock_visible)
        self.dock.visibilityChanged.connect(self.action.setChecked)
        self.iface.addToolBarIcon(self.action)
        self.iface.addPluginToRasterMenu(MENU_NAME, self.action)

        self.settings_action = QAction(QIcon(icon_path("settings.svg")), self.tr("Settings…"), main_window)
        self.settings_action.setObjectName("RS2SAM2Settings")
        self.settings_action.triggered.connect(self.dock.backend_row.open_settings)
        self.iface.addPluginToRasterMenu(MENU_NAME, self.settings_action)

        self.finetune_action = QAction(self.tr("Fine-tune a model…"), main_window)
        self.finetune_action.setObjectName("RS2SAM2FineTuneMenu")
        self.finetune_action.triggered.connect(self.dock.backend_row.training.open_finetune)
        self.iface.addPluginToRasterMenu(MENU_NAME, self.finetune_action)

    def _set_dock_visible(self, visible: bool) -> None:
        if self.dock is not None:
            self.dock.setVisible(visible)

    def unload(self) -> None:
        for action in (self.finetune_action, self.settings_action):
            if action is not None:
                self.iface.removePluginRasterMenu(MENU_NAME, action)
                action.deleteLater()
        self.finetune_action = self.settings_action = None
        if self.action is not None:
            self.action.toggled.disconnect(self._set_dock_visible)
            self.iface.removePluginRasterMenu(MENU_NAME, self.action)
            self.iface.removeToolBarIcon(self.action)
            self.action.deleteLater()
            self.action = None
        if self.dock is not None:
            self.dock.shutdown()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
