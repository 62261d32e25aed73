"""A person's own models: `rs2sam2 models list|rename|delete|export|import --json` (what the plugin's
model manager runs) over the store of backend/weights/person_models.py, and the names they are chosen
by wherever a model name is accepted."""

from __future__ import annotations

import json
import zipfile

import pytest

from backend.bundled import DEMO_CHECKPOINT
from backend.cli import main as rs2sam2
from backend.weights.models import list_models, model_status
from backend.weights.person_models import MODEL_FILE, ModelStore, StoreError


@pytest.fixture
def store(tmp_path, monkeypatch) -> ModelStore:
    monkeypatch.setenv("RS2SAM2_MODELS", str(tmp_path / "models"))
    return ModelStore.default()


def cli(capsys, *args: str) -> tuple[int, dict | None, str]:
    code = rs2sam2(["models", *args])
    captured = capsys.readouterr()
    out = captured.out.strip()
    return code, (json.loads(out) if out.startswith("{") else None), captured.err


def test_import_list_rename_export_delete(store, tmp_path, capsys):
    code, model, _ = cli(capsys, "import", str(DEMO_CHECKPOINT), "--name", "my roofs", "--json")
    assert code == 0 and model["name"] == "my roofs" and model["size_bytes"] == DEMO_CHECKPOINT.stat().st_size
    code, listing, _ = cli(capsys, "list", "--json")
    assert [m["name"] for m in listing["person_models"]] == ["my roofs"]
    assert {"id": "person:my roofs", "kind": "person", "servable": True}.items() <= {
        k: v for entry in listing["models"] if entry["id"] == "person:my roofs" for k, v in entry.items()
    }.items()
    status = model_status("my roofs")  # `--model "my roofs"` wherever a model name is accepted
    assert status.source == "person" and status.available and status.path == store.checkpoint("my roofs")

    code, renamed, _ = cli(capsys, "rename", "my roofs", "Roofs 2026", "--json")
    assert code == 0 and renamed["name"] == "Roofs 2026" and store.names() == ["Roofs 2026"]
    code, exported, _ = cli(capsys, "export", "Roofs 2026", str(tmp_path), "--json")
    archive = tmp_path / "Roofs 2026.zip"
    assert code == 0 and exported["file"] == str(archive)
    assert set(zipfile.ZipFile(archive).namelist()) == {"meta.json", MODEL_FILE}

    code, _, err = cli(capsys, "import", str(archive))
    assert code == 2 and "already have a model named 'Roofs 2026'" in err
    code, again, _ = cli(capsys, "import", str(archive), "--overwrite", "--json")
    assert code == 0 and again["name"] == "Roofs 2026" and again["created"] == renamed["created"]
    code, copy, _ = cli(capsys, "import", str(archive), "--name", "copy", "--json")
    assert code == 0 and store.names() == ["Roofs 2026", "copy"]

    code, deleted, _ = cli(capsys, "delete", "copy", "--json")
    assert code == 0 and deleted == {"deleted": "copy"} and store.names() == ["Roofs 2026"]
    assert [s.name for s in list_models() if s.source == "person"] == ["Roofs 2026"]


@pytest.mark.parametrize("name", ["a/b", "..", "../up", " lead", "x" * 65, "demo", "Tiny", "a\\b", "a:b"])
def test_names_are_checked(store, name):
    with pytest.raises(StoreError) as refused:
        store.import_model(DEMO_CHECKPOINT, name=name)
    assert refused.value.code == "bad_model_name"
    assert store.names() == []


def test_names_are_unique_regardless_of_case(store):
    store.import_model(DEMO_CHECKPOINT, name="Roofs")
    with pytest.raises(StoreError) as refused:
        store.import_model(DEMO_CHECKPOINT, name="roofs")
    assert refused.value.status == 409 and refused.value.code == "model_exists"
    store.import_model(DEMO_CHECKPOINT, name="roofs", overwrite=True)
    assert store.names() == ["roofs"]
    store.rename("roofs", "ROOFS")  # only the case changes: allowed
    assert store.names() == ["ROOFS"]


def test_files_that_are_not_models_are_refused(store, tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(StoreError, match="not"):
        store.import_model(junk, name="junk")
    empty_zip = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty_zip, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(StoreError, match="no model.safetensors"):
        store.import_model(empty_zip, name="zip")
    with pytest.raises(StoreError) as missing:
        store.delete("nothing")
    assert missing.value.status == 404
    assert store.names() == [] and not [p for p in store.folder.iterdir() if p.name.startswith(".")]
