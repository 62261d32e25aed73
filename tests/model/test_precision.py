"""Precision modes: each mode's masks agree with fp32's on small models of both families (mask IoU at
least AGREEMENT_IOU, the bound `auto` is held to), `auto` resolves to a mode and says which, and a mode
this machine cannot run is refused in one sentence (CPU features simulated)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.bundled import DEMO_CHECKPOINT, demo_phrases
from backend.errors import UserError
from backend.model.factory import load_predictor
from backend.model.precision import (
    AGREEMENT_IOU,
    BF16_MIN_IMAGE_SIZE,
    Precision,
    cpu_flags,
    resolve_precision,
)
from backend.model.project.predictor import RS2SAM2Predictor
from bench.precision import reference_image

WITH_BF16 = frozenset({"avx512f", "avx512_bf16", "amx_bf16"})
WITHOUT_BF16 = frozenset({"avx2", "avx512f", "fma"})
# bf16 built directly, so that its agreement is tested on any CPU (emulated where not native: slower only).
MODES = {
    "bf16": Precision("bf16", "cpu", "bf16", convert_weights=True),
    "int8": Precision("int8", "cpu", "int8"),
}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


@pytest.fixture(scope="module")
def demo_fp32_masks():
    predictor = load_predictor(checkpoint=DEMO_CHECKPOINT, device="cpu")
    return [p.probability > 0.5 for p in predictor.predict(reference_image(128), demo_phrases())]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_demo_model_masks_agree_with_fp32(mode, demo_fp32_masks):
    from backend.model.factory import load_checkpoint

    model, _ = load_checkpoint(DEMO_CHECKPOINT)
    predictor = RS2SAM2Predictor(model, "demo", precision=MODES[mode])
    masks = [p.probability > 0.5 for p in predictor.predict(reference_image(128), demo_phrases())]
    assert all(mask.any() for mask in demo_fp32_masks)  # real objects found: the comparison means something
    assert min(_iou(a, b) for a, b in zip(masks, demo_fp32_masks)) >= AGREEMENT_IOU
    if mode == "bf16":
        assert next(model.sam.image_encoder.parameters()).dtype == torch.bfloat16  # weights stored in bf16
    else:
        assert model.adapters[0].fusion.down.weight().dtype == torch.qint8  # int8 weights


def test_auto_resolves_to_a_mode_and_says_which():
    fast = resolve_precision("auto", "cpu", flags=WITH_BF16, image_size=1024)
    assert (fast.name, fast.requested, fast.convert_weights) == ("bf16", "auto", True)
    assert fast.describe() == "bf16 (auto: native bf16 on this CPU)"
    plain = resolve_precision("auto", "cpu", flags=WITHOUT_BF16, image_size=1024)
    assert plain.describe() == "fp32 (auto: this CPU has no native bf16)"
    small = resolve_precision("auto", "cpu", flags=WITH_BF16, image_size=BF16_MIN_IMAGE_SIZE // 4)
    assert small.name == "fp32" and "does not pay" in small.describe()


@pytest.mark.parametrize(
    "flags,reason",
    [
        (WITH_BF16, f"bf16 does not pay below {BF16_MIN_IMAGE_SIZE} px"),
        (WITHOUT_BF16, "this CPU has no native bf16"),
    ],
    ids=["bf16-cpu", "plain-cpu"],
)
def test_auto_through_the_loader_picks_the_rules_mode_on_each_simulated_cpu(monkeypatch, flags, reason):
    """The `test` preset (128 px, below bf16's size) runs fp32 on both CPUs, each for its own reason."""
    monkeypatch.setattr("backend.model.precision.cpu_flags", lambda: flags)
    predictor = load_predictor(preset="test", device="cpu", precision="auto")
    assert predictor.precision.describe() == f"fp32 (auto: {reason})"


def test_bf16_is_refused_on_a_cpu_without_native_bf16(monkeypatch):
    with pytest.raises(UserError, match="native bf16 instructions .* use --precision fp32 or int8"):
        resolve_precision("bf16", "cpu", flags=WITHOUT_BF16)
    assert resolve_precision("bf16", "cpu", flags=WITH_BF16).name == "bf16"
    # Through the loader, with the detection itself simulated: refused before any model is built.
    monkeypatch.setattr("backend.model.precision.cpu_flags", lambda: WITHOUT_BF16)
    with pytest.raises(UserError, match="native bf16"):
        load_predictor(preset="test", device="cpu", precision="bf16")


def test_unknown_and_impossible_modes_are_refused():
    with pytest.raises(UserError, match="Unknown precision 'fp8'"):
        resolve_precision("fp8", "cpu")
    with pytest.raises(UserError, match="int8 runs on the CPU only"):
        resolve_precision("int8", "cuda")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 avx512_bf16\n\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_a_predictor_around_a_model_in_training_leaves_its_weights_alone(test_model):
    RS2SAM2Predictor(test_model, "mid-training")
    assert all(p.dtype == torch.float32 for p in test_model.parameters())
