"""Fine-tuning and evaluation of RS2-SAM 2 (imports `backend`, never QGIS)."""
