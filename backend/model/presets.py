"""Every RS2-SAM 2 configuration in one place: the dataclass and the named presets.

A `ModelConfig` fully describes the architecture (it travels inside every RS2-SAM 2 checkpoint), plus
where pretrained weights come from and what trains. Presets:

- `test`: a few M parameters built from config with no weights (a shrunken SAM 2.1 Hiera-T and a
  small CLIP), 128 px; for unit tests and the bundled demo model.
- `tiny`: SAM 2.1 Hiera-T + CLIP ViT-B/16, 1024 px.
- `base`: SAM 2.1 Hiera-B+ + CLIP ViT-B/16, 1024 px.
- `large`: SAM 2.0 Hiera-L (as in the paper) + CLIP ViT-L/14, 1024 px.
- `paper-rrsisd`, `paper-refsegrs`: the reference implementation's module tree (family "paper": BEiT-3
  large union encoder, SAM 2.0 Hiera-L with both adapters in every block), whose state-dict keys are
  those of the authors' published checkpoints (trained on RRSIS-D / RefSegRS); see backend/model/paper.
- `paper-test`: the same tree shrunk to a few M parameters, for tests.

The CLIP towers are open_clip's `*-quickgelu` models: OpenAI's CLIP weights (the ones these presets
start from) were trained with QuickGELU, and open_clip's plain `ViT-B-16` / `ViT-L-14` use GELU under
the same state-dict keys, so loading the weights there gives no error but wrong features.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from backend.contract import DEFAULT_THRESHOLD
from backend.errors import UserError

FAMILIES = ("project", "paper")

# The paper family's own threshold (its presets' default_threshold). The reference thresholds its decoder
# logit z by argmax over the two-class logits [1 - z, z]; the paper family reports σ(2z - 1) (the softmax
# of those two logits) as its probability, so the argmax is σ(2z - 1) > 0.5, whatever the generic default.
PAPER_THRESHOLD = 0.5


@dataclass(frozen=True)
class ModelConfig:
    name: str
    # --- SAM 2 (image encoder, prompt encoder, mask decoder) ---
    sam2_config: str  # a config shipped inside the sam2 package
    sam2_overrides: tuple[str, ...] = ()  # Hydra overrides (the `test` preset shrinks Hiera-T)
    image_size: int = 1024  # SAM 2's square input; must be a multiple of 32 (Hiera's total stride)
    # --- CLIP towers of the union encoder ---
    clip_model: str = "ViT-B-16-quickgelu"  # an open_clip model name ...
    clip_model_config: str | None = None  # ... or an explicit open_clip model config (JSON text)
    text_context_length: int = 77  # tokens incl. start/end; longer phrases are truncated with a warning
    # --- union encoder joint layers ---
    union_width: int = 512  # D in docs/method.md
    union_layers: int = 2
    union_heads: int = 8
    # --- fusion modules ---
    bhf_heads: int = 4  # MHA heads inside each Hiera-block adapter (method: 4)
    bhf_ratio: int = 4  # adapter width h = C / bhf_ratio
    bhf_text_alpha: float = 0.2  # T_{i+1} = (1-α) T_i + α Linear(T')
    mlp_adapter_scale: float = 0.5
    post_bhf_heads: int = 8
    mpg_heads: int = 8
    # The TBL weight w = w_min + (w_max − w_min)·σ(Linear(T_0)). TBL = w²·D only ever pushes w down, so
    # without a floor w drifts to ~0 over a long run and the boundary term switches itself off
    # (docs/method.md, "Deviations"); with the floor the text can raise the boundary weight above the
    # base weight λ_tbl, never remove it.
    boundary_weight_min: float = 1.0
    boundary_weight_max: float = 2.0
    # --- weights and what trains ---
    sam2_checkpoint: str | None = None  # official {"model": state_dict} .pt file
    clip_pretrained: str | None = None  # open_clip pretrained tag (hub) or a local weights file
    freeze_sam_backbone: bool | None = None  # None: freeze trunk+neck iff sam2_checkpoint is set
    freeze_clip: bool | None = None  # None: freeze CLIP towers iff clip_pretrained is set
    # Names of the official files this preset is meant for (documentation and `rs2sam2 weights`).
    official_sam2_file: str | None = None
    # --- which module tree ---
    # "project": RS2SAM2 (open_clip union encoder; this project's own key layout);
    # "paper": the reference implementation's tree (BEiT-3 union encoder; the published checkpoints' keys).
    family: str = "project"
    # --- BEiT-3 union encoder (family "paper"; torchscale's BEiT3, multiway, sub-LN) ---
    beit3_width: int = 1024
    beit3_layers: int = 24
    beit3_heads: int = 16
    beit3_ffn: int = 4096
    beit3_vocab: int = 64010  # XLM-R sentencepiece vocabulary of the published tokenizer (+ added tokens)
    beit3_image_size: int = 224
    beit3_patch_size: int = 16
    beit3_text_positions: int = 1024  # positions start at 2: at most 1022 tokens incl. <s> and </s>
    beit3_scale: str = "large"  # the published config.json's `mm_extractor_scale` for this architecture
    # --- output ---
    # The probability above which a pixel is the phrase's object when the person sets no threshold: the
    # engine's, the service's and the CLI's default (backend.model.api.default_threshold_of).
    default_threshold: float = DEFAULT_THRESHOLD
    # --- published weights (family "paper"): a folder of the Hugging Face repository ReeF2025/RS2-SAM2 ---
    hub_folder: str | None = None

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    @property
    def union_encoder(self) -> str:
        """Which union encoder the model has: "clip" (project family) or "beit3" (paper family)."""
        return "beit3" if self.family == "paper" else "clip"

    @property
    def clip_image_size(self) -> int:
        """The union encoder's square input size (CLIP's, or BEiT-3's for the paper family)."""
        if self.family == "paper":
            return self.beit3_image_size
        return int(clip_model_config(self)["vision_cfg"]["image_size"])

    @property
    def sam_backbone_frozen(self) -> bool:
        if self.freeze_sam_backbone is None:
            return self.sam2_checkpoint is not None
        return self.freeze_sam_backbone

    @property
    def clip_frozen(self) -> bool:
        if self.freeze_clip is None:
            return self.clip_pretrained is not None
        return self.freeze_clip

    def architecture(self) -> dict[str, Any]:
        """The fields that decide the weights' shapes (what a checkpoint must agree on)."""
        keys = (
            "sam2_config",
            "sam2_overrides",
            "image_size",
            "clip_model",
            "clip_model_config",
            "text_context_length",
            "union_width",
            "union_layers",
            "union_heads",
            "bhf_heads",
            "bhf_ratio",
            "post_bhf_heads",
            "mpg_heads",
            "family",
            "beit3_width",
            "beit3_layers",
            "beit3_heads",
            "beit3_ffn",
            "beit3_vocab",
            "beit3_image_size",
            "beit3_patch_size",
            "beit3_text_positions",
        )
        return {key: _jsonable(getattr(self, key)) for key in keys}

    def to_json(self) -> str:
        data = {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(
                f"The model configuration has unknown fields {unknown}; it was written by a newer version."
            )
        data["sam2_overrides"] = tuple(data.get("sam2_overrides", ()))
        config = cls(**data)
        if config.family not in FAMILIES:
            raise UserError(f"The model configuration names an unknown family {config.family!r}.")
        return config


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# A small CLIP for tests: 7×7 patch grid at 112 px, narrow towers, short text context. The BPE
# vocabulary (49408 tokens) is CLIP's own so the real tokenizer works; the embedding is kept narrow
# because it dominates the parameter count.
_TEST_CLIP = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 112, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}

