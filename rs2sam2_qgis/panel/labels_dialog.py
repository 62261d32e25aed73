"""“Add the answers to labels…”: the panel's result layers (checked ones) go, with their phrases, into a
labels layer the person chooses — an existing polygon layer with a text field, or a new GeoPackage
layer (`layers.labels`). The fine-tune dialog then reads that layer as its labels."""

from __future__ import annotations

from qgis.core import QgsMapLayerProxyModel, QgsProject
from qgis.gui import QgsFieldComboBox, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import QCoreApplication, Qt
from qgis.PyQt.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QRadioButton,
    QVBoxLayout,
)

from ..layers.labels import (
    PHRASE_FIELD,
    LabelsError,
    LabelsOutcome,
    add_answers_to_labels,
    answer_layers,
    is_answer_layer,
    new_labels_layer,
)


def tr(message: str) -> str:
    return QCoreApplication.translate("LabelsDialog", message)


class LabelsDialog(QDialog):
    """Choose the answers and the labels layer; OK adds them (the outcome in `outcome`)."""

    def __init__(self, project: QgsProject, parent=None, chosen_layers=None):
        super().__init__(parent)
        self.setWindowTitle(tr("Add the answers to a labels layer"))
        self.setObjectName("RS2SAM2LabelsDialog")
        self.project = project
        self.outcome: LabelsOutcome | None = None
        self._build(set(layer.id() for layer in chosen_layers or ()))

    def _build(self, chosen: set[str]) -> None:
        layout = QVBoxLayout(self)
        intro = QLabel(
            tr(
                "The polygons of the answer layers, as you corrected them, become labels for fine-tuning; "
                "each keeps its phrase. Polygons without a phrase are skipped."
            ),
            self,
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.sources = QListWidget(self)
        for layer in answer_layers(self.project):
            item = QListWidgetItem(f"{layer.name()} ({layer.featureCount()})", self.sources)
            item.setData(Qt.ItemDataRole.UserRole, layer.id())
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            on = not chosen or layer.id() in chosen
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
        layout.addWidget(QLabel(tr("Answers"), self))
        layout.addWidget(self.sources)
        form = QFormLayout()
        self.existing_radio = QRadioButton(tr("An existing polygon layer"), self)
        self.new_radio = QRadioButton(tr("A new GeoPackage layer"), self)
        self.target_combo = QgsMapLayerComboBox(self)
        self.target_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.target_combo.setExceptedLayerList(answer_layers(self.project))
        self.field_combo = QgsFieldComboBox(self)
        self.field_combo.setLayer(self.target_combo.currentLayer())
        self.target_combo.layerChanged.connect(self._on_target)
        self.gpkg_edit = QgsFileWidget(self)
        self.gpkg_edit.setStorageMode(QgsFileWidget.SaveFile)
        self.gpkg_edit.setFilter("GeoPackage (*.gpkg)")
        self.table_edit = QLineEdit("labels", self)
        form.addRow(self.existing_radio)
        form.addRow(tr("Labels layer"), self.target_combo)
        form.addRow(tr("Phrase field"), self.field_combo)
        form.addRow(self.new_radio)
        form.addRow(tr("GeoPackage"), self.gpkg_edit)
        form.addRow(tr("Layer name"), self.table_edit)
        layout.addLayout(form)
        self.message_label = QLabel(self)
        self.message_label.setWordWrap(True)
        layout.addWidget(self.message_label)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.buttons.accepted.connect(self.add)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        has_target = self.target_combo.currentLayer() is not None
        (self.existing_radio if has_target else self.new_radio).setChecked(True)
        self._on_target(self.target_combo.currentLayer())

    def _on_target(self, layer) -> None:
        self.field_combo.setLayer(layer)
        if layer is not None:
            index = layer.fields().indexFromName(PHRASE_FIELD)
            if index >= 0:
                self.field_combo.setField(PHRASE_FIELD)

    def checked_layers(self) -> list:
        layers = []
        for row in range(self.sources.count()):
            item = self.sources.item(row)
            layer = self.project.mapLayer(item.data(Qt.ItemDataRole.UserRole))
            if item.checkState() == Qt.CheckState.Checked and is_answer_layer(layer):
                layers.append(layer)
        return layers

    def add(self) -> None:
        """OK: add the checked answers; the dialog stays open with one sentence when it cannot."""
        sources = self.checked_layers()
        if not sources:
            self.message_label.setText(tr("Check at least one answer layer."))
            return
        try:
            if self.new_radio.isChecked():
                path = self.gpkg_edit.filePath().strip()
                if not path:
                    raise LabelsError(tr("Choose the GeoPackage file for the new labels layer."))
                target, field = (
                    new_labels_layer(path, self.table_edit.text(), sources[0].crs(), self.project),
                    PHRASE_FIELD,
                )
            else:
                target, field = self.target_combo.currentLayer(), self.field_combo.currentField()
                if target is None:
                    raise LabelsError(tr("Choose the labels layer."))
            self.outcome = add_answers_to_labels(sources, target, field, self.project.transformContext())
        except LabelsError as exc:
            self.message_label.setText(str(exc))
            return
        self.accept()
