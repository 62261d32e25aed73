"""The plugin's settings: one dataclass, stored in QgsSettings under one prefix.

Everything the user can configure lives here (the settings dialog edits it, the dock and the
Processing algorithm read it), so no other module reads QgsSettings keys directly. The one secret, the
remote backend's access token, is not here: it lives in QGIS's authentication database and the
settings keep only the id of its auth config (`auth_token`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from qgis.core import QgsApplication, QgsSettings

from .auth_token import read_token, store_token
from .contract import DEFAULT_HOST, DEFAULT_PORT, PRECISIONS
from .resources import PLUGIN_DIR, SETTINGS_PREFIX
from .setup.backend_env import EnvLayout

SEND_MODES = ("auto", "path", "upload")  # how a file-based raster travels to the backend
HISTORY_LENGTH = 20


def checkout_root() -> Path | None:
    """The repository root when the plugin runs from a source checkout (it holds `backend/`)."""
    root = PLUGIN_DIR.parent
    return root if (root / "backend" / "cli.py").is_file() else None


def default_python() -> str:
    """The project's `.venv` Python when running from a checkout; else empty: the environment the
    plugin's first-run set-up makes (`backend_env`)."""
    root = checkout_root()
    if root is not None and (root / ".venv" / "bin" / "python").exists():
        return str(root / ".venv" / "bin" / "python")
    return ""


def default_setup_folder() -> Path:
    """Where the first-run set-up puts the backend's environment: `rs2sam2/` in the QGIS profile's folder."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "rs2sam2"


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
    # The server's access token lives in QGIS's authentication database: `auth_config` is the id of the
    # auth config holding it. `token` is only ever in memory: save() moves a new one into that config.
    auth_config: str = ""
    token: str = field(default="", metadata={"secret": True})
    start_local: bool = False
    # Processing may start the local backend itself when no backend answers.
    allow_local: bool = True
    # The local backend: `<python> -m backend.cli serve --model NAME` (one of the person's own models,
    # chosen in the model manager or by "Use this model" after fine-tuning; it wins over the other two),
    # else `--checkpoint C`, else `--preset P`; none: the backend's default model. Empty python: the
    # environment of the first-run set-up.
    python_path: str = field(default_factory=default_python)
    working_dir: str = field(default_factory=lambda: str(checkout_root() or ""))
    preset: str = ""
    checkpoint: str = field(default_factory=default_checkpoint)
    model_name: str = ""
    local_port: int = 0  # 0: pick a free port on each start
    # The local backend may read rasters by path under this folder (the filesystem root by default:
    # only the plugin holds its token). Empty: it only takes uploads.
    local_allow_path: str = field(default_factory=lambda: Path.home().anchor or "/")
    # How the local backend computes: `serve --precision` (auto: the backend picks; fp32, bf16 — CPUs
    # with native bf16 and GPUs only —, int8 and openvino on the CPU) and `--threads` (0: the backend's
    # default, one per physical core). Defaults are left off the command, so an older backend still starts.
    local_precision: str = "auto"
    local_threads: int = 0
    # The first start after the set-up imports torch without bytecode yet: minutes on a slow machine.
    startup_timeout_s: int = 300
    # What is sent: "auto" sends a file path when the backend says it accepts paths and runs on this
    # machine (loopback URL), otherwise a GeoTIFF of the requested area.
    send_mode: str = "auto"
    # Results: empty means a memory layer per phrase; a path means layers appended to that GeoPackage.
    output_gpkg: str = ""
    request_timeout_s: int = 60
    phrase_history: list[str] = field(default_factory=list)
    # The first-run set-up (setup_steps): folder (empty: default_setup_folder()), the Python that builds
    # the environment (empty: found automatically), torch build, and a wheel folder for offline installs.
    setup_folder: str = ""
    setup_python: str = ""
    torch_build: str = "auto"
    torch_index_url: str = ""
    wheel_folder: str = ""
    # The model manager: the weights cache (RS2SAM2_CACHE; empty: the backend's default), a mirror of the
    # official download sites, and the user's own trained .safetensors files.
    weights_cache: str = ""
    download_mirror: str = ""
    user_models: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, store: QgsSettings | None = None) -> PluginSettings:
        store = store or QgsSettings()
        values = {}
        defaults = cls()
        for f in fields(cls):
            if f.metadata.get("secret"):
                continue
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
        if settings.local_precision not in PRECISIONS:
            settings.local_precision = "auto"
        settings.local_threads = max(0, settings.local_threads)
        return settings

    def save(self, store: QgsSettings | None = None) -> None:
        """Write the settings; a token set in memory goes to the auth database (AuthError if it cannot)."""
        if self.token.strip():
            self.auth_config = store_token(self.token.strip(), self.auth_config)
            self.token = ""
        store = store or QgsSettings()
        for f in fields(self):
            if f.metadata.get("secret"):
                continue
            value = getattr(self, f.name)
            store.setValue(f"{SETTINGS_PREFIX}/{f.name}", value)
        store.remove(LEGACY_TOKEN_KEY)  # older versions kept the token here in plain text
        store.sync()

    def remote_token(self) -> str:
        """The server's access token: from memory, else from the auth database (AuthError if unreadable)."""
        if self.token.strip():
            return self.token.strip()
        return read_token(self.auth_config)

    # -- the local backend -----------------------------------------------------------------------
    def setup_layout(self) -> EnvLayout:
        return EnvLayout(Path(self.setup_folder.strip() or default_setup_folder()))

    @property
    def uses_setup_env(self) -> bool:
        """The local backend runs from the first-run set-up's environment (no Python configured)."""
        return not self.python_path.strip()

    def local_python(self) -> str:
        return self.python_path.strip() or str(self.setup_layout().python)

    def backend_environment(self) -> dict[str, str]:
        """Variables the local backend and the model manager's commands get."""
        return {"RS2SAM2_CACHE": self.weights_cache.strip()} if self.weights_cache.strip() else {}

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
        if self.model_name.strip():
            args += ["--model", self.model_name.strip()]
        elif self.checkpoint.strip():
            args += ["--checkpoint", self.checkpoint.strip()]
        elif self.preset.strip():
            args += ["--preset", self.preset.strip()]
        if self.local_precision != "auto":
            args += ["--precision", self.local_precision]
        if self.local_threads > 0:
            args += ["--threads", str(self.local_threads)]
        return self.local_python(), args


LEGACY_TOKEN_KEY = f"{SETTINGS_PREFIX}/token"


def legacy_token(store: QgsSettings | None = None) -> str:
    """A token an older version stored in plain QgsSettings (moved to the auth database on save)."""
    value = (store or QgsSettings()).value(LEGACY_TOKEN_KEY)
    return str(value) if value else ""


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
