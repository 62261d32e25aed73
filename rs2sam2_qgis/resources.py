"""Where the plugin's static files are, in the installed zip and in a source checkout."""

from __future__ import annotations

from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent
LOG_TAG = "RS2-SAM2"
SETTINGS_PREFIX = "rs2sam2"


def icon_path(name: str) -> str:
    """Path of an SVG icon: `icons/` inside the plugin folder (zip) or at the repository root."""
    for base in (PLUGIN_DIR / "icons", PLUGIN_DIR.parent / "icons"):
        candidate = base / name
        if candidate.exists():
            return str(candidate)
    return ""