# SAM 2.1 Hiera-T shrunk by Hydra overrides (verified: 1.2 M-parameter image encoder).
_TEST_SAM2_OVERRIDES = (
    "++model.image_encoder.trunk.embed_dim=32",
    "++model.image_encoder.trunk.num_heads=1",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.trunk.window_spec=[8,4,8,4]",
    "++model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[4,4]",
    "++model.image_encoder.neck.backbone_channel_list=[256,128,64,32]",
    "++model.image_encoder.neck.d_model=64",
)

PRESETS: dict[str, ModelConfig] = {
    "test": ModelConfig(
        name="test",
        sam2_config="configs/sam2.1/sam2.1_hiera_t.yaml",
        sam2_overrides=_TEST_SAM2_OVERRIDES,
        image_size=128,
        clip_model="test-clip",
        clip_model_config=json.dumps(_TEST_CLIP, sort_keys=True),
        text_context_length=32,
        union_width=64,
        union_layers=2,
        union_heads=4,
        bhf_heads=2,
        post_bhf_heads=4,
        mpg_heads=4,
    ),
    "tiny": ModelConfig(
        name="tiny",
        sam2_config="configs/sam2.1/sam2.1_hiera_t.yaml",
        clip_model="ViT-B-16-quickgelu",
        official_sam2_file="sam2.1_hiera_tiny.pt",
    ),
    "base": ModelConfig(
        name="base",
        sam2_config="configs/sam2.1/sam2.1_hiera_b+.yaml",
        clip_model="ViT-B-16-quickgelu",
        official_sam2_file="sam2.1_hiera_base_plus.pt",
    ),
    "large": ModelConfig(
        name="large",
        sam2_config="configs/sam2/sam2_hiera_l.yaml",
        clip_model="ViT-L-14-quickgelu",
        union_width=768,
        union_heads=12,
        official_sam2_file="sam2_hiera_large.pt",
    ),
}


