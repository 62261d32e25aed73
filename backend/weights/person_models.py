"""A person's own models: the store the service's training jobs register into, and `rs2sam2 models`
lists, renames, deletes, exports and imports.

Each model is a folder named after it under the store (`$RS2SAM2_MODELS`, else `<cache root>/models`,
next to the weights cache; backend/weights/download.py): `model.safetensors` (an RS2-SAM 2 checkpoint,
carrying its configuration) and `meta.json` (the contract's `PersonModel`: name, date, starting model,
labels, scores, recipe; and `run_config`, the training run's settings). A model is chosen by its name
wherever a model name is accepted (`--model NAME`; backend/weights/models.py).

Writes are atomic: a model is written into a hidden folder of the store and renamed into place, so a
model that is listed is whole (a full disk leaves nothing half-written behind). One file carries a
model between machines: a zip of the two files (`export`, `import_model`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.contract import PersonModel, Scores, model_name_problem, to_wire
from backend.errors import UserError

STORE_ENV = "RS2SAM2_MODELS"
MODEL_FILE = "model.safetensors"
META_FILE = "meta.json"
EXPORT_SUFFIX = ".zip"
CHECKPOINT_FORMAT = "rs2sam2-checkpoint/1"
_MAX_IMPORT_BYTES = 8 << 30  # the largest model file a zip may unpack to


class StoreError(UserError):
    """A refused store operation; `code` and `status` are what the service answers with."""

    def __init__(self, message: str, code: str, status: int = 400):
        super().__init__(message)
        self.code, self.status = code, status


def store_dir() -> Path:
    """`$RS2SAM2_MODELS`, else `<cache root>/models`."""
    from backend.cache import cache_root

    override = os.environ.get(STORE_ENV)
    return Path(override).expanduser() if override else cache_root() / "models"


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def check_name(name: str) -> None:
    problem = model_name_problem(name)
    if problem:
        raise StoreError(problem, "bad_model_name")


def check_checkpoint(path: Path) -> None:
    """A readable safetensors file in this project's checkpoint format (its header alone is read)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise StoreError(f"{path.name} is not a readable model file ({exc})", "bad_model_file") from None
    if header.get("format") != CHECKPOINT_FORMAT or "config" not in header:
        raise StoreError(f"{path.name} is not an RS2-SAM 2 checkpoint of this project", "bad_model_file")


