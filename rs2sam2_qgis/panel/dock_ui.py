"""The panel's widgets, built in small groups; `dock.SegmentDock` wires them to behaviour.

Each builder returns a plain holder of the widgets it made, so the panel reads like its layout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qgis.core import QgsMapLayerProxyModel
from qgis.gui import QgsCollapsibleGroupBox, QgsMapLayerComboBox
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..contract import PANEL, options_on
from ..layers.area import AREA_MAP_VIEW, AREA_RECTANGLE, AREA_SELECTED, AREA_WHOLE_LAYER
from ..resources import icon_path
from .option_forms import option_widget


def tr(message: str) -> str:
    return QCoreApplication.translate("SegmentDock", message)


@dataclass
class BackendRow:
    label: QLabel
    check_button: QToolButton
    start_button: QToolButton
    settings_button: QToolButton
    train_button: QToolButton  # its menu: fine-tune, answers to labels (training_actions)


@dataclass
class SetupRow:
    """The first-run set-up: what is missing, the button, and its progress while it runs."""

    frame: QFrame
    label: QLabel
    setup_button: QPushButton
    progress_bar: QProgressBar
    cancel_button: QPushButton
    log_button: QToolButton


@dataclass
class SourceForm:
    layer_combo: QgsMapLayerComboBox
    phrase_combo: QComboBox
    area_combo: QComboBox
    polygon_label: QLabel
    polygon_combo: QgsMapLayerComboBox
    draw_button: QPushButton
    draw_label: QLabel


@dataclass
class OptionInputs:
    """The panel's option widgets (one per contract option shown in the panel) and their readers."""

    box: QgsCollapsibleGroupBox
    widgets: dict[str, QWidget] = field(default_factory=dict)
    readers: dict[str, Callable[[], Any]] = field(default_factory=dict)

    def values(self) -> dict[str, Any]:
        return {name: read() for name, read in self.readers.items()}


@dataclass
class RunRow:
    run_button: QPushButton
    cancel_button: QPushButton
    progress_bar: QProgressBar
    status_label: QLabel


def _tool_button(parent: QWidget, text: str, tip: str) -> QToolButton:
    button = QToolButton(parent)
    button.setText(text)
    button.setToolTip(tip)
    return button


def build_backend_row(parent: QWidget, layout: QVBoxLayout) -> BackendRow:
    label = QLabel(tr("Backend: not checked"), parent)
    label.setWordWrap(True)
    check = _tool_button(parent, tr("Check"), tr("Ask the backend whether it is there"))
    start = _tool_button(
        parent, tr("Start local"), tr("Start the backend on this machine with the configured Python")
    )
    settings = _tool_button(parent, "", tr("Backend and output settings"))
    settings.setIcon(QIcon(icon_path("settings.svg")))
    train = _tool_button(parent, tr("Train"), tr("Fine-tune a model on your own region, or make labels"))
    train.setObjectName("RS2SAM2TrainButton")
    row = QHBoxLayout()
    row.addWidget(label, 1)
    for button in (check, start, train, settings):
        row.addWidget(button)
    layout.addLayout(row)
    return BackendRow(label, check, start, settings, train)


def build_setup_row(parent: QWidget, layout: QVBoxLayout) -> SetupRow:
    frame = QFrame(parent)
    frame.setObjectName("RS2SAM2SetupRow")
    frame.setFrameShape(QFrame.Shape.StyledPanel)
    box = QVBoxLayout(frame)
    label = QLabel(frame)
    label.setWordWrap(True)
    box.addWidget(label)
    setup_button = QPushButton(QIcon(icon_path("rs2sam2.svg")), tr("Set up the local backend"), frame)
    setup_button.setToolTip(
        tr(
            "Install the model backend into its own Python environment on this computer (once; "
            "a few GB, several minutes). QGIS's own Python is not touched."
        )
    )
    box.addWidget(setup_button)
    progress_row = QHBoxLayout()
    progress_bar = QProgressBar(frame)
    progress_bar.setRange(0, 100)
    cancel_button = QPushButton(tr("Cancel"), frame)
    log_button = _tool_button(frame, tr("Log"), tr("Show everything the set-up said"))
    progress_row.addWidget(progress_bar, 1)
    progress_row.addWidget(cancel_button)
    progress_row.addWidget(log_button)
    box.addLayout(progress_row)
    layout.addWidget(frame)
    frame.hide()
    return SetupRow(frame, label, setup_button, progress_bar, cancel_button, log_button)


def build_source_form(parent: QWidget, layout: QVBoxLayout) -> SourceForm:
    form = QFormLayout()
    layer_combo = QgsMapLayerComboBox(parent)
    layer_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
    layer_combo.setAllowEmptyLayer(True)
    form.addRow(tr("Raster layer"), layer_combo)

    phrase_combo = QComboBox(parent)
    phrase_combo.setEditable(True)
    phrase_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
    phrase_combo.lineEdit().setPlaceholderText(tr("Describe the object, e.g. the large white building"))
    phrase_combo.setToolTip(tr("What to find; Enter runs. Earlier phrases are in the list."))
    form.addRow(tr("Phrase"), phrase_combo)

    area_combo = QComboBox(parent)
    area_combo.addItem(tr("Current map view"), AREA_MAP_VIEW)
    area_combo.addItem(tr("Whole layer"), AREA_WHOLE_LAYER)
    area_combo.addItem(tr("Selected polygons of a layer"), AREA_SELECTED)
    area_combo.addItem(tr("Rectangle drawn on the map"), AREA_RECTANGLE)
    form.addRow(tr("Area"), area_combo)
    polygon_combo = QgsMapLayerComboBox(parent)
    polygon_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
    polygon_label = QLabel(tr("Polygons from"), parent)
    form.addRow(polygon_label, polygon_combo)
    draw_button = QPushButton(tr("Draw rectangle"), parent)
    draw_label = QLabel("", parent)
    form.addRow(draw_button, draw_label)
    layout.addLayout(form)
    return SourceForm(
        layer_combo, phrase_combo, area_combo, polygon_label, polygon_combo, draw_button, draw_label
    )


def build_option_inputs(parent: QWidget, layout: QVBoxLayout) -> OptionInputs:
    box = QgsCollapsibleGroupBox(tr("Options"), parent)
    form = QFormLayout(box)
    inputs = OptionInputs(box)
    for option in options_on(PANEL):
        widget, reader = option_widget(option, box)
        form.addRow(tr(option.label), widget)
        inputs.widgets[option.name] = widget
        inputs.readers[option.name] = reader
    layout.addWidget(box)
    return inputs


def build_run_row(parent: QWidget, layout: QVBoxLayout) -> RunRow:
    buttons = QHBoxLayout()
    run_button = QPushButton(QIcon(icon_path("rs2sam2.svg")), tr("Run"), parent)
    cancel_button = QPushButton(tr("Cancel"), parent)
    cancel_button.setEnabled(False)
    buttons.addWidget(run_button)
    buttons.addWidget(cancel_button)
    layout.addLayout(buttons)
    progress_bar = QProgressBar(parent)
    progress_bar.setRange(0, 100)
    progress_bar.setValue(0)
    layout.addWidget(progress_bar)
    status_label = QLabel(parent)
    status_label.setWordWrap(True)
    layout.addWidget(status_label)
    return RunRow(run_button, cancel_button, progress_bar, status_label)
