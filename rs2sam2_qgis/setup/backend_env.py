"""The local backend's own Python environment: where it lives, what the plugin ships for it, and whether
it is ready — read from a state file the set-up writes, so a half-made environment is never used.

Layout of the set-up folder (by default `rs2sam2/` in the QGIS profile's folder):

    env/              the virtual environment (never QGIS's own Python)
    setup-state.json  {"state": "installing" | "ready" | "failed" | "cancelled", ...}
    setup.log         everything pip said during the last set-up
    build/            a copy of the bundled backend's source that pip builds from (removed afterwards)

The set-up writes "installing" before it touches `env/` and "ready" only after the environment has
passed its check, so an environment whose set-up was interrupted (QGIS closed or killed, power cut)
reads as "incomplete" on the next start and is rebuilt, never started.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..resources import PLUGIN_DIR

BUNDLE_DIR = PLUGIN_DIR / "backend_bundle"  # written into the zip by `make plugin`
STATE_FILE = "setup-state.json"

# What inspect() reports.
MISSING, INCOMPLETE, OUTDATED, READY = "missing", "incomplete", "outdated", "ready"


@dataclass(frozen=True)
class Bundle:
    """The backend source the plugin carries (backend_bundle/manifest.json, made by `make plugin`)."""

    folder: Path
    version: str
    fingerprint: str
    requires_python: str
    build_requires: tuple[str, ...]
    staged: dict[str, str]  # torch, torchvision, sam2 → their pinned requirement
    no_deps: tuple[str, ...] = ()  # installed without their dependency metadata (pyproject's [tool.rs2sam2])

    @property
    def constraints(self) -> Path:
        return self.folder / "constraints.txt"

    @classmethod
    def load(cls, folder: Path = BUNDLE_DIR) -> Bundle | None:
        """The bundle, or None for a plugin without one (a source checkout: `make setup` instead)."""
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return cls(
            folder=folder,
            version=str(manifest["version"]),
            fingerprint=str(manifest["fingerprint"]),
            requires_python=str(manifest["requires_python"]),
            build_requires=tuple(manifest["build_requires"]),
            staged=dict(manifest["staged"]),
            no_deps=tuple(manifest.get("no_deps", ())),
        )


@dataclass(frozen=True)
class EnvLayout:
    root: Path

    @property
    def env(self) -> Path:
        return self.root / "env"

    @property
    def state_file(self) -> Path:
        return self.root / STATE_FILE

    @property
    def log_file(self) -> Path:
        return self.root / "setup.log"

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    @property
    def python(self) -> Path:
        if sys.platform.startswith("win"):
            return self.env / "Scripts" / "python.exe"
        return self.env / "bin" / "python"

    def read_state(self) -> dict:
        try:
            state = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def write_state(self, **state) -> None:
        """Replace the state file atomically (a crash leaves the old one or the new one, never half)."""
        self.root.mkdir(parents=True, exist_ok=True)
        part = self.state_file.with_suffix(".part")
        part.write_text(json.dumps(state, indent=2), encoding="utf-8")
        os.replace(part, self.state_file)


@dataclass(frozen=True)
class EnvStatus:
    status: str  # MISSING, INCOMPLETE, OUTDATED or READY
    message: str  # one sentence for the panel and the settings
    state: dict

    @property
    def ready(self) -> bool:
        return self.status == READY

    @property
    def usable(self) -> bool:
        """The backend can start from it (an outdated one works until it is updated)."""
        return self.status in (READY, OUTDATED)


def inspect(layout: EnvLayout, bundle: Bundle | None) -> EnvStatus:
    state = layout.read_state()
    kind = state.get("state")
    if not state and not layout.env.exists():
        return EnvStatus(MISSING, "The local backend is not set up yet.", state)
    if kind != "ready":
        how = {"failed": "failed", "cancelled": "was cancelled"}.get(kind, "did not finish")
        return EnvStatus(INCOMPLETE, f"The last set-up of the local backend {how}; repair it.", state)
    if not layout.python.exists():
        return EnvStatus(INCOMPLETE, "The local backend's environment is damaged; repair it.", state)
    if bundle is not None and state.get("fingerprint") != bundle.fingerprint:
        return EnvStatus(
            OUTDATED,
            f"The local backend is version {state.get('version', '?')}; the plugin brings "
            f"{bundle.version}: update it (Repair / reinstall).",
            state,
        )
    return EnvStatus(READY, f"The local backend is set up ({describe_ready(state)}).", state)


def describe_ready(state: dict) -> str:
    torch = state.get("torch", "?")
    device = "CUDA" if state.get("cuda") else "CPU"
    return f"torch {torch} on {device}, Python {state.get('python_version', '?')}"