@dataclass(frozen=True)
class ModelStore:
    folder: Path

    @classmethod
    def default(cls) -> ModelStore:
        return cls(store_dir())

    # ---- reading
    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.folder.iterdir()
            if not entry.name.startswith(".") and (entry / MODEL_FILE).is_file()
        )

    def list(self) -> list[PersonModel]:
        return [self.get(name) for name in self.names()]

    def find(self, name: str) -> str | None:
        """The stored name equal to `name` up to case (names are unique without regard to case)."""
        wanted = name.casefold()
        return next((stored for stored in self.names() if stored.casefold() == wanted), None)

    def checkpoint(self, name: str) -> Path:
        return self._existing(name) / MODEL_FILE

    def get(self, name: str) -> PersonModel:
        folder = self._existing(name)
        meta = self.meta(name)
        return PersonModel.from_json(
            {**meta, "name": folder.name, "size_bytes": (folder / MODEL_FILE).stat().st_size}
        )

    def meta(self, name: str) -> dict[str, Any]:
        path = self._existing(name) / META_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        return data if isinstance(data, dict) else {}

    def _existing(self, name: str) -> Path:
        stored = self.find(name) if isinstance(name, str) else None
        if stored is None:
            raise StoreError(f"there is no model of yours named {name!r}", "unknown_model", 404)
        return self.folder / stored

    # ---- writing
    def check_free(self, name: str, overwrite: bool = False) -> None:
        """The name is valid and free (or `overwrite`): 400 bad_model_name, 409 model_exists."""
        check_name(name)
        existing = self.find(name)
        if existing is not None and not overwrite:
            raise StoreError(
                f"you already have a model named {existing!r}; choose another name or ask to replace it",
                "model_exists",
                409,
            )

    def add(
        self,
        name: str,
        checkpoint: Path,
        meta: dict[str, Any],
        overwrite: bool = False,
        move: bool = False,
    ) -> PersonModel:
        """Store `checkpoint` as model `name` with `meta` (PersonModel's fields, and more); atomic.
        `move`: take the file (same file system) rather than copying it."""
        self.check_free(name, overwrite)
        check_checkpoint(checkpoint)
        meta = {**meta, "name": name, "created": meta.get("created") or utc_now()}
        self.folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.folder, prefix=".incoming-"))
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide the model from others who read the store
        try:
            (shutil.move if move else shutil.copyfile)(str(checkpoint), str(staging / MODEL_FILE))
            (staging / META_FILE).write_text(
                json.dumps(to_wire(meta), indent=1, default=str), encoding="utf-8"
            )
            self._put_in_place(staging, name)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self.get(name)

    def _put_in_place(self, staging: Path, name: str) -> None:
        old = self.find(name)
        aside = None
        if old is not None:
            aside = self.folder / f".replaced-{old}-{os.getpid()}"
            os.replace(self.folder / old, aside)
        try:
            os.replace(staging, self.folder / name)
        except BaseException:
            if aside is not None:
                os.replace(aside, self.folder / old)
            raise
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)

    def rename(self, name: str, new_name: str, overwrite: bool = False) -> PersonModel:
        source = self._existing(name)
        if self.find(new_name) == source.name:  # only the case changes
            check_name(new_name)
        else:
            self.check_free(new_name, overwrite)
        meta = self.meta(name)
        meta["name"] = new_name
        staging = Path(tempfile.mkdtemp(dir=self.folder, prefix=".incoming-"))
        os.rmdir(staging)
        os.replace(source, staging)
        try:
            (staging / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
            self._put_in_place(staging, new_name)
        except BaseException:
            if staging.exists():
                os.replace(staging, source)
            raise
        return self.get(new_name)

    def delete(self, name: str) -> None:
        folder = self._existing(name)
        aside = self.folder / f".deleting-{folder.name}-{os.getpid()}"
        os.replace(folder, aside)  # gone from the list at once, whatever the removal meets
        shutil.rmtree(aside, ignore_errors=True)

    # ---- one file
    def export(self, name: str, target: Path) -> Path:
        """A zip of the model's two files; `target` a file or a folder (then `<name>.zip` in it)."""
        folder = self._existing(name)
        if target.is_dir():
            target = target / f"{folder.name}{EXPORT_SUFFIX}"
        tmp = target.with_name(f".{target.name}.part")
        try:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
                archive.write(folder / META_FILE, META_FILE)
                archive.write(folder / MODEL_FILE, MODEL_FILE)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def import_model(self, source: Path, name: str | None = None, overwrite: bool = False) -> PersonModel:
        """A model from an exported zip (or a bare checkpoint file), under `name` (default its own)."""
        if not source.is_file():
            raise StoreError(f"{source} does not exist", "not_found", 404)
        with tempfile.TemporaryDirectory(dir=self._scratch(), prefix=".import-") as scratch:
            if zipfile.is_zipfile(source):
                meta, checkpoint = _unpack(source, Path(scratch))
            else:
                meta, checkpoint = {"start_model": "", "labels": 0}, source
            chosen = name or meta.get("name") or source.stem
            meta.setdefault("imported_from", source.name)
            return self.add(chosen, checkpoint, meta, overwrite=overwrite, move=checkpoint != source)

    def _scratch(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder


def _unpack(source: Path, scratch: Path) -> tuple[dict[str, Any], Path]:
    with zipfile.ZipFile(source) as archive:
        names = set(archive.namelist())
        if MODEL_FILE not in names:
            raise StoreError(f"{source.name} holds no {MODEL_FILE}: not an exported model", "bad_model_file")
        info = archive.getinfo(MODEL_FILE)
        if info.file_size > _MAX_IMPORT_BYTES:
            raise StoreError(f"{source.name}'s model is larger than any RS2-SAM 2 model", "bad_model_file")
        meta: dict[str, Any] = {}
        if META_FILE in names:
            try:
                meta = json.loads(archive.read(META_FILE).decode("utf-8"))
            except ValueError:
                raise StoreError(f"{source.name}'s {META_FILE} is not JSON", "bad_model_file") from None
        with archive.open(info) as packed, open(scratch / MODEL_FILE, "wb") as unpacked:
            shutil.copyfileobj(packed, unpacked, 1 << 20)
    return (meta if isinstance(meta, dict) else {}), scratch / MODEL_FILE


def scores_of(summary: dict[str, Any] | None) -> Scores | None:
    """A metrics summary (training/metrics.py: "Pr@0.5" … "mIoU", "samples") as the contract's Scores."""
    return Scores.from_json(summary) if summary else None


def checkpoint_metadata(path: Path) -> dict[str, Any]:
    """The training metadata a checkpoint's header carries ({} when none or unreadable)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as handle:
            data = json.loads((handle.metadata() or {}).get("metadata", "{}"))
    except (SafetensorError, OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
