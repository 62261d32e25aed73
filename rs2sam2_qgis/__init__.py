"""RS2-SAM 2 QGIS plugin: text → georeferenced polygon layer.

The plugin speaks Qt and QGIS only; it never imports torch. The model runs in the backend service
(`rs2sam2 serve`), which the plugin starts locally or reaches over HTTP.
"""


def classFactory(iface):  # noqa: N802 - the name QGIS looks for
    # Imported lazily so that QGIS's plugin scan stays cheap.
    from .plugin import RS2SAM2Plugin

    return RS2SAM2Plugin(iface)
