"""The `openvino` precision mode: masks agree with fp32's (mask IoU ≥ AGREEMENT_IOU) on the bundled demo
model, in both OpenVINO precisions; the conversion is cached by the encoder's weights (a second load
reads it, another model converts anew, a failed conversion leaves nothing behind); phrases of any
length and several per call; the CLI runs it end to end; what it cannot run is refused in a sentence."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from backend.bundled import DEMO_CHECKPOINT, DEMO_SCENE, demo_phrases
from backend.errors import UserError
from backend.model.factory import load_checkpoint, load_predictor
from backend.model.precision import AGREEMENT_IOU, Precision, resolve_precision
from backend.model.project.predictor import RS2SAM2Predictor
from bench.precision import reference_image
from tests.openvino_seed import seed

pytest.importorskip("openvino", reason="a dependency of the project (pyproject.toml)")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory, demo_openvino_conversion):
    """A cache holding the demo model's conversion (made once per test run: tests/openvino_seed.py)."""
    cache = tmp_path_factory.mktemp("shared-cache")
    seed(cache / "openvino", demo_openvino_conversion)
    return cache


@pytest.fixture(autouse=True)
def module_cache(shared_cache, monkeypatch):
    """The tests that only use the converted encoder share one conversion of the demo model."""
    monkeypatch.setenv("RS2SAM2_CACHE", str(shared_cache))


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """An empty cache of the test's own (the tests of converting and caching)."""
    monkeypatch.setenv("RS2SAM2_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "openvino"


@pytest.fixture(scope="module")
def demo_fp32_masks():
    predictor = load_predictor(checkpoint=DEMO_CHECKPOINT, device="cpu")
    return [p.probability > 0.5 for p in predictor.predict(reference_image(128), demo_phrases())]


def _openvino(hint: str) -> Precision:
    return Precision("openvino", "cpu", "openvino", openvino_hint=hint)


@pytest.mark.parametrize("hint", ["f32"])  # the demo model's 128 px are below bf16's size (precision.py)
def test_demo_model_masks_agree_with_fp32(hint, demo_fp32_masks):
    model, _ = load_checkpoint(DEMO_CHECKPOINT)
    predictor = RS2SAM2Predictor(model, "demo", precision=_openvino(hint))
    assert model.encoder_runtime is not None and model.encoder_runtime.hint == hint
    masks = [p.probability > 0.5 for p in predictor.predict(reference_image(128), demo_phrases())]
    assert all(mask.any() for mask in demo_fp32_masks)  # real objects found: the comparison means something
    assert min(_iou(a, b) for a, b in zip(masks, demo_fp32_masks)) >= AGREEMENT_IOU


def test_the_conversion_is_cached_by_the_encoders_weights(own_cache, capsys):
    model, _ = load_checkpoint(DEMO_CHECKPOINT)
    first = RS2SAM2Predictor(model, "demo", precision=_openvino("f32")).model.encoder_runtime
    assert first.converted_now and (first.cache_folder / "image_encoder.xml").is_file()
    assert "converting the image encoder for OpenVINO (once per model" in capsys.readouterr().err
    again, _ = load_checkpoint(DEMO_CHECKPOINT)
    second = RS2SAM2Predictor(again, "demo", precision=_openvino("f32")).model.encoder_runtime
    assert not second.converted_now and second.cache_folder == first.cache_folder
    changed, _ = load_checkpoint(DEMO_CHECKPOINT)
    with torch.no_grad():
        changed.adapters[0].fusion.down.weight.add_(0.01)  # other weights: another graph
    third = RS2SAM2Predictor(changed, "demo", precision=_openvino("f32")).model.encoder_runtime
    assert third.converted_now and third.cache_folder != first.cache_folder
    assert sorted(p.name for p in own_cache.iterdir()) == sorted(
        [first.cache_folder.name, third.cache_folder.name]
    )


def test_a_failed_conversion_leaves_nothing_in_the_cache(own_cache, monkeypatch):
    import openvino

    def fail(*args, **kwargs):
        raise RuntimeError("conversion failed")

    monkeypatch.setattr(openvino, "save_model", fail)
    model, _ = load_checkpoint(DEMO_CHECKPOINT)
    with pytest.raises(UserError, match="could not convert this model: conversion failed"):
        RS2SAM2Predictor(model, "demo", precision=_openvino("f32"))
    assert list(own_cache.iterdir()) == []  # no half-written model that a later run would read


def test_auto_chooses_openvino_from_512_px_and_falls_back_when_it_cannot_convert(
    own_cache, monkeypatch, capsys
):
    amx = frozenset({"amx_bf16"})
    chosen = resolve_precision("auto", "cpu", flags=amx, image_size=1024, converts_to_openvino=True)
    assert (chosen.name, chosen.requested, chosen.openvino_hint) == ("openvino", "auto", "bf16")
    assert chosen.fallback.name == "bf16" and chosen.describe().startswith("openvino (auto: OpenVINO")
    plain = resolve_precision(
        "auto", "cpu", flags=frozenset({"avx2"}), image_size=512, converts_to_openvino=True
    )
    assert (plain.openvino_hint, plain.fallback.name) == ("f32", "fp32")
    # The demo model's size, the paper family, and a Python without OpenVINO: the torch modes.
    assert (
        resolve_precision("auto", "cpu", flags=amx, image_size=128, converts_to_openvino=True).name == "fp32"
    )
    assert resolve_precision("auto", "cpu", flags=amx, image_size=1024).name == "bf16"
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert (
        resolve_precision("auto", "cpu", flags=amx, image_size=1024, converts_to_openvino=True).name == "bf16"
    )
    monkeypatch.delitem(sys.modules, "openvino")

    import openvino

    def fail(*args, **kwargs):
        raise RuntimeError("unsupported operation")

    monkeypatch.setattr(openvino, "convert_model", fail)
    model, _ = load_checkpoint(DEMO_CHECKPOINT)
    fallback = Precision("fp32", "cpu", "auto", "this CPU has no native bf16")
    auto = Precision("openvino", "cpu", "auto", "OpenVINO", openvino_hint="f32", fallback=fallback)
    predictor = RS2SAM2Predictor(model, "demo", precision=auto)
    assert predictor.precision == fallback and model.encoder_runtime is None
    assert "OpenVINO could not convert the model (RuntimeError: unsupported operation); running in fp32" in (
        capsys.readouterr().err
    )
    assert predictor.predict(reference_image(128), ["the dark lake"])[0].probability.shape == (128, 128)


def test_phrases_of_any_length_and_several_at_once_match_the_torch_encoder():
    model, _ = load_checkpoint(DEMO_CHECKPOINT)
    runtime = RS2SAM2Predictor(model, "demo", precision=_openvino("f32")).model.encoder_runtime
    phrases = ["lake", "the large dark lake in the middle of the brown fields near the road"]
    tokens = model.tokenize(phrases)
    images = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        text = model.text_proj(torch.randn(len(phrases), tokens.valid.shape[1], model.text_proj.in_features))
        expected_embedding, expected_high = model.encode_image_with_text_in_torch(images, text, ~tokens.valid)
        embedding, high = runtime(images, text, ~tokens.valid)
    assert embedding.shape == expected_embedding.shape and embedding.shape[0] == 2
    for got, want in zip([embedding, *high], [expected_embedding, *expected_high]):
        assert float((got - want).abs().max()) <= 1e-4 * float(want.abs().max())


def test_training_still_runs_the_torch_encoder():
    model, _ = load_checkpoint(DEMO_CHECKPOINT)
    RS2SAM2Predictor(model, "demo", precision=_openvino("f32"))
    from backend.model.preprocess import image_to_tensor, preprocess_batch

    sam, clip = preprocess_batch(image_to_tensor(reference_image(128)), model.config)
    out = model(sam, clip, model.tokenize(["the dark lake"]))
    out.logits.mean().backward()  # gradients flow: OpenVINO is only used without them
    assert model.adapters[0].fusion.down.weight.grad is not None


def test_what_openvino_cannot_run_is_refused_in_a_sentence(monkeypatch):
    with pytest.raises(UserError, match="openvino runs on the CPU only"):
        resolve_precision("openvino", "cuda")
    chosen = resolve_precision("openvino", "cpu", flags=frozenset({"avx2"}), image_size=1024)
    assert chosen.openvino_hint == "f32" and chosen.describe().startswith("openvino (OpenVINO 20")
    assert (
        resolve_precision("openvino", "cpu", flags=frozenset({"amx_bf16"}), image_size=1024).openvino_hint
        == "bf16"
    )
    assert (
        resolve_precision("openvino", "cpu", flags=frozenset({"amx_bf16"}), image_size=128).openvino_hint
        == "f32"
    )
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    with pytest.raises(UserError, match="needs the `openvino` package"):
        resolve_precision("openvino", "cpu")


def test_the_command_line_segments_with_openvino(tmp_path, capsys):
    import pyogrio
    import shapely

    from backend.cli import main

    outputs = {}
    for mode in ("fp32", "openvino"):
        out = tmp_path / f"{mode}.gpkg"
        assert main(["segment", str(DEMO_SCENE), "the dark lake", "-o", str(out), "--precision", mode]) == 0
        outputs[mode] = shapely.union_all(shapely.from_wkb(pyogrio.raw.read(str(out))[2]))
    assert "precision openvino (OpenVINO" in capsys.readouterr().err
    reference, got = outputs["fp32"], outputs["openvino"]
    assert reference.area > 0
    assert (
        shapely.area(shapely.intersection(reference, got)) / shapely.area(shapely.union(reference, got))
        >= 0.97
    )
