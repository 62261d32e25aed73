"""Resumable, verified downloads into the weights cache.

A file is fetched to `<cache>/<stem>.partial<suffix>` (resumed with an HTTP Range request when a part
is there),
checked (SHA-256 where the publisher gives one, and always a real load through the model's loaders),
and only then moved to `<cache>/<name>`. A file in the cache is therefore always a good one.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from backend.cache import cache_root
from backend.errors import UserError
from backend.weights.registry import WeightFile

CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60


def cache_dir() -> Path:
    """Downloaded weights: `cache_root()/weights`."""
    return cache_root() / "weights"


def cached_path(weight: WeightFile, cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / weight.name


def partial_path(target: Path) -> Path:
    """Where a download in progress lives: same suffix as the target, so loaders that go by the
    suffix (open_clip reads `.safetensors` differently from `.pt`) can verify it before it moves."""
    return target.with_name(f"{target.stem}.partial{target.suffix}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _mirrored(url: str, mirror: str | None) -> str:
    """Replace scheme and host of `url` by a mirror's base URL (keeps the path)."""
    if not mirror:
        return url
    path = urllib.parse.urlsplit(url).path
    return mirror.rstrip("/") + path


def fetch(url: str, part: Path, show_progress: bool = True) -> None:
    """Download `url` into `part`, resuming from the bytes already there."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "rs2sam2-weights"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    host = urllib.parse.urlsplit(url).netloc
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS)  # noqa: S310 - http(s) only, checked below
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part is already complete
            return
        raise UserError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except OSError as exc:  # URLError and timeouts are OSErrors
        reason = getattr(exc, "reason", exc)
        raise UserError(
            f"cannot reach {host} ({reason}); are you offline? Download {url} by hand and put it at "
            f"{part.with_name(part.name.replace('.partial', ''))}, or pass --mirror with a reachable copy"
        ) from None
    with response:
        resumed = response.status == 206
        mode = "ab" if resumed else "wb"  # a server that ignores Range sends the whole file again
        start = have if resumed else 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        with (
            open(part, mode) as handle,
            tqdm(
                total=total,
                initial=start,
                unit="B",
                unit_scale=True,
                desc=part.name.replace(".partial", ""),
                disable=not show_progress,
            ) as bar,
        ):
            while True:
                try:
                    chunk = response.read(CHUNK_BYTES)
                except OSError as exc:
                    raise UserError(
                        f"download of {url} was interrupted ({exc}); run the command again " "to resume it"
                    ) from None
                if not chunk:
                    break
                handle.write(chunk)
                bar.update(len(chunk))
    if total is not None and part.stat().st_size < total:
        raise UserError(f"download of {url} stopped early; run the command again to resume it")


def download(
    weight: WeightFile,
    cache: Path | None = None,
    mirror: str | None = None,
    verify: Callable[[WeightFile, Path], None] | None = None,
    show_progress: bool = True,
) -> Path:
    """Return the cached file for `weight`, downloading and verifying it first when needed."""
    from backend.weights.verify import verify_weight_file

    verify = verify or verify_weight_file
    target = cached_path(weight, cache)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    url = _mirrored(weight.url, mirror)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise UserError(f"weights can only be downloaded over http(s), not from {url}")
    part = partial_path(target)
    fetch(url, part, show_progress=show_progress)
    if weight.sha256 is not None:
        actual = sha256_of(part)
        if actual != weight.sha256:
            part.unlink()
            raise UserError(
                f"{weight.name}: checksum mismatch (expected {weight.sha256}, got {actual}); "
                "the partial file was removed, run the command again"
            )
    try:
        verify(weight, part)
    except UserError as exc:
        part.unlink()
        raise UserError(f"{weight.name} was downloaded but does not load: {exc}") from None
    os.replace(part, target)
    return target
