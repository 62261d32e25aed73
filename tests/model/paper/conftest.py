"""Fixtures for the paper family: a small tokenizer, a small paper model, published-layout folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from backend.model.paper.build import build_paper_model
from backend.model.paper.tokenizer import PaperTokenizer
from backend.model.presets import get_preset
from tests.model.paper.spm import train_tiny_spm

# Stand-ins for SAM 2's video modules that every published checkpoint carries (dropped on load).
VIDEO_KEYS = {
    "visual_model.memory_attention.layers.0.linear1.weight": (8, 4),
    "visual_model.memory_encoder.fuser.layers.0.gamma": (4,),
    "visual_model.maskmem_tpos_enc": (7, 1, 1, 4),
    "visual_model.obj_ptr_proj.layers.0.weight": (4, 4),
}


@pytest.fixture(scope="session")
def spm_file(tmp_path_factory) -> Path:
    return train_tiny_spm(tmp_path_factory.mktemp("spm") / "tiny")


@pytest.fixture(scope="session")
def paper_test_model(spm_file):
    torch.manual_seed(0)
    config = get_preset("paper-test")
    model = build_paper_model(config)
    model.tokenizer = PaperTokenizer(spm_file, config.text_context_length)
    return model


def published_state(model) -> dict[str, torch.Tensor]:
    """The state dict as the reference saves it: the model's keys plus SAM 2's video modules."""
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    generator = torch.Generator().manual_seed(1)
    state.update({key: torch.randn(shape, generator=generator) for key, shape in VIDEO_KEYS.items()})
    return state


def write_published_folder(
    folder: Path,
    state: dict[str, torch.Tensor],
    spm_file: Path,
    kind: str = "safetensors",
    shards: int = 1,
    config: dict | None = None,
) -> Path:
    """A model folder in the layout transformers' save_pretrained gives (as the authors published)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    hub_config = config or {
        "architectures": ["EvfSamModel"],
        "model_type": "evf",
        "hidden_size": 64,
        "out_dim": 64,
        "mm_extractor_scale": "test",
        "pad_token_id": 3,
        "dtype": "float32",
    }
    (folder / "config.json").write_text(json.dumps(hub_config))
    shutil.copy(spm_file, folder / "sentencepiece.bpe.model")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "XLMRobertaTokenizer"}))
    (folder / "special_tokens_map.json").write_text(json.dumps({"pad_token": "<unk>"}))
    (folder / "added_tokens.json").write_text(json.dumps({"[SEG]": 122}))
    keys = list(state)
    stem, suffix = ("model", ".safetensors") if kind == "safetensors" else ("pytorch_model", ".bin")

    def save(part: dict[str, torch.Tensor], name: str) -> None:
        if kind == "safetensors":
            save_file({k: v.contiguous() for k, v in part.items()}, folder / name, metadata={"format": "pt"})
        else:
            torch.save(part, folder / name)

    if shards == 1:
        save(state, f"{stem}{suffix}")
        return folder
    weight_map = {}
    for index in range(shards):
        name = f"{stem}-{index + 1:05d}-of-{shards:05d}{suffix}"
        part = {key: state[key] for key in keys[index::shards]}
        save(part, name)
        weight_map.update(dict.fromkeys(part, name))
    index_name = f"{stem}{suffix}.index.json"
    (folder / index_name).write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    return folder


@pytest.fixture()
def paper_test_published(monkeypatch):
    """`paper-test` registered as if published (folder `rrsisd`), so download/import/list can use it."""
    from backend.weights.registry import PAPER_WEIGHTS, PaperWeights

    weights = PaperWeights("paper-test", "rrsisd", "small test model in the published layout")
    monkeypatch.setitem(PAPER_WEIGHTS, "paper-test", weights)
    return weights
