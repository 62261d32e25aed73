"""A wheel folder for the offline set-up tests, built once per test session from what is on this machine.

The first-run set-up can install from a wheel folder (`pip install --no-index --find-links FOLDER`, what
an offline user does). The tests use that same path with a folder holding every distribution the
bundled backend needs, at the versions installed in the project's environment:
- wheels already lying on this machine (pip's configured find-links and local `file://` indexes) are
  linked in as they are (torch and its CUDA libraries among them: gigabytes that are never copied);
- any other installed distribution is packed back into a wheel from its installed files (RECORD), with
  the tags its own WHEEL file names — the files pip installed, unchanged;
- a distribution the system's package manager installed (no RECORD) is taken from the local wheels.
No network is used. By hand: `python -m tests.plugin.wheelhouse BUNDLE_FOLDER OUT_FOLDER`.
"""

from __future__ import annotations

import email.parser
import json
import os
import re
import subprocess
import sys
import tomllib
import urllib.parse
import zipfile
from importlib.metadata import Distribution, PackageNotFoundError, distribution
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def local_wheel_folders() -> list[Path]:
    """Folders of wheel files pip is configured to use on this machine (find-links, file:// indexes)."""
    output = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    values: list[str] = []
    for line in output.splitlines():
        key, _, value = line.partition("=")
        if key.endswith(("find-links", "extra-index-url", "index-url")):
            values += value.strip().strip("'\"").split()
    values += os.environ.get("PIP_FIND_LINKS", "").split()
    folders = []
    for value in values:
        path = Path(urllib.parse.urlsplit(value).path if value.startswith("file:") else value)
        for candidate in (path, path.parent / "files"):  # a find-links folder, or a simple index's files
            if candidate.is_dir() and any(candidate.glob("*.whl")) and candidate not in folders:
                folders.append(candidate)
    return folders


def _local_wheels() -> dict[str, list[tuple[Version, Path]]]:
    wheels: dict[str, list[tuple[Version, Path]]] = {}
    for folder in local_wheel_folders():
        for path in folder.glob("*.whl"):
            name, version = path.name.split("-")[:2]
            try:
                wheels.setdefault(_norm(name), []).append((Version(version), path))
            except InvalidVersion:
                continue
    return wheels


def _wheel_requires(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        metadata = email.parser.Parser().parsestr(archive.read(name).decode("utf-8"))
    return metadata.get_all("Requires-Dist") or []


def _repack(dist: Distribution, out: Path) -> Path:
    """A wheel holding the installed files of `dist` (scripts are left out: pip writes them anew)."""
    from wheel.wheelfile import WheelFile

    wheel_text = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel_text.splitlines() if line.startswith("Tag:")]
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    target = out / f"{name}-{dist.version}-{(tags or ['py3-none-any'])[0]}.whl"
    if target.exists():
        return target
    # Written in a side folder, then moved: a half-written wheel never sits in the folder pip reads.
    part = out / ".partial" / target.name
    part.parent.mkdir(exist_ok=True)
    with WheelFile(part, "w", compression=zipfile.ZIP_STORED) as wheel:  # stored: fast, stays local
        for file in dist.files or []:
            skipped = file.name in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")
            if file.parts[0] == ".." or "__pycache__" in file.parts or skipped:
                continue
            if Path(file.locate()).is_file():
                wheel.write(str(file.locate()), Path(file).as_posix())
    os.replace(part, target)
    return target


def _installed(name: str) -> Distribution | None:
    try:
        return distribution(name)
    except PackageNotFoundError:
        return None


def _link(path: Path, out: Path) -> None:
    if not (out / path.name).exists():
        (out / path.name).symlink_to(path)


def build_wheelhouse(requirements: list[str], out: Path, without_dependencies: list[str] = ()) -> Path:
    """`out` filled with a wheel (link or repack) for every distribution `requirements` pull in, and for
    `without_dependencies` alone (what the set-up installs with --no-deps)."""
    out.mkdir(parents=True, exist_ok=True)
    local = _local_wheels()
    environment = default_environment()
    seen: set[str] = set()
    for text in without_dependencies:
        dist = _installed(Requirement(text).name)
        if dist is None:
            raise RuntimeError(f"{text} is not installed here, for the test wheel folder")
        _repack(dist, out)
    stack = [Requirement(text) for text in requirements]
    while stack:
        requirement = stack.pop()
        key = _norm(requirement.name)
        if key in seen:
            continue
        seen.add(key)
        dist = _installed(requirement.name)
        exact = [path for version, path in local.get(key, []) if dist and str(version) == dist.version]
        if dist is not None and exact:
            for path in exact:
                _link(path, out)
            requires = dist.requires or []
        elif dist is not None and any(file.name == "RECORD" for file in dist.files or []):
            _repack(dist, out)
            requires = dist.requires or []
        else:  # installed by the system's package manager (no RECORD), or not installed: local wheels
            fitting = [path for version, path in local.get(key, []) if version in requirement.specifier]
            if not fitting:
                raise RuntimeError(f"no wheel of {requirement} on this machine for the test wheel folder")
            requires = []
            for path in fitting:
                _link(path, out)
                requires += _wheel_requires(path)
        for text in requires:
            sub = Requirement(text)
            extras = requirement.extras or {""}
            if sub.marker is None or any(sub.marker.evaluate({**environment, "extra": e}) for e in extras):
                stack.append(sub)
    return out


def bundle_requirements(bundle: Path) -> tuple[list[str], list[str]]:
    """What the set-up installs from a plugin's backend bundle: (its dependencies and build
    requirements, what it installs without dependencies)."""
    project = tomllib.loads((bundle / "pyproject.toml").read_text(encoding="utf-8"))
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    return [*project["project"]["dependencies"], *manifest["build_requires"]], list(
        manifest.get("no_deps", [])
    )


if __name__ == "__main__":  # pragma: no cover - for measuring by hand
    requirements, alone = bundle_requirements(Path(sys.argv[1]))
    folder = build_wheelhouse(requirements, Path(sys.argv[2]), alone)
    print(folder, len(list(folder.glob("*.whl"))), "wheels")
