"""Turn the backend's FeatureCollection into features of a layer named after the phrase.

A memory layer per phrase by default, or a layer per phrase inside the GeoPackage chosen in the
settings. Repeated runs with the same phrase append to the same layer. Nothing else is touched: an
existing GeoPackage only ever gains a new table or new rows in our own table.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsFields,
    QgsFillSymbol,
    QgsGeometry,
    QgsJsonUtils,
    QgsProject,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QCoreApplication

from ..qt_compat import new_field

PHRASE_PROPERTY = "rs2sam2/phrase"
MAX_LAYER_NAME = 60
OUTLINE_STYLE = {
    "style": "no",
    "outline_color": "255,215,0,255",
    "outline_width": "0.8",
    "outline_width_unit": "MM",
    "joinstyle": "round",
}


class ResultLayerError(Exception):
    """The result could not be stored; the message is for a person."""


def tr(message: str) -> str:
    return QCoreApplication.translate("ResultLayer", message)


def result_fields() -> QgsFields:
    """The attributes the engine returns for every feature (docs/service-api.md)."""
    fields = QgsFields()
    fields.append(new_field("phrase", "string"))
    fields.append(new_field("score", "double"))
    fields.append(new_field("area", "double"))
    fields.append(new_field("source", "string"))
    fields.append(new_field("model", "string"))
    fields.append(new_field("created", "string"))
    return fields


def collection_crs(collection: dict, fallback: QgsCoordinateReferenceSystem) -> QgsCoordinateReferenceSystem:
    """The CRS the answer's coordinates are in (they are the raster's; the answer says so)."""
    wkt = collection.get("crs_wkt")
    if wkt:
        crs = QgsCoordinateReferenceSystem.fromWkt(wkt)
        if crs.isValid():
            return crs
    name = ((collection.get("crs") or {}).get("properties") or {}).get("name")
    if name:
        crs = QgsCoordinateReferenceSystem(name)
        if crs.isValid():
            return crs
    return fallback


def features_from_collection(collection: dict, fields: QgsFields | None = None) -> list[QgsFeature]:
    """Features with multipolygon geometries and the result fields filled from `properties`."""
    fields = fields or result_fields()
    parsed = QgsJsonUtils.stringToFeatureList(
        json.dumps({"type": "FeatureCollection", "features": collection.get("features", [])}), fields
    )
    features = []
    for source in parsed:
        geometry = source.geometry()
        if geometry.isNull() or geometry.type() != QgsWkbTypes.PolygonGeometry:
            continue
        geometry.convertToMultiType()
        feature = QgsFeature(fields)
        feature.setGeometry(geometry)
        for name in fields.names():
            index = source.fields().indexFromName(name)
            if index >= 0:
                feature.setAttribute(name, source.attribute(index))
        features.append(feature)
    return features


def group_by_phrase(features: list[QgsFeature]) -> dict[str, list[QgsFeature]]:
    groups: dict[str, list[QgsFeature]] = {}
    for feature in features:
        groups.setdefault(str(feature["phrase"]), []).append(feature)
    return groups


def layer_name_for(phrase: str) -> str:
    name = " ".join(phrase.split())
    return name if len(name) <= MAX_LAYER_NAME else name[: MAX_LAYER_NAME - 1] + "…"


def table_name_for(phrase: str) -> str:
    """A GeoPackage table name: lowercase ASCII words joined by underscores."""
    name = re.sub(r"[^0-9a-z]+", "_", phrase.lower()).strip("_")[:MAX_LAYER_NAME] or "result"
    return name if not name[0].isdigit() else f"r_{name}"


@dataclass
class StoredResult:
    layer: QgsVectorLayer
    added: int
    created_layer: bool


def clip_features(features: list[QgsFeature], clip: QgsGeometry) -> list[QgsFeature]:
    """Each feature cut to `clip` (same CRS); features left empty are dropped. `area` shrinks in
    proportion, so it keeps the backend's meaning (m², geodesic in geographic CRSs)."""
    clipped = []
    for feature in features:
        geometry = feature.geometry()
        inside = geometry.intersection(clip)
        if QgsWkbTypes.flatType(inside.wkbType()) == QgsWkbTypes.GeometryCollection:
            inside.convertGeometryCollectionToSubclass(
                QgsWkbTypes.PolygonGeometry
            )  # drop touching lines/points
        if inside.isEmpty() or inside.type() != QgsWkbTypes.PolygonGeometry or inside.area() <= 0:
            continue
        if not inside.equals(geometry):
            inside.convertToMultiType()
            share = inside.area() / geometry.area() if geometry.area() > 0 else 1.0
            feature = QgsFeature(feature)
            feature.setGeometry(inside)
            area = feature["area"]
            if isinstance(area, int | float):
                feature["area"] = float(area) * share
        clipped.append(feature)
    return clipped


