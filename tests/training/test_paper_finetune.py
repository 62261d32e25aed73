"""Fine-tuning the paper's published model family on a user's region (`rs2sam2 train --model NAME`):
the reference's freezing rules and learning rates, its preprocessing, and a checkpoint that loads as the
same family and segments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from backend.cli import main as rs2sam2
from backend.model.checkpoint import save_checkpoint
from backend.model.factory import load_checkpoint, make_predictor
from backend.model.paper.build import build_paper_model
from backend.model.preprocess import preprocess_image, reference_preprocess
from backend.model.presets import get_preset
from backend.weights.registry import PAPER_WEIGHTS, PaperWeights
from tests.model.paper.conftest import paper_test_model, spm_file  # noqa: F401


@pytest.fixture()
def cached_paper_test(tmp_path, monkeypatch, paper_test_model):  # noqa: F811
    """`paper-test` as if downloaded: registered by name, its converted checkpoint in the cache."""
    monkeypatch.setitem(PAPER_WEIGHTS, "paper-test", PaperWeights("paper-test", "rrsisd", "small test model"))
    monkeypatch.setenv("RS2SAM2_CACHE", str(tmp_path / "home"))
    (tmp_path / "home" / "weights").mkdir(parents=True)
    return save_checkpoint(tmp_path / "home" / "weights" / "paper-test.safetensors", paper_test_model)


def test_the_paper_family_trains_as_the_reference_freezes_it():
    model = build_paper_model(get_preset("paper-test"))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    encoder = [name for name, _ in model.visual_model.image_encoder.named_parameters()]
    assert encoder and all(
        (f"visual_model.image_encoder.{n}" in trainable) == ("_Adapter." in n) for n in encoder
    )
    assert any(n.startswith("visual_model.sam_mask_decoder.transformer") for n in trainable)
    assert not any(
        n.startswith(("mm_extractor.", "meo_linear.")) for n in trainable
    )  # BEiT-3 frozen unless asked
    groups = {g["name"]: g for g in model.param_groups(lr_new=1e-4, lr_rest=5e-5)}
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(
        "Adapter" in names[id(p)] or "fusion" in names[id(p)] or names[id(p)].startswith(("vmtoken", "mask_"))
        for p in groups["new"]["params"]
    )
    assert {"text_feat_linear.weight", "text_hidden_fcs.0.0.weight"} <= {
        names[id(p)] for p in groups["rest"]["params"]
    }
    model.unfreeze_union_encoder()
    assert all(p.requires_grad for p in model.mm_extractor.parameters())


def test_training_batches_use_the_reference_preprocessing(paper_test_model):  # noqa: F811
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    config = paper_test_model.config
    images = preprocess_image(image, config)
    assert torch.equal(images.sam, reference_preprocess(image, config.image_size)[0])
    assert torch.equal(images.clip, reference_preprocess(image, config.beit3_image_size)[0])


def test_train_by_name_on_a_region_then_segment(cached_paper_test, tmp_path, capsys):
    from training.data.synthetic import generate_scene, write_region

    # a region as a person gives it: a GeoTIFF and a GeoPackage of labelled polygons (phrase column)
    raster, vector = write_region(generate_scene(7, size=96), tmp_path / "region", name="mine")
    out = tmp_path / "run"
    code = rs2sam2(
        ["train", "--model", "paper-test", "--data", f"region:{raster},{vector}", "--out", str(out)]
        + ["--max-steps", "2", "--chips-per-feature", "1"]
        + ["--batch-size", "2", "--val-limit", "2", "--device", "cpu", "--no-progress", "--lr-new", "1e-3"]
        + ["--log-every", "1"]
    )
    assert code == 0, capsys.readouterr().err
    start, final = load_file(str(cached_paper_test)), load_file(str(out / "final.safetensors"))
    moved = {k for k in start if not torch.equal(start[k], final[k])}
    assert any("Space_Adapter" in k for k in moved) and any("vlfusion_module" in k for k in moved)
    frozen_trunk = [k for k in start if ".trunk." in k and "_Adapter." not in k]
    assert frozen_trunk and not moved & set(frozen_trunk)
    assert not any(k.startswith("mm_extractor.") for k in moved)

    model, _ = load_checkpoint(out / "final.safetensors")
    assert model.config.family == "paper" and model.tokenizer is not None
    image = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    [prediction] = make_predictor(model, "tuned").predict(image, ["the red roof"])
    assert prediction.probability.shape == (40, 40)
