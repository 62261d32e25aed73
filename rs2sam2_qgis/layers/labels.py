"""From answers to labels: the panel's result layers (one per phrase, after the person corrected or
deleted polygons with QGIS's editing tools) become training labels in a polygon layer of their choice.

A labels layer is any polygon layer with a text field holding each polygon's phrase (the fine-tune
dialog reads it directly, so one drawn by hand works too). The features are reprojected to the labels
layer's CRS; those without a phrase (or without a polygon) are skipped and counted. Everything is added
in one edit that is committed at once — or rolled back whole, so nothing is half-written. A labels layer
that is being edited is not touched: the person saves or discards their own edits first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from qgis.core import (
    QgsCoordinateTransform,
    QgsCoordinateTransformContext,
    QgsCsException,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsProject,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QCoreApplication

from ..qt_compat import new_field
from .result_layer import PHRASE_PROPERTY

PHRASE_FIELD = "phrase"  # the field of a new labels layer (the fine-tune dialog's default)


class LabelsError(Exception):
    """The labels could not be written; one sentence for a person."""


def tr(message: str) -> str:
    return QCoreApplication.translate("Labels", message)


@dataclass(frozen=True)
class LabelsOutcome:
    layer: QgsVectorLayer
    added: int
    no_phrase: int  # skipped: the phrase was missing or blank
    no_polygon: int  # skipped: no geometry, an empty one, or one that is not a polygon

    def summary(self) -> str:
        text = tr("{} labelled polygon(s) added to “{}”").format(self.added, self.layer.name())
        skipped = []
        if self.no_phrase:
            skipped.append(tr("{} without a phrase").format(self.no_phrase))
        if self.no_polygon:
            skipped.append(tr("{} without a polygon").format(self.no_polygon))
        return text + (tr("; skipped: {}").format(", ".join(skipped)) if skipped else "") + "."


def is_answer_layer(layer) -> bool:
    """A layer the panel made for a phrase (memory or GeoPackage): it carries the phrase property."""
    return isinstance(layer, QgsVectorLayer) and bool(layer.customProperty(PHRASE_PROPERTY))


def answer_layers(project: QgsProject) -> list[QgsVectorLayer]:
    return [layer for layer in project.mapLayers().values() if is_answer_layer(layer)]


def is_polygon_layer(layer) -> bool:
    return isinstance(layer, QgsVectorLayer) and layer.geometryType() == QgsWkbTypes.PolygonGeometry


def text_fields(layer: QgsVectorLayer) -> list[str]:
    """The layer's text fields: where phrases can be."""
    return [field.name() for field in layer.fields() if _is_text(field)]


def _is_text(field: QgsField) -> bool:
    return field.typeName().lower() in ("string", "text", "varchar") or "str" in field.typeName().lower()


def labels_problem(layer, phrase_field: str) -> str | None:
    """Why `layer` cannot take (or give) labels with phrases in `phrase_field`; None when it can."""
    if not is_polygon_layer(layer):
        return tr("Choose a polygon layer for the labels.")
    if not phrase_field or layer.fields().indexFromName(phrase_field) < 0:
        return tr("“{}” has no field “{}” for the phrases.").format(layer.name(), phrase_field)
    if not _is_text(layer.fields().field(phrase_field)):
        return tr("The field “{}” of “{}” is not a text field.").format(phrase_field, layer.name())
    return None


def phrase_of(feature: QgsFeature, layer: QgsVectorLayer) -> str:
    """The feature's phrase: its `phrase` field, else its layer's phrase (a layer made for one phrase)."""
    if layer.fields().indexFromName(PHRASE_FIELD) >= 0:
        value = feature[PHRASE_FIELD]
        return " ".join(str(value).split()) if value not in (None, "") and not _is_null(value) else ""
    return " ".join(str(layer.customProperty(PHRASE_PROPERTY) or "").split())


def _is_null(value) -> bool:
    return hasattr(value, "isNull") and value.isNull()


def labelled_features(
    sources: list[QgsVectorLayer],
    target: QgsVectorLayer,
    phrase_field: str,
    context: QgsCoordinateTransformContext,
) -> tuple[list[QgsFeature], int, int]:
    """The sources' features as features of `target` (its CRS and geometry type, the phrase in
    `phrase_field`); (features, without a phrase, without a polygon)."""
    features, no_phrase, no_polygon = [], 0, 0
    for source in sources:
        transform = QgsCoordinateTransform(source.crs(), target.crs(), context)
        for feature in source.getFeatures():
            phrase = phrase_of(feature, source)
            if not phrase:
                no_phrase += 1
                continue
            parts = _target_geometries(feature.geometry(), transform, target)
            if not parts:
                no_polygon += 1
                continue
            for geometry in parts:
                label = QgsFeature(target.fields())
                label.setGeometry(geometry)
                label[phrase_field] = phrase
                features.append(label)
    return features, no_phrase, no_polygon


