"""The official weight files each model preset starts from.

Facts (URLs, configs, the one published checksum) come from the SAM 2 and open_clip projects.
SAM 2 publishes no checksums, so those files are verified by loading them, which every file gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

WeightKind = Literal["sam2", "clip"]

SAM2_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2"
HF_BASE_URL = "https://huggingface.co"


@dataclass(frozen=True)
class WeightFile:
    """One downloadable file and how to check that it is what it claims to be."""

    name: str  # the file's name in the cache
    url: str
    kind: WeightKind
    architecture: str  # sam2: the config inside the sam2 package; clip: the open_clip model name
    sha256: str | None = None  # where the publisher gives one
    hydra_overrides: tuple[str, ...] = ()  # sam2 only: config overrides (small test models)


def _sam2(release: str, stem: str, config: str) -> WeightFile:
    return WeightFile(
        name=f"{stem}.pt", url=f"{SAM2_BASE_URL}/{release}/{stem}.pt", kind="sam2", architecture=config
    )


SAM2_1_TINY = _sam2("092824", "sam2.1_hiera_tiny", "configs/sam2.1/sam2.1_hiera_t.yaml")
SAM2_1_SMALL = _sam2("092824", "sam2.1_hiera_small", "configs/sam2.1/sam2.1_hiera_s.yaml")
SAM2_1_BASE_PLUS = _sam2("092824", "sam2.1_hiera_base_plus", "configs/sam2.1/sam2.1_hiera_b+.yaml")
SAM2_1_LARGE = _sam2("092824", "sam2.1_hiera_large", "configs/sam2.1/sam2.1_hiera_l.yaml")
SAM2_LARGE = _sam2("072824", "sam2_hiera_large", "configs/sam2/sam2_hiera_l.yaml")  # the paper's backbone

# OpenAI's CLIP weights, as open_clip publishes them on the Hugging Face hub (safetensors: loading
# cannot execute code). `architecture` is the open_clip model they belong in: OpenAI trained CLIP with
# QuickGELU, so the `-quickgelu` variant (same keys as the plain name, which uses GELU).
CLIP_VIT_B_16_OPENAI = WeightFile(
    name="open_clip_ViT-B-16_openai.safetensors",
    url=f"{HF_BASE_URL}/timm/vit_base_patch16_clip_224.openai/resolve/main/open_clip_model.safetensors",
    kind="clip",
    architecture="ViT-B-16-quickgelu",
)

CLIP_VIT_L_14_OPENAI = WeightFile(
    name="open_clip_ViT-L-14_openai.safetensors",
    url=f"{HF_BASE_URL}/timm/vit_large_patch14_clip_224.openai/resolve/main/open_clip_model.safetensors",
    kind="clip",
    architecture="ViT-L-14-quickgelu",
)

PRESET_WEIGHTS: dict[str, tuple[WeightFile, ...]] = {
    "tiny": (SAM2_1_TINY, CLIP_VIT_B_16_OPENAI),
    "base": (SAM2_1_BASE_PLUS, CLIP_VIT_B_16_OPENAI),
    "large": (SAM2_LARGE, CLIP_VIT_L_14_OPENAI),
}

ALL_WEIGHTS: tuple[WeightFile, ...] = (
    SAM2_1_TINY,
    SAM2_1_SMALL,
    SAM2_1_BASE_PLUS,
    SAM2_1_LARGE,
    SAM2_LARGE,
    CLIP_VIT_B_16_OPENAI,
    CLIP_VIT_L_14_OPENAI,
)


# The authors' trained RS2-SAM 2 models (announced in the README of GitHub rongfu-dsb/RS2-SAM2): one
# Hugging Face repository, one folder per training set, each a model folder as transformers saves one.
PAPER_HUB_REPO = "ReeF2025/RS2-SAM2"


@dataclass(frozen=True)
class PaperWeights:
    """A published paper-family model: where it is and the name it gets in the cache."""

    model: str  # the preset (paper-rrsisd …) whose architecture it has
    folder: str  # folder inside the repository
    description: str
    repo: str = PAPER_HUB_REPO
    revision: str = "main"

    @property
    def cache_name(self) -> str:
        """The project checkpoint the folder is converted to (config, tokenizer and weights in one file)."""
        return f"{self.model}.safetensors"


PAPER_WEIGHTS: dict[str, PaperWeights] = {
    "paper-rrsisd": PaperWeights("paper-rrsisd", "rrsisd", "the paper's model trained on RRSIS-D"),
    "paper-refsegrs": PaperWeights("paper-refsegrs", "refseg", "the paper's model trained on RefSegRS"),
}
