"""The plugin's settings: one dataclass, stored in QgsSettings under one prefix.

Everything the user can configure lives here (the settings dialog edits it, the dock and the
Processing algorithm read it), so no other module reads QgsSettings keys directly.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

from qgis.core import QgsSettings

from .contract import DEFAULT_HOST, DEFAULT_PORT
from .resources import PLUGIN_DIR, SETTINGS_PREFIX

SEND_MODES = ("auto", "path", "upload")  # how a file-based raster travels to the backend
HISTORY_LENGTH = 20


def checkout_root() -> Path | None:
    """The repository root when the plugin runs from a source checkout (it holds `backend/`)."""
    root = PLUGIN_DIR.parent
    return root if (root / "backend" / "cli.py").is_file() else None


def default_python() -> str:
    """The project's `.venv` Python when running from a checkout, else the Python on PATH."""
    root = checkout_root()
    if root is not None and (root / ".venv" / "bin" / "python").exists():
        return str(root / ".venv" / "bin" / "python")
    if sys.platform.startswith("win"):
        return "python"
    return "python3"


DEMO_CHECKPOINT = Path("backend") / "demo" / "assets" / "rs2sam2-demo.safetensors"  # inside a checkout


def default_checkpoint() -> str:
    """The bundled demo model when running from a checkout that has it; else none (the preset decides)."""
    root = checkout_root()
    if root is not None and (root / DEMO_CHECKPOINT).is_file():
        return str(root / DEMO_CHECKPOINT)
    return ""


@dataclass
class PluginSettings:
    # Where the backend is. When start_local is on, the plugin launches it and server_url is ignored.
    server_url: str = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
    token: str = ""
    start_local: bool = False
    # The local backend: `<python> -m backend.cli serve --checkpoint C` (or `--preset P`; neither: the
    # backend's default model).
    python_path: str = field(default_factory=default_python)
    working_dir: str = field(default_factory=lambda: str(checkout_root() or ""))
    preset: str = ""
    checkpoint: str = field(default_factory=default_checkpoint)
    local_port: int = 0  # 0: pick a free port on each start
    # The local backend may read rasters by path under this folder (the filesystem root by default:
    # only the plugin holds its token). Empty: it only takes uploads.
    local_allow_path: str = field(default_factory=lambda: Path.home().anchor or "/")
    startup_timeout_s: int = 120
    # What is sent: "auto" sends a file path when the backend says it accepts paths and runs on this
    # machine (loopback URL), otherwise a GeoTIFF of the requested area.
    send_mode: str = "auto"
    # Results: empty means a memory layer per phrase; a path means layers appended to that GeoPackage.
    output_gpkg: str = ""
    request_timeout_s: int = 60
    phrase_history: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, store: QgsSettings | None = None) -> PluginSettings:
        store = store or QgsSettings()
        values = {}
        defaults = cls()
        for f in fields(cls):
            default = getattr(defaults, f.name)
            key = f"{SETTINGS_PREFIX}/{f.name}"
            if not store.contains(key):
                values[f.name] = default
                continue
            raw = store.value(key)
            values[f.name] = _coerce(raw, default)
        settings = cls(**values)
        if settings.send_mode not in SEND_MODES:
            settings.send_mode = "auto"
        return settings

    def save(self, store: QgsSettings | None = None) -> None:
        store = store or QgsSettings()
        for f in fields(self):
            value = getattr(self, f.name)
            store.setValue(f"{SETTINGS_PREFIX}/{f.name}", value)
        store.sync()

    def remember_phrase(self, phrase: str) -> None:
        """Most recent first, no duplicates, bounded."""
        phrase = phrase.strip()
        if not phrase:
            return
        self.phrase_history = [phrase] + [p for p in self.phrase_history if p != phrase]
        del self.phrase_history[HISTORY_LENGTH:]

    def backend_command(self, port: int) -> tuple[str, list[str]]:
        """Program and arguments that start the local backend on 127.0.0.1:port."""
        args = ["-m", "backend.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
        if self.local_allow_path.strip():
            args += ["--allow-path", self.local_allow_path.strip()]
        if self.checkpoint.strip():
            args += ["--checkpoint", self.checkpoint.strip()]
        elif self.preset.strip():
            args += ["--preset", self.preset.strip()]
        return self.python_path, args


def _coerce(raw, default):
    """QSettings hands back strings from INI files; turn them back into the default's type."""
    if isinstance(default, bool):
        if isinstance(raw, str):
            return raw.strip().lower() in ("true", "1", "yes")
        return bool(raw)
    if isinstance(default, int):
        try:
            return int(raw)
        except (TypeError, ValueError):
            return default
    if isinstance(default, list):
        if raw is None:
            return []
        if isinstance(raw, str):
            return [raw] if raw else []
        return [str(item) for item in raw]
    return "" if raw is None else str(raw)
