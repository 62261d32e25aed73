"""The training and evaluation options (`training_contract.TRAINING_OPTIONS`, `EVALUATION_OPTIONS`) as
Processing parameters, and their values back from a run: labels, defaults, bounds and help come from
the contract, stated nowhere else."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterField,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QCoreApplication

from ..contract import PROCESSING
from ..training_contract import TrainingOption

# Options a person rarely changes: under "Advanced parameters".
ADVANCED = ("seed", "overwrite")


def tr(message: str) -> str:
    return QCoreApplication.translate("TrainingParameters", message)


def parameter_name(option: TrainingOption) -> str:
    return option.name.upper()


def on_processing(options: tuple[TrainingOption, ...]) -> tuple[TrainingOption, ...]:
    return tuple(option for option in options if PROCESSING in option.surfaces)


def _description(option: TrainingOption) -> str:
    if option.kind in ("bool", "choice") or option.required:
        return tr(option.label)
    default = option.default_text if option.default is None else str(option.default)
    return f"{tr(option.label)} ({tr('default')}: {tr(default)})"


def processing_parameter(option: TrainingOption) -> QgsProcessingParameterDefinition:
    """The parameter of one option (a phrase field is `phrase_field_parameter`: it needs its layer)."""
    name, description = parameter_name(option), _description(option)
    if option.kind == "bool":
        parameter: QgsProcessingParameterDefinition = QgsProcessingParameterBoolean(
            name, description, defaultValue=bool(option.default)
        )
    elif option.kind == "choice":
        parameter = QgsProcessingParameterEnum(
            name,
            description,
            options=[tr(label) for _, label in option.choices],
            defaultValue=option.choice_values.index(option.default),
        )
    elif option.kind == "int":
        kwargs: dict[str, Any] = {"optional": option.default is None and not option.required}
        if option.default is not None:
            kwargs["defaultValue"] = option.default
        if option.minimum is not None:
            kwargs["minValue"] = option.minimum
        parameter = QgsProcessingParameterNumber(
            name, description, QgsProcessingParameterNumber.Integer, **kwargs
        )
    else:
        parameter = QgsProcessingParameterString(
            name, description, defaultValue=option.default, optional=not option.required
        )
    parameter.setHelp(tr(option.describe()))
    if option.name in ADVANCED:
        parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return parameter


def phrase_field_parameter(option: TrainingOption, layer_parameter: str) -> QgsProcessingParameterField:
    """The labels' phrase field, chosen among the fields of `layer_parameter` (unset: the default)."""
    parameter = QgsProcessingParameterField(
        parameter_name(option),
        tr(option.label),
        defaultValue=option.default,
        parentLayerParameterName=layer_parameter,
        optional=True,  # QGIS 3.22 refuses a missing value of a required field parameter despite its default
    )
    parameter.setHelp(tr(option.describe()))
    return parameter


def processing_value(algorithm, option: TrainingOption, parameters: dict, context) -> Any:
    """An option's value from a run's parameters; None where an optional one is unset (the backend's
    default then applies)."""
    name = parameter_name(option)
    if option.kind == "bool":
        return algorithm.parameterAsBoolean(parameters, name, context)
    if option.kind == "choice":
        return option.choice_values[algorithm.parameterAsEnum(parameters, name, context)]
    value = parameters.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if option.kind == "int":
        return algorithm.parameterAsInt(parameters, name, context)
    if option.name == "phrase_field":
        return (algorithm.parameterAsFields(parameters, name, context) or [None])[0]
    return algorithm.parameterAsString(parameters, name, context).strip() or None


def params_from(algorithm, options: tuple[TrainingOption, ...], parameters: dict, context) -> dict[str, Any]:
    """The `params` JSON of POST /train or /evaluate: every option set, unset ones left out."""
    values = {option.name: processing_value(algorithm, option, parameters, context) for option in options}
    return {name: value for name, value in values.items() if value is not None}
