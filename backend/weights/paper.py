"""The paper's published models: download (resumable, verified by a real load) or import a folder, and
convert once into the project's single-file checkpoint `<cache>/<model>.safetensors`.

A download lists the repository folder through the Hugging Face API (names, sizes and the SHA-256 of
every large file), falling back to probing the standard file names when a mirror serves files only; each
file is fetched into `<cache>/.<model>.partial/` (resumed with HTTP Range requests), the folder is loaded
through the same loader a hand-imported folder goes through, converted, and only then does the converted
file appear in the cache. The staged folder is removed afterwards (or when it does not load).
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from backend.errors import UserError
from backend.weights.download import TIMEOUT_SECONDS, cache_dir, fetch, partial_path, sha256_of
from backend.weights.registry import HF_BASE_URL, PAPER_WEIGHTS, PaperWeights

# In order of preference: safetensors (cannot execute code) before pickles, an index before one file.
WEIGHT_FILES = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
)
TOKENIZER_FILES = (
    "sentencepiece.bpe.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)
REQUIRED = ("config.json", "sentencepiece.bpe.model")


@dataclass(frozen=True)
class RemoteFile:
    name: str  # inside the model folder
    url: str
    size: int | None = None
    sha256: str | None = None


def converted_path(weights: PaperWeights, cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / weights.cache_name


def _base(mirror: str | None) -> str:
    return (mirror or HF_BASE_URL).rstrip("/")


def _file_url(weights: PaperWeights, name: str, mirror: str | None) -> str:
    path = f"{weights.repo}/resolve/{weights.revision}/{weights.folder}/{name}"
    return f"{_base(mirror)}/{urllib.parse.quote(path)}"


def _get(url: str, method: str = "GET") -> bytes | None:
    """The body of a small response (None on 404); one-sentence errors when the host cannot be reached."""
    request = urllib.request.Request(url, method=method, headers={"User-Agent": "rs2sam2-weights"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 - http(s) only
            return response.read() if method == "GET" else b""
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise UserError(f"{url} answered HTTP {exc.code} {exc.reason}") from None
    except OSError as exc:
        host = urllib.parse.urlsplit(url).netloc
        raise UserError(
            f"cannot reach {host} ({getattr(exc, 'reason', exc)}); are you offline? Download the folder "
            "by hand and use `rs2sam2 weights import FOLDER`, or pass --mirror with a reachable copy"
        ) from None


def _listing(weights: PaperWeights, mirror: str | None) -> dict[str, RemoteFile] | None:
    """The folder's files from the Hugging Face tree API, or None when the server has no such API."""
    url = f"{_base(mirror)}/api/models/{weights.repo}/tree/{weights.revision}/{weights.folder}"
    body = _get(url)
    if body is None:
        return None
    try:
        entries = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    files: dict[str, RemoteFile] = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("type") != "file":
            continue
        name = str(entry.get("path", "")).removeprefix(f"{weights.folder}/")
        lfs = entry.get("lfs") if isinstance(entry.get("lfs"), dict) else {}
        files[name] = RemoteFile(
            name, _file_url(weights, name, mirror), entry.get("size"), lfs.get("oid") if lfs else None
        )
    return files


def _probe(weights: PaperWeights, mirror: str | None) -> dict[str, RemoteFile]:
    """Without a listing: the standard names that exist (HEAD requests)."""
    names = ["config.json", *WEIGHT_FILES, *TOKENIZER_FILES]
    found = {}
    for name in names:
        url = _file_url(weights, name, mirror)
        if _get(url, method="HEAD") is not None:
            found[name] = RemoteFile(name, url)
    return found


def _fetch_one(remote: RemoteFile, staging: Path, show_progress: bool) -> Path:
    target = staging / remote.name
    if target.is_file() and (remote.size is None or target.stat().st_size == remote.size):
        return target  # finished in an earlier run
    part = partial_path(target)
    fetch(remote.url, part, show_progress=show_progress)
    if remote.sha256 is not None and sha256_of(part) != remote.sha256:
        part.unlink()
        raise UserError(
            f"{remote.name}: checksum mismatch; the partial file was removed, run the command again"
        )
    os.replace(part, target)
    return target


