"""The cache of OpenVINO conversions (`<cache root>/openvino/<key>/`): bounded, least recently used first.

Each entry is one model's converted image encoder (backend/model/openvino_encoder.py; the key hashes
everything its graph depends on). Entries are written whole or not at all: a conversion goes to a
staging folder `.<key>-<pid>-<random>` that is renamed into place when complete; staging folders left
by a killed process are removed at the next start. Each use touches the entry's `last-used` file; after
a conversion the least recently used entries are removed until the cache fits its bound (the entry just
made always stays). The bound: `$RS2SAM2_OPENVINO_CACHE_MB`, else what `rs2sam2 weights cache --max-mb N`
stored in the cache's `settings.json`, else DEFAULT_LIMIT_MB.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from backend.cache import cache_root
from backend.errors import UserError

IR_NAME = "image_encoder.xml"
LAST_USED = "last-used"
SETTINGS = "settings.json"
LIMIT_ENV = "RS2SAM2_OPENVINO_CACHE_MB"
# Room for a few models: the project's `tiny` preset converts to about 144 MB, a Hiera-L encoder with
# the paper's adapters to about 1 GB.
DEFAULT_LIMIT_MB = 4096.0
STALE_STAGING_S = 24 * 3600  # a staging folder this old is removed even if its process still exists


def cache_folder() -> Path:
    return cache_root() / "openvino"


@dataclass(frozen=True)
class CacheEntry:
    folder: Path
    size_bytes: int
    last_used: float  # seconds since the epoch

    @property
    def key(self) -> str:
        return self.folder.name


def _size(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:  # removed meanwhile by another process
            continue
    return total


def _last_used(folder: Path) -> float:
    for path in (folder / LAST_USED, folder / IR_NAME, folder):
        try:
            return path.stat().st_mtime
        except OSError:
            continue
    return 0.0


def entries(cache: Path) -> list[CacheEntry]:
    """The complete conversions in the cache, most recently used first."""
    if not cache.is_dir():
        return []
    found = [
        CacheEntry(folder, _size(folder), _last_used(folder))
        for folder in cache.iterdir()
        if folder.is_dir() and not folder.name.startswith(".") and (folder / IR_NAME).is_file()
    ]
    return sorted(found, key=lambda entry: entry.last_used, reverse=True)


def mark_used(folder: Path) -> None:
    try:
        (folder / LAST_USED).touch()
    except OSError:  # a read-only cache still serves
        pass


def staging_prefix(key: str) -> str:
    """The prefix of a staging folder for `key` made by this process (tempfile adds a random tail)."""
    return f".{key}-{os.getpid()}-"


_STAGING = re.compile(r"^\.[0-9a-f]{32}-(?:(\d+)-)?")


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there: leave the folder to the age rule
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists (another user's), or we cannot tell: leave its folder alone
    return True


def clean_staging(cache: Path, now: float | None = None) -> list[Path]:
    """Remove staging folders whose process is gone (killed mid-conversion) or that are a day old."""
    if not cache.is_dir():
        return []
    now = time.time() if now is None else now
    removed = []
    for folder in cache.iterdir():
        match = _STAGING.match(folder.name)
        if match is None or not folder.is_dir():
            continue
        pid = int(match.group(1)) if match.group(1) else None  # None: named before the pid was added
        try:
            age = now - folder.stat().st_mtime
        except OSError:
            continue
        if pid is None or not _process_alive(pid) or age > STALE_STAGING_S:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def limit_mb(cache: Path) -> float:
    """The cache's bound in MB (see the module's docstring for where it comes from)."""
    raw = os.environ.get(LIMIT_ENV)
    source = f"${LIMIT_ENV}"
    if raw is None:
        try:
            raw = json.loads((cache / SETTINGS).read_text()).get("max_mb")
            source = str(cache / SETTINGS)
        except (OSError, ValueError, AttributeError):
            raw = None
    if raw is None:
        return DEFAULT_LIMIT_MB
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = -1.0
    if not value >= 0:  # also NaN
        raise UserError(f"The OpenVINO cache's bound in {source} must be a number of MB ≥ 0, not {raw!r}.")
    return value


def set_limit_mb(cache: Path, value: float) -> None:
    if not value >= 0:
        raise UserError(f"The OpenVINO cache's bound must be a number of MB ≥ 0, not {value!r}.")
    cache.mkdir(parents=True, exist_ok=True)
    (cache / SETTINGS).write_text(json.dumps({"max_mb": value}) + "\n")


def evict(cache: Path, keep: frozenset[str] = frozenset(), limit: float | None = None) -> list[CacheEntry]:
    """Remove the least recently used entries (never those named in `keep`) until the cache fits its
    bound; returns what was removed."""
    bound = (limit_mb(cache) if limit is None else limit) * 2**20
    present = entries(cache)
    total = sum(entry.size_bytes for entry in present)
    removed = []
    for entry in reversed(present):  # least recently used first
        if total <= bound:
            break
        if entry.key in keep:
            continue
        shutil.rmtree(entry.folder, ignore_errors=True)
        total -= entry.size_bytes
        removed.append(entry)
    return removed


def clear(cache: Path) -> list[CacheEntry]:
    """Remove every conversion and every staging folder left behind (a conversion running in another
    process keeps its own); the settings stay."""
    present = entries(cache)
    for entry in present:
        shutil.rmtree(entry.folder, ignore_errors=True)
    clean_staging(cache)
    return present
