"""Published model folders (random weights, the layouts save_pretrained writes) load through the user's
path — strictly, with SAM 2's video modules dropped — and every broken folder gets its one clear error."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from backend.errors import UserError
from backend.model.factory import load_predictor
from backend.model.paper.folder import load_published_folder
from backend.model.presets import get_preset
from backend.weights.paper import import_paper_folder
from tests.model.paper.conftest import published_state, write_published_folder

IMAGE = np.random.default_rng(3).integers(0, 256, (96, 120, 3), dtype=np.uint8)
PHRASES = ["the red roof", "a small pond by the road"]


@pytest.mark.parametrize(("kind", "shards"), [("safetensors", 1), ("safetensors", 3), ("bin", 1), ("bin", 2)])
def test_published_layouts_load_exactly(tmp_path, paper_test_model, spm_file, kind, shards):
    folder = write_published_folder(
        tmp_path / "rrsisd", published_state(paper_test_model), spm_file, kind, shards
    )
    model = load_published_folder(folder, get_preset("paper-test"))
    expected = paper_test_model.state_dict()
    loaded = model.state_dict()
    assert set(loaded) == set(expected)
    assert all(torch.equal(loaded[key], expected[key]) for key in expected)
    assert not any(t.is_meta for t in loaded.values())
    ids = model.tokenize(["the red roof"]).ids
    assert ids.tolist() == paper_test_model.tokenize(["the red roof"]).ids.tolist()


def test_folder_and_converted_checkpoint_predict_the_same(
    tmp_path, paper_test_model, spm_file, paper_test_published
):
    folder = write_published_folder(
        tmp_path / "rrsisd", published_state(paper_test_model), spm_file, shards=2
    )
    from_folder = load_predictor(preset="paper-test", checkpoint=folder, device="cpu")
    converted = import_paper_folder(folder, model="paper-test", cache=tmp_path / "cache")
    assert converted == tmp_path / "cache" / "paper-test.safetensors"
    from_file = load_predictor(checkpoint=converted, device="cpu")
    assert from_file.model_id == "paper-test" and from_file.default_threshold == 0.5
    a, b = from_folder.predict(IMAGE, PHRASES), from_file.predict(IMAGE, PHRASES)
    for pa, pb in zip(a, b, strict=True):
        assert pa.probability.shape == IMAGE.shape[:2]
        assert np.array_equal(pa.probability, pb.probability)
    with pytest.raises(UserError, match="already in the cache"):
        import_paper_folder(folder, model="paper-test", cache=tmp_path / "cache")


def _break(folder, state, spm_file, **changes):
    return write_published_folder(folder, state, spm_file, **changes)


def test_missing_key(tmp_path, paper_test_model, spm_file):
    state = published_state(paper_test_model)
    del state["mask_linear.weight"]
    folder = _break(tmp_path / "f", state, spm_file)
    with pytest.raises(UserError, match=r"missing keys mask_linear\.weight"):
        load_published_folder(folder, get_preset("paper-test"))


def test_wrong_shape(tmp_path, paper_test_model, spm_file):
    state = published_state(paper_test_model)
    state["text_feat_linear.weight"] = torch.zeros(3, 3)
    folder = _break(tmp_path / "f", state, spm_file, kind="bin")
    with pytest.raises(
        UserError, match=r"wrongly shaped keys text_feat_linear\.weight \(3, 3\) vs \(64, 64\)"
    ):
        load_published_folder(folder, get_preset("paper-test"))


def test_extra_unknown_key(tmp_path, paper_test_model, spm_file):
    state = published_state(paper_test_model)
    state["visual_model.sam_mask_decoder.lora_A.weight"] = torch.zeros(2, 2)
    folder = _break(tmp_path / "f", state, spm_file, shards=2)
    with pytest.raises(UserError, match=r"unexpected keys visual_model\.sam_mask_decoder\.lora_A\.weight"):
        load_published_folder(folder, get_preset("paper-test"))


def test_truncated_safetensors(tmp_path, paper_test_model, spm_file):
    folder = _break(tmp_path / "f", published_state(paper_test_model), spm_file)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) - 1000])
    with pytest.raises(UserError, match="truncated"):
        load_published_folder(folder, get_preset("paper-test"))


def test_truncated_bin(tmp_path, paper_test_model, spm_file):
    folder = _break(tmp_path / "f", published_state(paper_test_model), spm_file, kind="bin")
    data = (folder / "pytorch_model.bin").read_bytes()
    (folder / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_published_folder(folder, get_preset("paper-test"))


class Payload:
    """Anything but a tensor: unpickling it would run code of the file's choosing."""


def test_bin_holding_a_pickled_object(tmp_path, paper_test_model, spm_file):
    folder = _break(tmp_path / "f", published_state(paper_test_model), spm_file, kind="bin")
    torch.save({"mask_linear.weight": Payload()}, folder / "pytorch_model.bin")
    with pytest.raises(UserError, match="cannot be read safely: it holds pickled Python objects"):
        load_published_folder(folder, get_preset("paper-test"))


def test_other_folder_problems(tmp_path, paper_test_model, spm_file):
    state = published_state(paper_test_model)
    with pytest.raises(UserError, match="does not exist"):
        load_published_folder(tmp_path / "nowhere", get_preset("paper-test"))
    folder = _break(tmp_path / "f", state, spm_file, shards=2)
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(UserError, match="lacks weight files model-00002-of-00002"):
        load_published_folder(folder, get_preset("paper-test"))
    other = _break(tmp_path / "g", state, spm_file)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "mm_extractor_scale": "base"}))
    with pytest.raises(UserError, match="another architecture.*mm_extractor_scale"):
        load_published_folder(other, get_preset("paper-test"))
    # The full-size model refuses the small folder before reading any weight.
    (other / "config.json").write_text(
        json.dumps({**config, "hidden_size": 1024, "out_dim": 256, "mm_extractor_scale": "large"})
    )
    with pytest.raises(UserError, match="do not match this model"):
        load_published_folder(other, get_preset("paper-rrsisd"))
    shutil.rmtree(other)