def _wanted(files: dict[str, RemoteFile], staging: Path, show_progress: bool) -> list[RemoteFile]:
    """config, the weights (safetensors preferred; shards from the index) and the tokenizer files."""
    missing = [name for name in REQUIRED if name not in files]
    if missing:
        raise UserError(f"the published folder lacks {', '.join(missing)}")
    chosen = next((name for name in WEIGHT_FILES if name in files), None)
    if chosen is None:
        raise UserError("the published folder has no weights file")
    wanted = [files["config.json"], files[chosen], *(files[n] for n in TOKENIZER_FILES[1:] if n in files)]
    wanted.append(files["sentencepiece.bpe.model"])
    if chosen.endswith(".index.json"):
        index = json.loads(_fetch_one(files[chosen], staging, show_progress).read_text(encoding="utf-8"))
        for shard in sorted(set(index.get("weight_map", {}).values())):
            wanted.append(
                files.get(shard) or RemoteFile(shard, files[chosen].url.rsplit("/", 1)[0] + "/" + shard)
            )
    return wanted


def download_paper_model(
    model: str, cache: Path | None = None, mirror: str | None = None, show_progress: bool = True
) -> Path:
    """The converted checkpoint of a published model, downloading, verifying and converting it if needed."""
    weights = _paper_weights(model)
    target = converted_path(weights, cache)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if urllib.parse.urlsplit(_base(mirror)).scheme not in ("http", "https"):
        raise UserError(f"weights can only be downloaded over http(s), not from {mirror}")
    staging = target.parent / f".{weights.model}.partial"
    staging.mkdir(exist_ok=True)
    files = _listing(weights, mirror)
    if files is None:
        files = _probe(weights, mirror)
    for remote in _wanted(files, staging, show_progress):
        _fetch_one(remote, staging, show_progress)
    try:
        convert_folder(staging, weights.model, target)
    except UserError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(f"{weights.model} was downloaded but does not load: {exc}") from None
    shutil.rmtree(staging, ignore_errors=True)
    return target


def convert_folder(folder: Path, model: str, target: Path, allow_key_differences: bool = False) -> Path:
    """Load a published folder strictly (the verification) and write it as one project checkpoint.
    `allow_key_differences`: see `load_published_folder`; the checkpoint's metadata records them."""
    from backend.model.checkpoint import save_checkpoint
    from backend.model.paper.folder import load_published_folder
    from backend.model.presets import get_preset

    loaded = load_published_folder(folder, get_preset(model), allow_key_differences=allow_key_differences)
    metadata = {"source": "published folder", "model": model, "folder": folder.name}
    if loaded.key_differences:
        metadata["key_differences"] = loaded.key_differences.describe()
    return save_checkpoint(target, loaded, metadata=metadata)


def import_paper_folder(
    folder: str | Path,
    model: str | None = None,
    cache: Path | None = None,
    overwrite: bool = False,
    allow_key_differences: bool = False,
) -> Path:
    """Verify a folder downloaded by hand and convert it into the cache (the folder is left as it is).
    `allow_key_differences`: load a folder whose keys differ from this code's (listed on stderr)."""
    from backend.model.paper.folder import preset_for_folder

    folder = Path(folder).expanduser().resolve()
    name = model or preset_for_folder(folder)
    if name is None:
        raise UserError(
            f"Cannot tell which model {str(folder)!r} is; add --model "
            f"{' or --model '.join(PAPER_WEIGHTS)}."
        )
    target = converted_path(_paper_weights(name), cache)
    if target.exists() and not overwrite:
        raise UserError(f"{name} is already in the cache ({target}); pass --force to replace it.")
    target.parent.mkdir(parents=True, exist_ok=True)
    if overwrite:
        target.unlink(missing_ok=True)
    return convert_folder(folder, name, target, allow_key_differences=allow_key_differences)


def _paper_weights(model: str) -> PaperWeights:
    try:
        return PAPER_WEIGHTS[model]
    except KeyError:
        raise UserError(
            f"Unknown published model {model!r}; choose one of {', '.join(PAPER_WEIGHTS)}."
        ) from None
