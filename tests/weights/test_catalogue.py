"""`rs2sam2 models`: what the backend can serve and download, and what is already in the cache (the model
manager of the QGIS plugin reads its --json)."""

from __future__ import annotations

import argparse
import json

from backend.bundled import DEMO_CHECKPOINT
from backend.weights import catalogue
from backend.weights.registry import PRESET_WEIGHTS


def _listing(cache, capsys) -> dict:
    assert catalogue.run(argparse.Namespace(cache=str(cache), json=True)) == 0
    return json.loads(capsys.readouterr().out)


def test_the_listing_names_the_demo_model_and_each_presets_files(tmp_path, capsys):
    listing = _listing(tmp_path, capsys)
    assert listing["cache"] == str(tmp_path)
    entries = {entry["id"]: entry for entry in listing["models"]}
    demo = entries["demo"]
    assert demo["servable"] and demo["present"] and demo["checkpoint"] == str(DEMO_CHECKPOINT)
    assert demo["size_bytes"] == DEMO_CHECKPOINT.stat().st_size
    for preset, weights in PRESET_WEIGHTS.items():
        entry = entries[f"preset:{preset}"]
        assert entry["download"] == ["--preset", preset] and not entry["servable"]
        assert entry["files"] == [str(tmp_path / weight.name) for weight in weights]
        assert not entry["present"] and entry["size_bytes"] == 0


def test_files_in_the_cache_count_as_present_with_their_size(tmp_path, capsys):
    weights = PRESET_WEIGHTS["tiny"]
    (tmp_path / weights[0].name).write_bytes(b"x" * 1000)
    half = {entry["id"]: entry for entry in _listing(tmp_path, capsys)["models"]}["preset:tiny"]
    assert not half["present"] and half["size_bytes"] == 1000  # one of two files: not there yet
    (tmp_path / weights[1].name).write_bytes(b"y" * 24)
    whole = {entry["id"]: entry for entry in _listing(tmp_path, capsys)["models"]}["preset:tiny"]
    assert whole["present"] and whole["size_bytes"] == 1024


def test_the_table_for_people(tmp_path, capsys):
    assert catalogue.run(argparse.Namespace(cache=str(tmp_path), json=False)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"cache: {tmp_path}"
    assert any(line.split()[0] == "demo" and "servable" in line for line in lines[1:])
    assert any(line.split()[0] == "preset:large" and "not here" in line for line in lines[1:])
