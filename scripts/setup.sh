#!/usr/bin/env bash
# One-command, idempotent set-up of the project's environment on Debian 12.
#
#   1. Debian's QGIS bindings (python3-qgis), qgis_process (qgis) and Xvfb, when missing;
#   2. .venv built from Debian's /usr/bin/python3 with --system-site-packages, so QGIS and
#      Debian's PyQt5 are importable beside torch (never PyQt5 from pip);
#   3. the pinned requirements from pyproject.toml (torch first, then sam2 without build isolation);
#   4. small fixes the environment needs (processing plugins on the path, PROJ data for Debian's pyproj);
#   5. an import check of everything together.
#
# A stamp keyed on what shapes the environment makes a second run take seconds: this script and the parts
# of pyproject.toml that pip installs from (the build requirements, [project] with its dependency pins,
# extras and entry points, the package list, [tool.rs2sam2]). Test, lint and formatter settings and
# comments are not among them: editing those does not reinstall the environment.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PY=$VENV/bin/python
STAMP=$VENV/.rs2sam2-setup-stamp
env_inputs() {
    /usr/bin/python3 - "$ROOT/pyproject.toml" <<'PY'
import json, sys, tomllib
with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)
tool = project.get("tool", {})
shaping = {
    "build-system": project.get("build-system"),
    "project": project.get("project"),
    "setuptools": tool.get("setuptools"),
    "rs2sam2": tool.get("rs2sam2"),
}
print(json.dumps(shaping, sort_keys=True))
PY
    cat "$ROOT/scripts/setup.sh"
}
WANT=$(env_inputs | sha256sum | cut -d' ' -f1)

log() { printf '[setup] %s\n' "$*"; }

need_apt=()
/usr/bin/python3 -c "import qgis.core" 2>/dev/null || need_apt+=(python3-qgis)
[ -x /usr/bin/qgis_process.bin ] || need_apt+=(qgis)
command -v Xvfb >/dev/null 2>&1 || need_apt+=(xvfb xauth)
/usr/bin/python3 -c "import venv, ensurepip" 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
    log "installing Debian packages: ${need_apt[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && "$PY" -c "import backend, training, rs2sam2_qgis" 2>/dev/null; then
    log "environment up to date ($VENV)"
    exit 0
fi

if [ ! -x "$PY" ]; then
    log "creating $VENV from Debian's python3"
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1
# pip warns once per package about the machine's local index folders that lack it; drop that noise.
pip_install() {
    "$PY" -m pip install --quiet "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
    return "${PIPESTATUS[0]}"
}

log "installing torch/torchvision (local builds)"
pip_install "torch==2.14.1" "torchvision==0.29.1" "numpy>=1.26,<2" "setuptools>=68" wheel

if ! "$PY" -c "import sam2" 2>/dev/null; then
    log "installing sam2 (no CUDA extension, no build isolation)"
    SAM2_BUILD_CUDA=0 pip_install --no-build-isolation "sam2==1.1.0"
fi

# sam2's wheel also installs its own training scripts as a top-level `training` package, which
# shadows this project's `training/` outside the checkout (console script, torchrun). The sam2
# library never imports them; remove them.
SITE_PACKAGES=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
if [ -f "$SITE_PACKAGES/training/trainer.py" ] && [ ! -f "$SITE_PACKAGES/training/loop.py" ]; then
    rm -rf "$SITE_PACKAGES/training"
fi

# Packages whose dependency metadata conflicts with our pins ([tool.rs2sam2] in pyproject.toml says
# which and why) are installed without it.
NO_DEPS=$("$PY" -c "import sys, tomllib; print(' '.join(tomllib.load(open(sys.argv[1], 'rb'))['tool']['rs2sam2']['install-without-dependencies']))" "$ROOT/pyproject.toml")
if [ -n "$NO_DEPS" ]; then
    log "installing without their dependency pins: $NO_DEPS"
    # shellcheck disable=SC2086 # one argument per requirement
    pip_install --no-deps $NO_DEPS
fi

log "installing the project and its pinned requirements"
pip_install --no-build-isolation -e "$ROOT[dev,training]"

SITE=$SITE_PACKAGES
# `import processing` needs QGIS's bundled Python plugins on the path.
echo "/usr/share/qgis/python/plugins" > "$SITE/qgis-processing-plugins.pth"
# Debian's pyproj looks for PROJ data under the venv prefix; point it at the system's copy.
# (Never export PROJ_LIB/PROJ_DATA: that breaks rasterio's bundled PROJ.)
mkdir -p "$VENV/share"
[ -e "$VENV/share/proj" ] || ln -s /usr/share/proj "$VENV/share/proj"

log "checking that everything imports together"
QT_QPA_PLATFORM=offscreen "$PY" - <<'EOF'
import numpy, rasterio, shapely, pyogrio, torch, sam2, open_clip, fastapi, uvicorn, sentencepiece
import warnings
with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # torchscale's old timm import path
    import torchscale.model.BEiT3  # noqa: F401
from qgis.core import QgsApplication
import processing  # noqa: F401
assert numpy.__version__.startswith("1."), numpy.__version__
print(f"[setup] torch {torch.__version__} (cuda available: {torch.cuda.is_available()}), "
      f"numpy {numpy.__version__}, rasterio {rasterio.__version__}, shapely {shapely.__version__}, "
      f"open_clip {open_clip.__version__}, QGIS {__import__('qgis.core').core.Qgis.QGIS_VERSION}")
EOF
echo "$WANT" > "$STAMP"
log "done"
