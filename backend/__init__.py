"""RS2-SAM 2 backend: the model, the inference engine, the HTTP service and the CLI.

Never imports QGIS: this package runs in the project's own environment, on this machine or on a
GPU server elsewhere.
"""

__version__ = "0.1.0"
