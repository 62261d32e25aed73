"""The paper model's state dict is the reference's, key for key and shape for shape (data/README.md)."""

from __future__ import annotations

from pathlib import Path

from backend.model.paper.build import SAM2_VIDEO_ONLY, build_paper_model, is_video_only_key
from backend.model.presets import get_preset

MANIFEST = Path(__file__).parent / "data" / "reference_state_dict.tsv"


def _manifest() -> dict[str, tuple[tuple[int, ...], str]]:
    rows = {}
    for line in MANIFEST.read_text().splitlines():
        key, shape, dtype = line.split("\t")
        rows[key] = (tuple(int(n) for n in shape.split(",")) if shape else (), dtype)
    return rows


def test_paper_models_have_the_reference_state_dict():
    manifest = _manifest()
    assert len(manifest) == 2853 and {dtype for _, dtype in manifest.values()} == {"float32"}
    for name in ("paper-rrsisd", "paper-refsegrs"):  # one architecture, two trained weight sets
        model = build_paper_model(get_preset(name), empty=True)  # meta tensors: no memory, no time
        ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
        expected = {key: shape for key, (shape, _) in manifest.items() if not is_video_only_key(key)}
        assert ours == expected, name
        assert all(str(value.dtype) == "torch.float32" for value in model.state_dict().values())


def test_only_sam2_video_modules_are_dropped():
    dropped = {key.split(".")[1] for key in _manifest() if is_video_only_key(key)}
    assert dropped == set(SAM2_VIDEO_ONLY)
    # What the image model uses stays: the no-memory embedding and every image part.
    assert not is_video_only_key("visual_model.no_mem_embed")
    assert not is_video_only_key(
        "visual_model.sam_mask_decoder.vlfusion_module.multihead_attn.in_proj_weight"
    )


def test_adapter_and_head_counts_match_the_reference():
    manifest = _manifest()
    adapters = [key for key in manifest if "_Adapter." in key]
    assert len(adapters) == 960  # 48 blocks × (MLP_Adapter 4 + Space_Adapter 16)
    params = sum(_numel(shape) for key, (shape, _) in manifest.items() if key in adapters)
    assert 30.0e6 < params < 30.6e6  # the paper's "about 30 M"
    model = build_paper_model(get_preset("paper-rrsisd"), empty=True)
    assert len(model.visual_model.image_encoder.trunk.blocks) == 48
    assert model.visual_model.sam_mask_decoder.dynamic_multimask_via_stability is False


def _numel(shape: tuple[int, ...]) -> int:
    total = 1
    for n in shape:
        total *= n
    return total