def store_collection(
    project: QgsProject,
    collection: dict,
    raster_crs: QgsCoordinateReferenceSystem,
    gpkg_path: str = "",
    clip: QgsGeometry | None = None,
) -> tuple[list[StoredResult], list[QgsFeature]]:
    """Every phrase's features into its layer (memory, or a table of `gpkg_path`); (results, features).

    `clip` (in `raster_crs`) keeps only the parts of the features inside it."""
    crs = collection_crs(collection, raster_crs)
    features = features_from_collection(collection)
    if clip is not None:
        if not same_crs(crs, raster_crs):
            clip = QgsGeometry(clip)
            clip.transform(QgsCoordinateTransform(raster_crs, crs, project.transformContext()))
        features = clip_features(features, clip)
    stored = []
    for phrase, group in group_by_phrase(features).items():
        if gpkg_path:
            stored.append(store_in_geopackage(project, gpkg_path, phrase, crs, group))
        else:
            stored.append(store_in_memory_layer(project, phrase, crs, group))
    return stored, features


def style_layer(layer: QgsVectorLayer) -> None:
    """A clear outline that reads over any imagery, no fill hiding the pixels."""
    symbol = QgsFillSymbol.createSimple(OUTLINE_STYLE)
    layer.renderer().setSymbol(symbol)
    layer.triggerRepaint()


def store_in_memory_layer(
    project: QgsProject, phrase: str, crs: QgsCoordinateReferenceSystem, features: list[QgsFeature]
) -> StoredResult:
    layer = _find_memory_layer(project, phrase, crs)
    created = layer is None
    if created:
        layer = QgsVectorLayer(
            f"MultiPolygon?crs={crs.authid() or 'wkt:' + crs.toWkt()}", layer_name_for(phrase), "memory"
        )
        if not crs.authid():
            layer.setCrs(crs)
        layer.dataProvider().addAttributes(result_fields().toList())
        layer.updateFields()
        layer.setCustomProperty(PHRASE_PROPERTY, phrase)
        style_layer(layer)
    _add(layer, features)
    if created:
        project.addMapLayer(layer)
    return StoredResult(layer, len(features), created)


def store_in_geopackage(
    project: QgsProject,
    gpkg_path: str,
    phrase: str,
    crs: QgsCoordinateReferenceSystem,
    features: list[QgsFeature],
) -> StoredResult:
    table = table_name_for(phrase)
    uri = f"{gpkg_path}|layername={table}"
    layer = _find_project_layer_by_source(project, gpkg_path, table)
    created_layer = False
    if layer is None:
        if not (os.path.isfile(gpkg_path) and table in _gpkg_tables(gpkg_path)):
            _create_gpkg_table(gpkg_path, table, crs)
        layer = QgsVectorLayer(uri, layer_name_for(phrase), "ogr")
        if not layer.isValid():
            raise ResultLayerError(tr("Could not open the layer “{}” in {}.").format(table, gpkg_path))
        missing = [n for n in result_fields().names() if layer.fields().indexFromName(n) < 0]
        if missing or not same_crs(layer.crs(), crs):
            raise ResultLayerError(
                tr(
                    "The GeoPackage {} already holds a layer “{}” with other fields or "
                    "another CRS; choose another GeoPackage in the settings."
                ).format(gpkg_path, table)
            )
        layer.setCustomProperty(PHRASE_PROPERTY, phrase)
        style_layer(layer)
        created_layer = True
    _add(layer, [_with_fields(f, layer.fields()) for f in features])
    if created_layer:
        project.addMapLayer(layer)
    return StoredResult(layer, len(features), created_layer)


