"""Which Python builds the local backend's environment.

Tried in order, the first that runs, has a version the backend supports and can make virtual
environments (`venv` + `ensurepip`) wins:
1. the one chosen in the settings (then only that one);
2. the Python QGIS itself runs on, when it is a full interpreter (OSGeo4W and the macOS bundle ship
   one; on Linux it is the system's python3);
3. `python3` / `python` on PATH (and the `py` launcher on Windows).
The environment itself is separate: nothing is ever installed into QGIS's Python.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PROBE = (
    "import json, sys, venv, ensurepip; "
    "print(json.dumps({'version': list(sys.version_info[:3]), 'executable': sys.executable}))"
)
PROBE_TIMEOUT_S = 30


class InterpreterError(Exception):
    """No usable Python; the message is one sentence for a person."""


@dataclass(frozen=True)
class Interpreter:
    command: tuple[str, ...]  # the program and any fixed arguments (`py -3.12`)
    version: tuple[int, int, int]
    executable: str

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


def supported_range(requires_python: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """(lowest, first unsupported) minor versions from a `>=3.10,<3.13` specifier."""
    low = re.search(r">=\s*(\d+)\.(\d+)", requires_python)
    high = re.search(r"<\s*(\d+)\.(\d+)", requires_python)
    return (
        (int(low.group(1)), int(low.group(2))) if low else (3, 0),
        (int(high.group(1)), int(high.group(2))) if high else (4, 0),
    )


def qgis_python_candidates() -> list[tuple[str, ...]]:
    """The interpreter QGIS runs on, where it is a separate program next to QGIS."""
    found: list[tuple[str, ...]] = []
    executable = Path(sys.executable or "")
    if executable.name.lower().startswith("python"):
        found.append((str(executable),))
    major, minor = sys.version_info[:2]
    for prefix in dict.fromkeys([sys.base_prefix, sys.prefix, sys.exec_prefix]):
        base = Path(prefix)
        if sys.platform.startswith("win"):
            names = [base / "python.exe", base / "python3.exe"]
        else:
            names = [base / "bin" / f"python{major}.{minor}", base / "bin" / "python3"]
        found += [(str(name),) for name in names if name.is_file()]
    return found


def path_candidates() -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name in ("python3", "python"):
        path = shutil.which(name)
        if path:
            found.append((path,))
    if sys.platform.startswith("win") and shutil.which("py"):
        found += [("py", f"-3.{minor}") for minor in (12, 11, 10)]
    return found


def probe(command: tuple[str, ...]) -> tuple[Interpreter | None, str]:
    """The interpreter behind `command`, or None and why not (a short clause)."""
    try:
        done = subprocess.run(
            [*command, "-c", PROBE],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            env=clean_environment(),
            **hidden_window(),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{' '.join(command)} does not run ({exc.__class__.__name__})"
    if done.returncode != 0:
        if "ensurepip" in done.stderr or "venv" in done.stderr:
            return (
                None,
                f"{' '.join(command)} cannot make virtual environments (on Debian/Ubuntu: python3-venv)",
            )
        return None, f"{' '.join(command)} does not run"
    try:
        info = json.loads(done.stdout.strip().splitlines()[-1])
        version = tuple(int(part) for part in info["version"])
    except (ValueError, KeyError, IndexError):
        return None, f"{' '.join(command)} answered unexpectedly"
    return Interpreter(tuple(command), version, str(info["executable"])), ""  # type: ignore[arg-type]


def find_interpreter(configured: str, requires_python: str) -> Interpreter:
    """The Python to build the environment with (see the module's docstring for the order)."""
    low, high = supported_range(requires_python)
    wanted = f"Python {low[0]}.{low[1]}–{high[0]}.{high[1] - 1}"
    candidates = [(configured,)] if configured.strip() else qgis_python_candidates() + path_candidates()
    reasons: list[str] = []
    seen: set[str] = set()
    for command in candidates:
        key = " ".join(command)
        if key in seen:
            continue
        seen.add(key)
        interpreter, reason = probe(command)
        if interpreter is None:
            reasons.append(reason)
        elif not low <= interpreter.version[:2] < high:
            reasons.append(f"{key} is Python {interpreter.version_text}")
        else:
            return interpreter
    tried = "; ".join(reasons) or "none was found"
    raise InterpreterError(
        f"No {wanted} that can make virtual environments was found ({tried}); install one "
        "(python.org) or choose it under Settings › Local backend › Python for the set-up."
    )


def clean_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for another Python: without QGIS's own Python settings (QGIS sets
    PYTHONHOME/PYTHONPATH for its interpreter on some platforms, which would misdirect another one)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")}
    env["PYTHONNOUSERSITE"] = "1"
    env.update(extra or {})
    return env


def hidden_window() -> dict:
    """subprocess arguments that keep a console window from flashing up on Windows."""
    if sys.platform.startswith("win"):
        return {"creationflags": getattr(subprocess, "CREATE_NO_WINDOW", 0)}
    return {}
