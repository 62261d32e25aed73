"""Which build of torch the set-up installs: CUDA when the machine has an NVIDIA GPU with a driver,
otherwise the CPU build (several gigabytes smaller on Linux). The user can choose either, or give
the package index of another build.

PyPI's torch is the CUDA build on Linux and the CPU build on Windows; macOS has one build (CPU + Apple
GPU). The other builds come from PyTorch's own package indexes. The pinned version is the same in every
case (`torch==X` matches `X+cpu`; pip prefers the local-version build the extra index offers).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .interpreters import hidden_window

BUILDS = ("auto", "cpu", "cuda")
PYTORCH_INDEX = "https://download.pytorch.org/whl"
# PyTorch's index for CUDA builds on Windows (PyPI has only the CPU build there); the CUDA line of
# the pinned torch release.
WINDOWS_CUDA_INDEX = f"{PYTORCH_INDEX}/cu130"


@dataclass(frozen=True)
class TorchBuild:
    name: str  # "cpu" or "cuda"
    reason: str  # why, for the log
    pip_args: tuple[str, ...] = field(default=())  # extra pip arguments of the torch step


def detect_nvidia_gpu() -> str:
    """The name of an NVIDIA GPU whose driver answers, or "" (no torch needed to ask)."""
    smi = shutil.which("nvidia-smi")
    if smi is None and sys.platform.startswith("win"):
        candidate = Path(r"C:\Windows\System32\nvidia-smi.exe")
        smi = str(candidate) if candidate.is_file() else None
    if smi is None:
        return ""
    try:
        done = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            **hidden_window(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    names = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    return names[0] if done.returncode == 0 and names else ""


def choose_build(
    preference: str, index_url: str = "", platform: str = sys.platform, gpu: str | None = None
) -> TorchBuild:
    """The torch build for `preference` ("auto", "cpu", "cuda") on `platform`; `index_url` overrides
    where it comes from."""
    if preference not in BUILDS:
        preference = "auto"
    if preference == "auto":
        gpu = detect_nvidia_gpu() if gpu is None else gpu
        name, reason = ("cuda", f"NVIDIA GPU found ({gpu})") if gpu else ("cpu", "no NVIDIA GPU found")
    else:
        name, reason = preference, "chosen in the settings"
    if index_url.strip():
        return TorchBuild(
            name, f"{reason}; from {index_url.strip()}", ("--extra-index-url", index_url.strip())
        )
    if platform == "darwin":
        return TorchBuild(name, f"{reason}; macOS has one torch build (CPU and Apple GPU)")
    if name == "cpu" and platform.startswith("linux"):
        return TorchBuild(name, reason, ("--extra-index-url", f"{PYTORCH_INDEX}/cpu"))
    if name == "cuda" and platform.startswith("win"):
        return TorchBuild(name, reason, ("--extra-index-url", WINDOWS_CUDA_INDEX))
    return TorchBuild(name, reason)  # PyPI's own build is the one wanted
