"""The panel's Train menu (a tool button in the backend row; the fine-tune entry is also in the plugin's
Raster menu): “Fine-tune a model…” opens the fine-tune dialog (one per panel, so a cancelled run's
Resume waits there), “Add the answers to a labels layer…” turns the panel's corrected result layers
into labels (`labels_dialog`)."""

from __future__ import annotations

from qgis.core import Qgis, QgsProject
from qgis.PyQt.QtCore import QCoreApplication, QObject
from qgis.PyQt.QtWidgets import QMenu, QToolButton

from ..qt_compat import QAction
from .notify import guarded, notify


def tr(message: str) -> str:
    return QCoreApplication.translate("TrainingActions", message)


class TrainingActions(QObject):
    def __init__(self, iface, backend_row, button: QToolButton, parent=None):
        super().__init__(parent)
        self.iface = iface
        self.row = backend_row
        self.dialog = None  # the fine-tune dialog, made on first use
        self.menu = QMenu(button)
        self.finetune_action = QAction(tr("Fine-tune a model…"), self.menu)
        self.finetune_action.setObjectName("RS2SAM2FineTune")
        self.finetune_action.setToolTip(tr("Fine-tune a model on your own labelled region"))
        self.labels_action = QAction(tr("Add the answers to a labels layer…"), self.menu)
        self.labels_action.setObjectName("RS2SAM2AnswersToLabels")
        self.labels_action.setToolTip(
            tr("The answer layers, as you corrected them, become labelled polygons for fine-tuning")
        )
        self.menu.addAction(self.finetune_action)
        self.menu.addAction(self.labels_action)
        button.setMenu(self.menu)
        button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.finetune_action.triggered.connect(self.open_finetune)
        self.labels_action.triggered.connect(self.open_labels)

    @guarded
    def open_finetune(self) -> None:
        from .finetune_dialog import FineTuneDialog

        if self.dialog is None:
            parent = self.iface.mainWindow() if self.iface is not None else None
            self.dialog = FineTuneDialog(self.row, parent)
        self.dialog.list_models()
        self.dialog.show()
        self.dialog.raise_()

    @guarded
    def open_labels(self) -> None:
        from .labels_dialog import LabelsDialog

        parent = self.iface.mainWindow() if self.iface is not None else None
        dialog = LabelsDialog(QgsProject.instance(), parent)
        if dialog.sources.count() == 0:
            notify(
                self.iface, tr("There are no answer layers yet: run a phrase in the panel first."), Qgis.Info
            )
            return
        if dialog.exec() and dialog.outcome is not None:
            notify(self.iface, dialog.outcome.summary(), Qgis.Success)

    def shutdown(self) -> None:
        if self.dialog is not None:
            self.dialog.shutdown()
            self.dialog.close()
            self.dialog.deleteLater()
            self.dialog = None
