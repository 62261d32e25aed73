"""The contract's segment options as QGIS forms: Processing parameters and the panel's widgets.

Ranges, defaults, labels and tooltips come from `contract.OPTIONS`; nothing is restated here but how
each kind of option looks in Qt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qgis.core import (
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtWidgets import QComboBox, QDoubleSpinBox, QSpinBox, QWidget

from ..contract import Option

UI_MAX = 1e12  # the largest value a spin box offers for an option the contract leaves unbounded
FLOAT_DECIMALS = {"probability": 2}  # decimals of a float spin box by unit (default 2)


def tr(message: str) -> str:
    return QCoreApplication.translate("RS2SAM2Options", message)


def parameter_name(option: Option) -> str:
    """THRESHOLD, TILE_SIZE, …: the Processing parameter (and `qgis_process` argument) of an option."""
    return option.name.upper()


def processing_parameter(option: Option) -> QgsProcessingParameterDefinition:
    name, label = parameter_name(option), tr(option.label)
    if option.kind == "choice":
        labels = [tr(text) for _, text in _choices(option)]
        parameter = QgsProcessingParameterEnum(
            name, label, options=labels, defaultValue=choice_index(option, option.default)
        )
        parameter.setHelp(tr(option.describe()))
        return parameter
    unit = f"{option.unit}; " if option.unit and option.unit != "probability" else ""
    description = f"{label} ({unit}{tr('default')}: {tr(option.describe_default())})"
    number_type = (
        QgsProcessingParameterNumber.Integer if option.kind == "int" else QgsProcessingParameterNumber.Double
    )
    kwargs: dict[str, Any] = {"optional": option.default is None}
    if option.default is not None:
        kwargs["defaultValue"] = option.default
    if option.minimum is not None:
        kwargs["minValue"] = option.minimum
    if option.maximum is not None:
        kwargs["maxValue"] = option.maximum
    parameter = QgsProcessingParameterNumber(name, description, number_type, **kwargs)
    parameter.setHelp(tr(option.describe()))
    return parameter


def processing_value(algorithm, option: Option, parameters: dict, context) -> Any:
    """An option's value from a Processing run's parameters (None where an optional one is unset)."""
    name = parameter_name(option)
    if option.kind == "choice":
        return _choices(option)[algorithm.parameterAsEnum(parameters, name, context)][0]
    value = parameters.get(name)
    if option.default is None and (value is None or value == ""):
        return None
    if option.kind == "int":
        return algorithm.parameterAsInt(parameters, name, context)
    return algorithm.parameterAsDouble(parameters, name, context)


def option_widget(option: Option, parent: QWidget) -> tuple[QWidget, Callable[[], Any]]:
    """A widget for the panel and a function reading the option's value from it.

    Optional numbers show "default" at their lowest value, which means "the engine's default".
    """
    if option.kind == "choice":
        combo = QComboBox(parent)
        for value, text in _choices(option):
            combo.addItem(tr(text[0].upper() + text[1:]), value)
        combo.setCurrentIndex(choice_index(option, option.default))
        combo.setToolTip(tr(option.help))
        # Long entries are elided rather than widening the dock.
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(14)
        return combo, combo.currentData
    if option.kind == "int":
        spin: QSpinBox | QDoubleSpinBox = QSpinBox(parent)
        step = 1
        spin.setRange(int(_low(option, step)), int(min(_high(option, step), 2**31 - 1)))
    else:
        spin = QDoubleSpinBox(parent)
        decimals = FLOAT_DECIMALS.get(option.unit, 2)
        step = 10.0**-decimals
        spin.setDecimals(decimals)
        spin.setRange(_low(option, step), _high(option, step))
        spin.setSingleStep(0.05 if option.unit == "probability" else 1.0)
    spin.setToolTip(tr(option.describe()))
    if option.default is None:
        spin.setSpecialValueText(tr("default"))
        spin.setValue(spin.minimum())
        return spin, lambda: (spin.value() if spin.value() != spin.minimum() else None)
    spin.setValue(option.default)
    return spin, lambda: round(spin.value(), 6)


def _choices(option: Option) -> list[tuple[str | None, str]]:
    """(value, label) of a choice as forms offer it. A choice whose default the engine decides (e.g.
    context, by keep) gets a first entry of its own for that, with the value None."""
    if option.default is None:
        return [(None, option.default_choice_label), *option.choices]
    return list(option.choices)


def choice_index(option: Option, value: str | None) -> int:
    """The position of `value` among a choice's form entries (`_choices`)."""
    return [entry for entry, _ in _choices(option)].index(value)


def _low(option: Option, step: float) -> float:
    if option.minimum is None:
        return 0.0
    return option.minimum + (step if option.min_exclusive else 0.0)


def _high(option: Option, step: float) -> float:
    if option.maximum is None:
        return UI_MAX
    return option.maximum - (step if option.max_exclusive else 0.0)
