"""The product's main job on the bundled demo model and sample scene (`rs2sam2 demo`, `cli.py`),
and its PNG preview (`preview.py`). Where the bundled files are: `backend.bundled`."""