def same_crs(a: QgsCoordinateReferenceSystem, b: QgsCoordinateReferenceSystem) -> bool:
    return a == b or (bool(a.authid()) and a.authid() == b.authid())


def _with_fields(feature: QgsFeature, fields: QgsFields) -> QgsFeature:
    """A copy laid out for the table's fields (a GeoPackage table has its own fid first)."""
    copy = QgsFeature(fields)
    copy.setGeometry(feature.geometry())
    for name in result_fields().names():
        copy.setAttribute(name, feature[name])
    return copy


def _add(layer: QgsVectorLayer, features: list[QgsFeature]) -> None:
    if not features:
        return
    ok, _ = layer.dataProvider().addFeatures(features)
    if not ok:
        raise ResultLayerError(
            tr("Could not add the features to “{}”: {}").format(
                layer.name(), "; ".join(layer.dataProvider().errors()[-1:]) or tr("unknown reason")
            )
        )
    layer.updateExtents()
    layer.triggerRepaint()


def _find_memory_layer(project: QgsProject, phrase: str, crs: QgsCoordinateReferenceSystem):
    for layer in project.mapLayers().values():
        if (
            isinstance(layer, QgsVectorLayer)
            and layer.providerType() == "memory"
            and layer.customProperty(PHRASE_PROPERTY) == phrase
            and same_crs(layer.crs(), crs)
        ):
            return layer
    return None


def _find_project_layer_by_source(project: QgsProject, gpkg_path: str, table: str):
    wanted = os.path.abspath(gpkg_path)
    for layer in project.mapLayers().values():
        if not isinstance(layer, QgsVectorLayer) or layer.providerType() != "ogr":
            continue
        path, _, options = layer.source().partition("|")
        if os.path.abspath(path) == wanted and f"layername={table}" in options.split("|"):
            return layer
    return None


def _gpkg_tables(gpkg_path: str) -> set[str]:
    probe = QgsVectorLayer(gpkg_path, "probe", "ogr")
    if not probe.isValid():
        raise ResultLayerError(tr("{} is not a GeoPackage that can be read.").format(gpkg_path))
    names = set()
    for sub in probe.dataProvider().subLayers():
        # "index!!::!!name!!::!!count!!::!!geometry type!!::!!…"
        parts = sub.split(
            QgsVectorLayer.subLayerSeparator() if hasattr(QgsVectorLayer, "subLayerSeparator") else "!!::!!"
        )
        if len(parts) > 1:
            names.add(parts[1])
    return names


def _create_gpkg_table(gpkg_path: str, table: str, crs: QgsCoordinateReferenceSystem) -> None:
    """A new empty table; a new file when there is none. Existing tables are never overwritten."""
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = table
    options.fileEncoding = "UTF-8"
    options.actionOnExistingFile = (
        QgsVectorFileWriter.CreateOrOverwriteLayer
        if os.path.isfile(gpkg_path)
        else QgsVectorFileWriter.CreateOrOverwriteFile
    )
    # CreateOrOverwriteLayer only runs for a table checked above not to exist.
    writer = QgsVectorFileWriter.create(
        gpkg_path,
        result_fields(),
        QgsWkbTypes.MultiPolygon,
        crs,
        QgsProject.instance().transformContext(),
        options,
    )
    error = writer.hasError()
    message = writer.errorMessage()
    del writer  # closes the file
    if error != QgsVectorFileWriter.NoError:
        raise ResultLayerError(
            tr("Could not create the layer “{}” in {}: {}").format(table, gpkg_path, message)
        )
