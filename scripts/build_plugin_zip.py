"""Build the installable plugin zip: one top folder `rs2sam2_qgis/` holding the code, metadata.txt,
LICENSE and icons/, which is what QGIS's "Install from ZIP" takes.

`metadata.txt` at the repository root is the one source of truth; it is copied in here.
"""

from __future__ import annotations

import argparse
import configparser
import os
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "rs2sam2_qgis"
SKIP_DIRS = {"__pycache__", ".pytest_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo"}


def plugin_version() -> str:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "metadata.txt", encoding="utf-8")
    return parser["general"]["version"]


def plugin_files() -> list[tuple[Path, str]]:
    """(source path, path inside the zip) for every file the plugin ships."""
    entries: list[tuple[Path, str]] = []
    for source_dir, prefix in ((ROOT / PLUGIN, PLUGIN), (ROOT / "icons", f"{PLUGIN}/icons")):
        for path in sorted(source_dir.rglob("*")):
            if path.is_dir() or SKIP_DIRS & set(path.parts) or path.suffix in SKIP_SUFFIXES:
                continue
            entries.append((path, f"{prefix}/{path.relative_to(source_dir).as_posix()}"))
    entries.append((ROOT / "metadata.txt", f"{PLUGIN}/metadata.txt"))
    entries.append((ROOT / "LICENSE", f"{PLUGIN}/LICENSE"))
    return entries


def build(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{PLUGIN}-{plugin_version()}.zip"
    # Write beside the target, then rename: a failed build never leaves a half-written zip.
    fd, tmp_name = tempfile.mkstemp(suffix=".zip.part", dir=out_dir)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp_name, "w", zipfile.ZIP_DEFLATED) as archive:
            for source, arcname in plugin_files():
                archive.write(source, arcname)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="folder for the zip")
    args = parser.parse_args()
    print(build(args.out))


if __name__ == "__main__":
    main()