# The reference model (rongfu-dsb/RS2-SAM2): SAM 2.0's Hiera-L config without stability post-processing,
# BEiT-3 large, adapters h = C/4 with 4 heads, α = 0.2, MLP-adapter scale 0.5, 8-head fusions.
_PAPER = ModelConfig(
    name="paper",
    family="paper",
    sam2_config="configs/sam2/sam2_hiera_l.yaml",
    image_size=1024,
    text_context_length=1022,
    bhf_heads=4,
    bhf_ratio=4,
    bhf_text_alpha=0.2,
    mlp_adapter_scale=0.5,
    post_bhf_heads=8,
    mpg_heads=8,
    default_threshold=PAPER_THRESHOLD,
    official_sam2_file=None,
)

PRESETS["paper-rrsisd"] = _PAPER.replace(name="paper-rrsisd", hub_folder="rrsisd")
PRESETS["paper-refsegrs"] = _PAPER.replace(name="paper-refsegrs", hub_folder="refseg")
PRESETS["paper-test"] = _PAPER.replace(
    name="paper-test",
    # Shrunk SAM 2.0 Hiera-L and BEiT-3 (same module tree and key names, few blocks, narrow widths): the
    # same Hiera shrinking as the `test` preset's.
    sam2_overrides=_TEST_SAM2_OVERRIDES,
    image_size=128,
    text_context_length=62,
    bhf_heads=2,
    post_bhf_heads=4,
    mpg_heads=4,
    beit3_width=64,
    beit3_layers=2,
    beit3_heads=4,
    beit3_ffn=128,
    beit3_vocab=256,
    beit3_image_size=64,
    beit3_text_positions=64,
    beit3_scale="test",
)


def get_preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"Unknown model preset {name!r}; choose one of {', '.join(PRESETS)}.") from None


def clip_model_config(config: ModelConfig) -> dict[str, Any]:
    """The open_clip model config dict (explicit JSON, or open_clip's own config for the name)."""
    if config.clip_model_config is not None:
        return json.loads(config.clip_model_config)
    import open_clip

    model_cfg = open_clip.get_model_config(config.clip_model)
    if model_cfg is None:
        raise UserError(f"open_clip has no model called {config.clip_model!r}.")
    return model_cfg
