"""The cache of OpenVINO conversions cannot serve the wrong model or grow without end: its key covers
every tensor the exported graph holds (each one changed gives another key, and another conversion), the
configuration and the code that hold the graph's constants; it is bounded and evicts the least recently
used conversion; staging folders left by a killed conversion go at the next start; a cached conversion
that no longer loads is discarded and converted again, once, saying so; models without saved weights
are not cached; `rs2sam2 weights cache` shows, bounds and clears it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from backend.bundled import DEMO_CHECKPOINT, demo_phrases
from backend.errors import UserError
from backend.model import openvino_cache
from backend.model.factory import load_checkpoint, load_predictor
from backend.model.openvino_encoder import (
    PhraseImageEncoder,
    _code_files,
    _example_inputs,
    cache_key,
    graph_tensors,
)
from backend.model.precision import Precision
from backend.model.project.predictor import RS2SAM2Predictor
from bench.precision import reference_image
from tests.openvino_seed import seed

openvino = pytest.importorskip("openvino", reason="a dependency of the project (pyproject.toml)")
pytestmark = pytest.mark.slow  # conversions of 10–30 s each on the shared 2-core machine


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RS2SAM2_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(openvino_cache.LIMIT_ENV, raising=False)
    return tmp_path / "cache" / "openvino"


@pytest.fixture
def seeded(own_cache, demo_openvino_conversion):
    """The test's own cache, already holding the demo model's conversion (made once per test run, as an
    earlier start of the backend would have left it): for tests whose subject is what happens next."""
    return seed(own_cache, demo_openvino_conversion)


def _openvino() -> Precision:
    return Precision("openvino", "cpu", "openvino", openvino_hint="f32")


def _lifted(model) -> list[str]:
    """The names (from the model's encoder module) of every tensor `torch.export` lifts into the graph
    the conversion reads and that the graph uses: parameters, buffers and constant tensors."""
    with torch.no_grad():
        exported = torch.export.export(PhraseImageEncoder(model).eval(), _example_inputs(model), strict=False)
    placeholders = {node.name: node for node in exported.graph_module.graph.nodes if node.op == "placeholder"}
    return [
        spec.target
        for spec in exported.graph_signature.input_specs
        if spec.kind.name != "USER_INPUT" and placeholders[spec.arg.name].users
    ]


def _resolve(model, target: str) -> torch.Tensor:
    value = PhraseImageEncoder(model)
    for name in target.split("."):
        value = getattr(value, name)
    return value


def _key(model) -> str:
    return cache_key(model, model.config.image_size, model.config.text_context_length, openvino.__version__)


def _every_lifted_tensor_changes_the_key(model) -> int:
    lifted = _lifted(model)
    assert lifted, "the export lifted no tensor: the test would prove nothing"
    hashed = {id(tensor) for tensor in graph_tensors(model).values()}
    base = _key(model)
    for target in lifted:
        tensor = _resolve(model, target)
        assert id(tensor) in hashed, f"{target} is in the exported graph but not in the cache key"
        with torch.no_grad():
            flat = tensor.data.view(-1)
            before = flat[0].clone()
            flat[0] += 1
            try:
                assert _key(model) != base, f"changing {target} left the cache key as it was"
            finally:
                flat[0] = before
    assert _key(model) == base  # restored: the key is a function of the values
    return len(lifted)


def test_every_tensor_of_the_exported_graph_is_in_the_key_project_family():
    model, _ = load_checkpoint(DEMO_CHECKPOINT)
    names = _lifted(model)
    # The parts the old key missed are in the graph, and so in the key now.
    assert "model.sam.no_mem_embed" in names
    assert any(name.startswith("model.sam.sam_mask_decoder.conv_s0.") for name in names)
    assert _every_lifted_tensor_changes_the_key(model) == len(names)


def test_the_graphs_constants_are_in_the_key():
    """Its literals come from the configuration (α, widths …) and from the code of its modules."""
    model, _ = load_checkpoint(DEMO_CHECKPOINT)
    base = _key(model)
    model.config = model.config.replace(bhf_text_alpha=0.3)
    assert _key(model) != base
    names = {path.name for path in _code_files(model)}
    assert {"bhf.py", "rs2sam2.py", "sam2_loading.py", "hieradet.py"} <= names


def _runtime(model):
    return RS2SAM2Predictor(model, "demo", precision=_openvino()).model.encoder_runtime


@pytest.mark.parametrize("part", ["no_mem_embed", "conv_s0"])
def test_a_changed_model_gets_its_own_conversion_and_over_the_bound_the_older_goes(
    own_cache, seeded, monkeypatch, capsys, part
):
    """Changed only in a tensor an older key did not hash; with room for one conversion in the cache."""
    first = _runtime(load_checkpoint(DEMO_CHECKPOINT)[0])  # the demo's conversion, read from the cache
    assert first.cache_folder == seeded and not first.converted_now
    size_mb = openvino_cache.entries(own_cache)[0].size_bytes / 2**20
    monkeypatch.setenv(openvino_cache.LIMIT_ENV, str(1.5 * size_mb))  # room for one conversion
    changed, _ = load_checkpoint(DEMO_CHECKPOINT)
    with torch.no_grad():
        tensor = (
            changed.sam.no_mem_embed if part == "no_mem_embed" else changed.sam.sam_mask_decoder.conv_s0.bias
        )
        tensor.add_(0.5)
    second = _runtime(changed)
    # The cache held the demo's conversion, whose key the changed model's must not match.
    assert second.converted_now and second.cache_folder != first.cache_folder
    # Over the bound, the older conversion went (the one just made stays), and that was said.
    assert [e.folder for e in openvino_cache.entries(own_cache)] == [second.cache_folder]
    assert not first.cache_folder.exists()
    assert "removed 1 least recently used OpenVINO conversion(s)" in capsys.readouterr().err
    # …and what it computes is its own: the converted encoder follows the changed tensor.
    images = torch.rand(1, 3, 128, 128)
    text = torch.randn(1, 4, changed.text_proj.out_features)
    padding = torch.zeros(1, 4, dtype=torch.bool)
    with torch.no_grad():
        want, want_high = changed.encode_image_with_text_in_torch(images, text, padding)
    got, got_high = second(images, text, padding)
    for g, w in zip([got, *got_high], [want, *want_high]):
        assert float((g - w).abs().max()) <= 1e-4 * float(w.abs().max())


def _fake_entry(cache, key: str, megabytes: float, used: float):
    folder = cache / key
    folder.mkdir(parents=True)
    (folder / openvino_cache.IR_NAME).write_text("<net/>")
    (folder / "image_encoder.bin").write_bytes(b"\0" * int(megabytes * 2**20))
    (folder / openvino_cache.LAST_USED).touch()
    os.utime(folder / openvino_cache.LAST_USED, (used, used))
    return folder


def test_the_bound_evicts_the_least_recently_used_first(own_cache, monkeypatch):
    now = time.time()
    a = _fake_entry(own_cache, "a" * 32, 1, now - 30)
    b = _fake_entry(own_cache, "b" * 32, 1, now - 20)
    c = _fake_entry(own_cache, "c" * 32, 1, now - 10)
    assert [e.key for e in openvino_cache.entries(own_cache)] == [c.name, b.name, a.name]
    openvino_cache.mark_used(a)  # a is used again: now b is the least recently used
    removed = openvino_cache.evict(own_cache, limit=2.5)
    assert [e.key for e in removed] == [b.name] and a.exists() and c.exists() and not b.exists()
    # The entry just made stays even when it alone is over the bound.
    assert [e.key for e in openvino_cache.evict(own_cache, keep=frozenset({c.name}), limit=0.5)] == [a.name]
    assert [e.key for e in openvino_cache.entries(own_cache)] == [c.name]
    # The bound is a setting: the environment, else the cache's settings file, else the default.
    assert openvino_cache.limit_mb(own_cache) == openvino_cache.DEFAULT_LIMIT_MB
    openvino_cache.set_limit_mb(own_cache, 12.5)
    assert openvino_cache.limit_mb(own_cache) == 12.5
    monkeypatch.setenv(openvino_cache.LIMIT_ENV, "3")
    assert openvino_cache.limit_mb(own_cache) == 3
    monkeypatch.setenv(openvino_cache.LIMIT_ENV, "lots")
    with pytest.raises(UserError, match="must be a number of MB"):
        openvino_cache.limit_mb(own_cache)


def test_staging_folders_of_killed_conversions_are_removed_at_the_next_start(own_cache, seeded):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    key = "0" * 32
    left_by_the_dead = own_cache / f".{key}-{dead.pid}-x1y2"
    named_before_pids = own_cache / f".{key}-k3j4l5m6"
    running_here = own_cache / f".{key}-{os.getpid()}-a7b8"
    for folder in (left_by_the_dead, named_before_pids, running_here):
        folder.mkdir()
        (folder / "image_encoder.bin").write_bytes(b"\0" * 1000)
    runtime = _runtime(load_checkpoint(DEMO_CHECKPOINT)[0])
    assert not left_by_the_dead.exists() and not named_before_pids.exists()
    assert running_here.exists()  # a conversion still running (here: this process) keeps its folder
    assert runtime.cache_folder == seeded
    assert sorted(p.name for p in own_cache.iterdir()) == sorted(
        [runtime.cache_folder.name, running_here.name]
    )


@pytest.mark.parametrize("damage", ["bin-cut-short", "xml-garbage"])
def test_a_cached_conversion_that_does_not_load_is_converted_again_once_and_says_so(
    own_cache, seeded, capsys, damage
):
    model, _ = load_checkpoint(DEMO_CHECKPOINT)
    image = reference_image(128)
    predictor = RS2SAM2Predictor(model, "demo", precision=_openvino())
    expected = [p.probability for p in predictor.predict(image, demo_phrases())]
    folder = model.encoder_runtime.cache_folder
    assert folder == seeded and not model.encoder_runtime.converted_now
    capsys.readouterr()
    if damage == "bin-cut-short":
        weights = folder / "image_encoder.bin"
        whole = weights.stat().st_size
        with open(weights, "r+b") as handle:
            handle.truncate(whole // 2)
    else:
        (folder / openvino_cache.IR_NAME).write_text("<net name='half")
    again, _ = load_checkpoint(DEMO_CHECKPOINT)
    predictor = RS2SAM2Predictor(again, "demo", precision=_openvino())
    err = capsys.readouterr().err
    assert f"the cached OpenVINO conversion in {folder} could not be loaded" in err
    assert "discarding it and converting the image encoder again" in err and "could not convert" not in err
    assert again.encoder_runtime.converted_now and predictor.precision.name == "openvino"
    got = [p.probability for p in predictor.predict(image, demo_phrases())]
    assert all(float(abs(g - e).max()) < 1e-4 for g, e in zip(got, expected))
    # The cache holds the new, whole conversion: the next start reads it without converting.
    third, _ = load_checkpoint(DEMO_CHECKPOINT)
    RS2SAM2Predictor(third, "demo", precision=_openvino())
    assert not third.encoder_runtime.converted_now and "could not be loaded" not in capsys.readouterr().err


def test_when_the_conversion_again_fails_too_the_error_says_it_could_not_convert(
    own_cache, seeded, monkeypatch
):
    model, _ = load_checkpoint(DEMO_CHECKPOINT)
    folder = _runtime(model).cache_folder
    assert folder == seeded
    (folder / openvino_cache.IR_NAME).write_text("not xml")
    calls = []

    def failing_convert(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("conversion failed")

    monkeypatch.setattr(openvino, "convert_model", failing_convert)
    with pytest.raises(UserError, match="could not convert this model: conversion failed"):
        _runtime(load_checkpoint(DEMO_CHECKPOINT)[0])
    assert calls == [1]  # once, not in a loop
    assert not folder.exists()


def test_a_model_without_saved_weights_is_not_cached(own_cache, capsys):
    predictor = load_predictor(preset="test", device="cpu", precision="openvino")
    runtime = predictor.model.encoder_runtime
    assert runtime is not None and runtime.converted_now and runtime.cache_folder is None
    assert "not cached: this model has no saved weights" in capsys.readouterr().err
    assert not own_cache.exists() or openvino_cache.entries(own_cache) == []
    assert predictor.predict(reference_image(128), ["the dark lake"])[0].probability.shape == (128, 128)


def test_the_weights_command_shows_bounds_and_clears_the_cache(own_cache, demo_openvino_conversion, capsys):
    from backend.cli import main

    seed(own_cache, demo_openvino_conversion)
    runtime = _runtime(load_checkpoint(DEMO_CHECKPOINT)[0])
    capsys.readouterr()
    assert main(["weights", "list"]) == 0
    assert f"OpenVINO conversions: 1 in {own_cache}" in capsys.readouterr().out
    assert main(["weights", "cache"]) == 0
    out = capsys.readouterr().out
    assert runtime.cache_folder.name in out and f"at most {openvino_cache.DEFAULT_LIMIT_MB:g} MB" in out
    assert main(["weights", "cache", "--max-mb", "0"]) == 0  # a bound of 0 empties it
    out = capsys.readouterr().out
    assert "removed 1 least recently used conversion(s)" in out and "at most 0 MB" in out
    assert openvino_cache.entries(own_cache) == [] and openvino_cache.limit_mb(own_cache) == 0
    assert main(["weights", "cache", "--max-mb", "100"]) == 0
    seed(own_cache, demo_openvino_conversion)
    _runtime(load_checkpoint(DEMO_CHECKPOINT)[0])
    assert main(["weights", "cache", "--clear"]) == 0
    assert "removed 1 conversion(s)" in capsys.readouterr().out
    assert openvino_cache.entries(own_cache) == [] and openvino_cache.limit_mb(own_cache) == 100
    assert main(["weights", "cache", "--max-mb", "-1"]) == 2
