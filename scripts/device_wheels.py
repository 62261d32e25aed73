"""The wheels the GPU check carries to a GPU machine (`make device-wheels`; docs/gpu-check.md).

The lent GPU machines have Python 3.12 with torch, torchvision, numpy, pillow, safetensors,
sentencepiece, accelerate, timm, tqdm, pyyaml, regex, huggingface-hub, pytest … but none of the
project's own model and geo packages, and no network. This fills one folder (default
build/device-wheels, ignored by git, carried with `carry`) with what is missing:

- pure-Python packages (and wcwidth's abi3 wheel), packed from the distributions installed in this
  checkout's .venv — the very versions the tests ran with here; sam2 without its CUDA extension (it was
  built with SAM2_BUILD_CUDA=0) and without the `training` package its wheel also installs, which
  would shadow the project's; open_clip without its training scripts;
- rasterio, shapely and pyproj, the engine's binary packages, downloaded from PyPI as CPython 3.12
  manylinux wheels. rasterio at 1.4.3 (22 MB; 1.4.4, installed here, is 36 MB and would not fit);
  pyogrio (24 MB, only the vector writers need it) is left out.

The folder and the working tree travel together under 64 MiB; this prints both sizes and refuses to
leave a folder that would not fit.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import zipfile
from importlib.metadata import Distribution, distribution
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LIMIT_MIB = 64.0  # what the device tool carries: working tree + carried paths
# distribution name → top-level folders or modules of it that must not travel
PACKED = {
    "sam2": ("training",),
    "open_clip_torch": ("open_clip_train",),
    "hydra-core": (),
    "omegaconf": (),
    "antlr4-python3-runtime": (),
    "iopath": (),
    "ftfy": (),
    "wcwidth": (),
    "torchscale": ("examples",),
    "fairscale": ("benchmarks",),
    "affine": (),
    "cligj": (),
    "click-plugins": (),
}
# Binary wheels for the GPU machine's CPython 3.12 (name → version; None: the version installed here).
DOWNLOADED = {"rasterio": "1.4.3", "shapely": None, "pyproj": None}
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux_2_24_x86_64",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "build" / "device-wheels"))
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python (3.12)")
    parser.add_argument("--no-download", action="store_true", help="only the packed pure-Python wheels")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.whl"):
        old.unlink()
    made = [pack(distribution(name), out, skip) for name, skip in PACKED.items()]
    if not args.no_download:
        made += download(out, args.python_version)
    wheels = sum(path.stat().st_size for path in made) / 2**20
    tree = working_tree_mib()
    manifest = {
        "wheels": {path.name: path.stat().st_size for path in made},
        "wheels_mib": round(wheels, 2),
        "working_tree_mib": round(tree, 2),
        "total_mib": round(wheels + tree, 2),
        "limit_mib": LIMIT_MIB,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    print(
        f"{len(made)} wheels, {wheels:.1f} MiB in {out}; working tree {tree:.1f} MiB; together "
        f"{wheels + tree:.1f} MiB of the {LIMIT_MIB:.0f} MiB the device tool carries"
    )
    if wheels + tree > LIMIT_MIB:
        print(
            "too large to carry: leave out the engine's wheels (--no-download) or shrink the tree",
            file=sys.stderr,
        )
        return 1
    return 0


def pack(dist: Distribution, out: Path, skip: tuple[str, ...] = ()) -> Path:
    """A wheel of an installed distribution's files (its own tags; py3-none-any when it has no
    compiled files), without `skip`'s top-level names, scripts, caches or pip's own bookkeeping."""
    from wheel.wheelfile import WheelFile

    files = [
        file
        for file in dist.files or []
        if file.parts[0] != ".."
        and "__pycache__" not in file.parts
        and file.name not in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")
        and file.parts[0].removesuffix(".py") not in (*skip, "bin")  # scripts: pip writes its own
        and Path(file.locate()).is_file()
    ]
    compiled = any(file.name.endswith((".so", ".pyd")) for file in files)
    wheel_text = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel_text.splitlines() if line.startswith("Tag:")]
    tag = tags[0] if compiled and tags else "py3-none-any"
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    target = out / f"{name}-{dist.version}-{tag}.whl"
    with WheelFile(target, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        for file in files:
            if file.name == "WHEEL" and file.parent.name.endswith(".dist-info") and not compiled:
                text = re.sub(r"(?m)^Tag:.*\n?", "", wheel_text).rstrip("\n") + "\nTag: py3-none-any\n"
                text = text.replace("Root-Is-Purelib: false", "Root-Is-Purelib: true")
                wheel.writestr(Path(file).as_posix(), text)
            else:
                wheel.write(str(file.locate()), Path(file).as_posix())
    return target


def download(out: Path, python_version: str) -> list[Path]:
    requirements = [
        f"{name}=={version or distribution(name).version}" for name, version in DOWNLOADED.items()
    ]
    before = set(out.glob("*.whl"))
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
        "--python-version", python_version, "--implementation", "cp",
        "--abi", f"cp{python_version.replace('.', '')}", "--dest", str(out),
        *(part for platform in PLATFORMS for part in ("--platform", platform)),
        *requirements,
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    noise = "is ignored: it is neither a file nor a directory"
    errors = [line for line in completed.stderr.splitlines() if noise not in line]
    if completed.returncode != 0:
        raise SystemExit(f"pip download failed: {' '.join(errors[-3:])}")
    return sorted(set(out.glob("*.whl")) - before)


def working_tree_mib() -> float:
    """What the device tool sends of the checkout: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.split(b"\0")  # fmt: skip
    return (
        sum(
            (REPO / name.decode()).stat().st_size
            for name in listed
            if name and (REPO / name.decode()).is_file()
        )
        / 2**20
    )


if __name__ == "__main__":
    sys.exit(main())