def _target_geometries(
    geometry: QgsGeometry, transform: QgsCoordinateTransform, target: QgsVectorLayer
) -> list[QgsGeometry]:
    if geometry is None or geometry.isNull() or geometry.isEmpty():
        return []
    if geometry.type() != QgsWkbTypes.PolygonGeometry:
        return []
    geometry = QgsGeometry(geometry)
    if not transform.isShortCircuited():
        try:
            geometry.transform(transform)
        except QgsCsException as exc:
            raise LabelsError(
                tr("A polygon could not be reprojected to the labels' CRS ({}).").format(exc)
            ) from None
    return [part for part in geometry.coerceToType(target.wkbType()) if not part.isEmpty()]


def add_answers_to_labels(
    sources: list[QgsVectorLayer],
    target: QgsVectorLayer,
    phrase_field: str = PHRASE_FIELD,
    context: QgsCoordinateTransformContext | None = None,
) -> LabelsOutcome:
    """Add every feature of `sources` with its phrase to `target` in one committed edit (LabelsError
    when it cannot; then `target` is as it was)."""
    problem = labels_problem(target, phrase_field)
    if problem:
        raise LabelsError(problem)
    if target.isEditable():
        raise LabelsError(
            tr("“{}” is being edited: save or discard its edits first, then add the answers again.").format(
                target.name()
            )
        )
    if any(source.id() == target.id() for source in sources):
        raise LabelsError(tr("The labels layer cannot be one of the answer layers."))
    context = context or QgsProject.instance().transformContext()
    features, no_phrase, no_polygon = labelled_features(sources, target, phrase_field, context)
    if features:
        _commit(target, features)
    return LabelsOutcome(target, len(features), no_phrase, no_polygon)


def _commit(target: QgsVectorLayer, features: list[QgsFeature]) -> None:
    """One edit: all the features or none."""
    if not target.startEditing():
        raise LabelsError(tr("“{}” cannot be edited (it is read-only).").format(target.name()))
    added = target.addFeatures(features)
    if added and target.commitChanges():
        target.updateExtents()
        target.triggerRepaint()
        return
    errors = "; ".join(target.commitErrors()[-2:]) if added else tr("the features were refused")
    target.rollBack()
    raise LabelsError(
        tr("Nothing was added to “{}”: {}").format(target.name(), errors or tr("unknown reason"))
    )


def labels_fields() -> QgsFields:
    fields = QgsFields()
    fields.append(new_field(PHRASE_FIELD, "string"))
    return fields


def new_labels_layer(gpkg_path: str, table: str, crs, project: QgsProject | None = None) -> QgsVectorLayer:
    """A new, empty labels table (MultiPolygon, a `phrase` text field) in a GeoPackage (the file is
    made when missing; an existing table is never overwritten), added to the project."""
    from .result_layer import _gpkg_tables

    table = table.strip()
    if not table:
        raise LabelsError(tr("Give the new labels layer a name."))
    if not gpkg_path.lower().endswith(".gpkg"):
        gpkg_path += ".gpkg"
    exists = os.path.isfile(gpkg_path)
    if exists and table in _gpkg_tables(gpkg_path):
        raise LabelsError(
            tr("{} already holds a layer “{}”; choose it as an existing layer or give another name.").format(
                gpkg_path, table
            )
        )
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName, options.layerName, options.fileEncoding = "GPKG", table, "UTF-8"
    options.actionOnExistingFile = (
        QgsVectorFileWriter.CreateOrOverwriteLayer if exists else QgsVectorFileWriter.CreateOrOverwriteFile
    )
    project = project or QgsProject.instance()
    writer = QgsVectorFileWriter.create(
        gpkg_path, labels_fields(), QgsWkbTypes.MultiPolygon, crs, project.transformContext(), options
    )
    error, message = writer.hasError(), writer.errorMessage()
    del writer  # closes the file
    if error != QgsVectorFileWriter.NoError:
        raise LabelsError(tr("Could not create the labels layer in {}: {}").format(gpkg_path, message))
    layer = QgsVectorLayer(f"{gpkg_path}|layername={table}", table, "ogr")
    if not layer.isValid():
        raise LabelsError(tr("Could not open the new labels layer “{}” in {}.").format(table, gpkg_path))
    project.addMapLayer(layer)
    return layer
