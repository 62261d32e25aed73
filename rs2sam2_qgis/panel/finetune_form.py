"""The fine-tune dialog's form: the region (raster, labelled polygons and their phrase field), an optional
validation region, and one widget per training option of `training_contract.TRAINING_OPTIONS` shown in
the panel — labels, defaults, bounds, choices and tooltips all come from there; nothing is restated."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qgis.core import QgsFieldProxyModel, QgsMapLayerProxyModel
from qgis.gui import QgsFieldComboBox, QgsMapLayerComboBox
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from ..contract import PANEL
from ..training_contract import TRAINING_OPTION_BY_NAME, TRAINING_OPTIONS, TrainingOption

SPIN_MAX = 1_000_000_000
REGION_OPTIONS = ("phrase_field",)  # shown with the labels layer (a field of it), not as an option


def tr(message: str) -> str:
    return QCoreApplication.translate("FineTuneDialog", message)


def option_widget(option: TrainingOption, parent: QWidget) -> tuple[QWidget, Callable[[], Any]]:
    """A widget for one training option and the reader of its value (None: the option's default)."""
    tip = tr(option.describe())
    if option.kind == "bool":
        widget = QCheckBox(tr(option.label), parent)
        widget.setChecked(bool(option.default))
        reader: Callable[[], Any] = widget.isChecked
    elif option.kind == "choice":
        widget = QComboBox(parent)
        for value, label in option.choices:
            widget.addItem(tr(label), value)
        widget.setCurrentIndex(max(0, widget.findData(option.default)))
        reader = widget.currentData
    elif option.kind == "int":
        widget = QSpinBox(parent)
        low = option.minimum if option.minimum is not None else 0
        if option.default is None:  # the lowest value stands for "the default": say what that is
            widget.setRange(low - 1, SPIN_MAX)
            widget.setSpecialValueText(tr(option.default_text))
            widget.setValue(low - 1)
            reader = lambda w=widget, low=low: None if w.value() < low else w.value()  # noqa: E731
        else:
            widget.setRange(low, SPIN_MAX)
            widget.setValue(int(option.default))
            reader = widget.value
    elif option.name == "start_model":
        widget = QComboBox(parent)
        widget.setEditable(True)
        widget.lineEdit().setPlaceholderText(tr(option.default_text))
        reader = lambda w=widget: w.currentText().strip() or None  # noqa: E731
    else:
        widget = QLineEdit(parent)
        widget.setPlaceholderText(tr(option.default_text) if option.default_text else "")
        reader = lambda w=widget: w.text().strip() or None  # noqa: E731
    widget.setObjectName(f"option:{option.name}")
    widget.setToolTip(tip)
    return widget, reader


@dataclass
class RegionInputs:
    raster_combo: QgsMapLayerComboBox
    labels_combo: QgsMapLayerComboBox


@dataclass
class FineTuneForm:
    """The dialog's inputs: the region, the validation region (a checkable group) and the options."""

    region: RegionInputs
    field_combo: QgsFieldComboBox
    validation_box: QGroupBox
    validation: RegionInputs
    widgets: dict[str, QWidget] = field(default_factory=dict)
    readers: dict[str, Callable[[], Any]] = field(default_factory=dict)

    def params(self) -> dict[str, Any]:
        """The `params` of POST /train (TRAINING_OPTIONS' names), the phrase field included."""
        values = {name: read() for name, read in self.readers.items()}
        values["phrase_field"] = self.field_combo.currentField() or None
        return values

    def validated(self) -> bool:
        return self.validation_box.isChecked()


def _region(parent: QWidget, form: QFormLayout, what: str) -> RegionInputs:
    raster = QgsMapLayerComboBox(parent)
    raster.setFilters(QgsMapLayerProxyModel.RasterLayer)
    raster.setObjectName(f"{what}:raster")
    labels = QgsMapLayerComboBox(parent)
    labels.setFilters(QgsMapLayerProxyModel.PolygonLayer)
    labels.setObjectName(f"{what}:labels")
    labels.setToolTip(
        tr("Polygons with a phrase each: drawn by hand, or your corrected answers (Train ▸ Add the answers…)")
    )
    form.addRow(tr("Raster"), raster)
    form.addRow(tr("Labelled polygons"), labels)
    return RegionInputs(raster, labels)


def build_form(parent: QWidget) -> tuple[QWidget, FineTuneForm]:
    body = QWidget(parent)
    outer = QFormLayout(body)
    region_box = QGroupBox(tr("Your region"), body)
    region_form = QFormLayout(region_box)
    region = _region(region_box, region_form, "train")
    field_combo = QgsFieldComboBox(region_box)
    field_combo.setFilters(QgsFieldProxyModel.String)
    field_combo.setToolTip(tr(TRAINING_OPTION_BY_NAME["phrase_field"].describe()))
    region_form.addRow(tr(TRAINING_OPTION_BY_NAME["phrase_field"].label), field_combo)
    outer.addRow(region_box)
    validation_box = QGroupBox(tr("Validate on other labelled polygons (compare the models)"), body)
    validation_box.setCheckable(True)
    validation_box.setChecked(False)
    validation = _region(validation_box, QFormLayout(validation_box), "validation")
    outer.addRow(validation_box)
    form = FineTuneForm(region, field_combo, validation_box, validation)
    options_box = QGroupBox(tr("Training"), body)
    options_form = QFormLayout(options_box)
    for option in TRAINING_OPTIONS:
        if PANEL not in option.surfaces or option.name in REGION_OPTIONS:
            continue
        widget, reader = option_widget(option, options_box)
        form.widgets[option.name], form.readers[option.name] = widget, reader
        options_form.addRow("" if option.kind == "bool" else tr(option.label), widget)
    outer.addRow(options_box)
    return body, form
