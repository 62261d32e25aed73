"""Strict loading stays the default; `rs2sam2 weights import FOLDER --allow-key-differences` is the
explicit way to load a published folder whose keys differ from this code's: extra keys ignored and
missing keys of weights the model never uses set to zero, both listed loudly and kept in the
checkpoint's metadata; a missing weight the model uses (or a wrongly shaped one) is refused even so."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from backend.cli import main as cli_main
from backend.errors import UserError
from backend.model.checkpoint import read_checkpoint
from backend.model.factory import load_predictor
from backend.model.paper.folder import load_published_folder, unused_keys
from backend.model.presets import get_preset
from tests.model.paper.conftest import published_state, write_published_folder

EXTRA = "visual_model.sam_mask_decoder.lora_A.weight"


def _folder(tmp_path, model, spm_file, drop=(), extra=True):
    state = published_state(model)
    for key in drop:
        del state[key]
    if extra:
        state[EXTRA] = torch.zeros(2, 2)
    return write_published_folder(tmp_path / "rrsisd", state, spm_file)


def test_unused_keys_are_outside_the_data_flow(paper_test_model):
    unused = unused_keys(paper_test_model)
    assert (
        "meo_linear.weight" in unused
        and "visual_model.sam_mask_decoder.iou_prediction_head.layers.0.weight" in unused
    )
    # What the forward reads is never among them (the dense positional encoding, the heads, the adapters).
    for used in (
        "visual_model.sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
        "text_feat_linear.weight",
        "text2one_linear.weight",
        "visual_model.sam_mask_decoder.output_hypernetworks_mlps.0.layers.0.weight",
        "visual_model.no_mem_embed",
    ):
        assert used not in unused


def test_strict_by_default_and_loudly_lenient_when_asked(
    tmp_path, paper_test_model, spm_file, paper_test_published, capsys
):
    folder = _folder(tmp_path, paper_test_model, spm_file, drop=["meo_linear.weight", "meo_linear.bias"])
    with pytest.raises(UserError, match=r"missing keys meo_linear\.bias.*unexpected keys visual_model"):
        load_published_folder(folder, get_preset("paper-test"))
    cache = tmp_path / "cache"
    assert cli_main(["weights", "import", str(folder), "--model", "paper-test", "--cache", str(cache)]) == 2
    assert "do not match this model" in capsys.readouterr().err
    code = cli_main(
        [
            "weights",
            "import",
            str(folder),
            "--model",
            "paper-test",
            "--cache",
            str(cache),
            "--allow-key-differences",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("WARNING: the model folder")
    assert f"1 unexpected key(s) ignored: {EXTRA}" in captured.err
    assert (
        "2 missing key(s) of weights the model does not use, set to zero: meo_linear.bias, meo_linear.weight"
        in (captured.err)
    )
    checkpoint = next(cache.rglob("*.safetensors"))
    _, state, metadata = read_checkpoint(checkpoint)
    assert "meo_linear.bias" in metadata["key_differences"] and EXTRA not in state
    assert float(state["meo_linear.weight"].abs().sum()) == 0
    # The weights it does use are the folder's: the same masks as the model it was written from.
    predictor = load_predictor(checkpoint=checkpoint, device="cpu", precision="fp32")
    image = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    (got,) = predictor.predict(image, ["the red roof"])
    from backend.model.paper.predictor import PaperPredictor

    original = PaperPredictor(paper_test_model, "original")
    (want,) = original.predict(image, ["the red roof"])
    assert float(np.abs(got.probability - want.probability).max()) < 1e-5
    assert json.dumps(metadata)  # plain data


@pytest.mark.parametrize(
    "drop,shape",
    [(["text_feat_linear.weight"], None), ([], (3, 3))],
    ids=["missing-used-weight", "wrong-shape"],
)
def test_what_the_model_uses_is_refused_even_with_differences_allowed(
    tmp_path, paper_test_model, spm_file, drop, shape
):
    state = published_state(paper_test_model)
    for key in drop:
        del state[key]
    if shape is not None:
        state["text_feat_linear.weight"] = torch.zeros(shape)
    folder = write_published_folder(tmp_path / "rrsisd", state, spm_file)
    message = (
        r"lack 1 weight\(s\) the model uses \(text_feat_linear\.weight\)"
        if drop
        else r"wrongly shaped keys text_feat"
    )
    with pytest.raises(UserError, match=message):
        load_published_folder(folder, get_preset("paper-test"), allow_key_differences=True)
