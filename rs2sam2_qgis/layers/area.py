"""The area a run covers, from what the user chose in the panel, in the raster's CRS."""

from __future__ import annotations

from dataclasses import dataclass

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCoordinateTransformContext,
    QgsGeometry,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.gui import QgsMapCanvas
from qgis.PyQt.QtCore import QCoreApplication

from .raster_source import RasterSourceError, area_in_raster_crs

AREA_MAP_VIEW, AREA_WHOLE_LAYER, AREA_SELECTED, AREA_RECTANGLE = "view", "layer", "selected", "rectangle"


def tr(message: str) -> str:
    return QCoreApplication.translate("Area", message)


@dataclass
class AreaChoice:
    """What the panel says about the area; `resolve` turns it into a rectangle for one raster."""

    mode: str = AREA_MAP_VIEW
    polygons: QgsVectorLayer | None = None  # for AREA_SELECTED
    drawn: QgsRectangle | None = None  # for AREA_RECTANGLE, in drawn_crs
    drawn_crs: QgsCoordinateReferenceSystem | None = None

    def resolve(
        self, layer: QgsRasterLayer, canvas: QgsMapCanvas, context: QgsCoordinateTransformContext
    ) -> tuple[QgsRectangle | None, float | None]:
        """(the area in the raster's CRS, or None for the whole layer; map units per pixel of the view).

        The map's resolution matters for layers without pixels of their own (web maps): they are
        rendered at the resolution the map shows them at.
        """
        canvas_crs = canvas.mapSettings().destinationCrs()
        units_per_pixel = canvas.mapUnitsPerPixel() or None
        if units_per_pixel and canvas_crs.isValid() and canvas_crs != layer.crs():
            view = canvas.extent()
            moved = QgsCoordinateTransform(canvas_crs, layer.crs(), context).transformBoundingBox(view)
            units_per_pixel *= moved.width() / view.width()
        if self.mode == AREA_WHOLE_LAYER:
            return None, units_per_pixel
        if self.mode == AREA_MAP_VIEW:
            if canvas.mapSettings().outputSize().width() <= 0:
                raise RasterSourceError(tr("The map view has no size yet; choose another area."))
            return area_in_raster_crs(layer, canvas.extent(), canvas_crs, context), units_per_pixel
        if self.mode == AREA_SELECTED:
            # The request covers the bounding box of the selected polygons; `clip_geometry` trims
            # the answer to the polygons themselves.
            return area_in_raster_crs(
                layer, self.polygons.boundingBoxOfSelected(), self.polygons.crs(), context
            ), units_per_pixel
        return area_in_raster_crs(layer, self.drawn, self.drawn_crs, context), units_per_pixel

    def clip_geometry(
        self, layer: QgsRasterLayer, context: QgsCoordinateTransformContext
    ) -> QgsGeometry | None:
        """The union of the selected polygons in the raster's CRS (AREA_SELECTED), else None."""
        if self.mode != AREA_SELECTED or self.polygons is None:
            return None
        parts = [
            feature.geometry()
            for feature in self.polygons.getSelectedFeatures()
            if feature.hasGeometry() and not feature.geometry().isEmpty()
        ]
        if not parts:
            return None
        union = QgsGeometry.unaryUnion(parts)
        if self.polygons.crs() != layer.crs():
            union.transform(QgsCoordinateTransform(self.polygons.crs(), layer.crs(), context))
        return union.makeValid()
