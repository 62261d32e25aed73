"""The inference engine: a georeferenced raster and phrases in, polygons in the raster's CRS out.

One engine for the CLI, the service and Python callers:

    from backend.engine.options import EngineOptions
    from backend.engine.segment import segment
    result = segment("scene.tif", ["the red roofs"], model, EngineOptions(keep="all"))
    result.features          # Feature(geometry, phrase, score, area, source, model, created)
    result.to_geojson()      # the service's FeatureCollection

Modules: `options` (parameters and defaults), `raster` (windowed reading, bands, stretch, nodata,
area, GSD), `tiling` (tiles and the cores kept when stitching), `predict` (one model call, with the
out-of-memory fallback), `vectorise` (tile cores → pieces → whole regions across seams), `features`
(georeferencing, simplify, min area, area in m², keep), `segment` (the run, in tiles or view mode),
`view_mode` with `context` (the whole area seen at once, the objects it names) and `refine` (their
outlines at full resolution), `writers` (GeoPackage/GeoJSON/Shapefile, probability GeoTIFF; atomic),
`distributed` (torchrun sharding), `cli` (`rs2sam2 segment`).
"""
