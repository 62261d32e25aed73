"""uint8 images and masks → model inputs: the two resizes and normalisations, in one place.

Both resizes ignore the aspect ratio, as the reference does: SAM 2's side is S×S with ImageNet
mean/std, the CLIP side C×C with CLIP's own mean/std.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.constants import IMAGENET_MEAN, IMAGENET_STD, OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from backend.errors import UserError
from backend.model.presets import ModelConfig


@dataclass
class ModelImages:
    sam: torch.Tensor  # (3, S, S) float32, ImageNet-normalised
    clip: torch.Tensor  # (3, C, C) float32, CLIP-normalised


def check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise UserError(f"The image must be an H×W×3 RGB array; got shape {shape}.")
    if image.dtype != np.uint8:
        raise UserError(f"The image must be 8-bit (uint8) RGB; got {image.dtype}.")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise UserError("The image is empty.")


def _resize(image: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """(B,3,H,W) float in [0,1] → (B,3,size,size); antialiased when shrinking."""
    if image.shape[-2:] == (size, size):
        return image
    return F.interpolate(image, size=(size, size), mode=mode, align_corners=False, antialias=True).clamp_(
        0, 1
    )


def _normalise(image: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    mean_t = torch.tensor(mean, dtype=image.dtype, device=image.device).reshape(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=image.dtype, device=image.device).reshape(1, 3, 1, 1)
    return (image - mean_t) / std_t


def preprocess_batch(images: torch.Tensor, config: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,3,H,W) float in [0,1] (any device) → (sam (B,3,S,S), clip (B,3,C,C))."""
    sam = _normalise(_resize(images, config.image_size, "bilinear"), IMAGENET_MEAN, IMAGENET_STD)
    clip = _normalise(
        _resize(images, config.clip_image_size, "bicubic"), OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    )
    return sam, clip


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H,W,3) uint8 → (1,3,H,W) float in [0,1]."""
    check_image(image)
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div_(255.0)


def preprocess_image(image: np.ndarray, config: ModelConfig) -> ModelImages:
    """One (H,W,3) uint8 RGB image → ModelImages (no batch dimension), as the model's family expects."""
    if config.family == "paper":
        sam = reference_preprocess(image, config.image_size)
        union = reference_preprocess(image, config.beit3_image_size)
        return ModelImages(sam=sam[0], clip=union[0])
    sam, clip = preprocess_batch(image_to_tensor(image), config)
    return ModelImages(sam=sam[0], clip=clip[0])


def reference_preprocess(image: np.ndarray, size: int) -> torch.Tensor:
    """The paper family's preprocessing: (H,W,3) uint8 → (1,3,size,size) float32 as the reference's
    Resize (PIL bilinear, aspect ignored) + ToTensor + Normalize (ImageNet) — for both of its inputs."""
    from PIL import Image

    check_image(image)
    resized = Image.fromarray(np.ascontiguousarray(image)).resize((size, size), Image.BILINEAR)
    tensor = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return _normalise(tensor[None], IMAGENET_MEAN, IMAGENET_STD)


def preprocess_mask(mask: np.ndarray, config: ModelConfig) -> torch.Tensor:
    """(H,W) bool/0-1 mask → (1,S,S) float {0,1}, nearest-neighbour (as the reference's evaluation)."""
    if not isinstance(mask, np.ndarray) or mask.ndim != 2:
        raise UserError(f"The mask must be an H×W array; got shape {getattr(mask, 'shape', None)}.")
    tensor = torch.from_numpy(np.ascontiguousarray(mask > 0)).float()[None, None]
    size = config.image_size
    return F.interpolate(tensor, size=(size, size), mode="nearest")[0]
