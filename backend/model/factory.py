"""Building RS2-SAM 2 models and predictors: the one entry point everything else uses."""

from __future__ import annotations

from pathlib import Path

import torch

from backend.errors import UserError
from backend.model.checkpoint import check_expected, load_paper_file, read_checkpoint
from backend.model.precision import resolve_precision
from backend.model.presets import ModelConfig, get_preset
from backend.model.project.clip_loading import build_clip
from backend.model.project.rs2sam2 import RS2SAM2
from backend.model.project.union_encoder import UnionEncoder
from backend.model.sam2_loading import SAM2ImageParts, build_sam2_model
from backend.model.weights_io import check_state_dict

DEFAULT_PRESET = "test"


def resolve_device(device: str = "auto") -> torch.device:
    """ "auto" → CUDA when available, else CPU; "cuda" without CUDA is refused (never a silent fallback)."""
    name = (device or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(
                "Device 'cuda' was asked for but this torch sees no CUDA GPU; use --device cpu or auto."
            )
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise UserError(f"Unknown device {device!r}; use auto, cpu or cuda.")


def build_model(config: ModelConfig | str = DEFAULT_PRESET, device: str = "cpu") -> RS2SAM2:
    """A fresh RS2-SAM 2 (train mode) for a preset name or config, pretrained parts per the config.

    Paper-family presets give a `PaperRS2SAM2` with random weights and no tokenizer (its tokenizer comes
    with the published weights: `backend.weights.models.load_named_predictor("paper-rrsisd")`).
    """
    if isinstance(config, str):
        config = get_preset(config)
    if config.family == "paper":
        from backend.model.paper.build import build_paper_model

        return build_paper_model(config, device=str(resolve_device(device))).train()
    union = UnionEncoder(build_clip(config), config.union_width, config.union_layers, config.union_heads)
    sam = SAM2ImageParts(build_sam2_model(config))
    model = RS2SAM2(config, union, sam)
    model.apply_freezing()
    return model.to(resolve_device(device)).train()


def make_predictor(model, model_id: str, precision: str = "fp32"):
    """The PhraseSegmenter for a built model of either family, prepared for `precision` (fp32, bf16, int8
    or auto: backend/model/precision.py; a mode the device cannot run is a UserError)."""
    mode = resolve_precision(
        precision,
        model.device,
        image_size=model.config.image_size,
        # Both families convert, but OpenVINO measured slower than torch on the paper family's encoder
        # (Hiera-L with its adapters: bf16 7.7 s against 6.2 s, f32 21.2 s against 18.9 s per 1024
        # tile on the benchmark CPU), so `auto` chooses it for the project's family only.
        converts_to_openvino=model.config.family != "paper",
        paper_family=model.config.family == "paper",  # `auto` keeps the reference's masks
    )
    if model.config.family == "paper":
        from backend.model.paper.predictor import PaperPredictor

        return PaperPredictor(model, model_id=model_id, precision=mode)
    from backend.model.project.predictor import RS2SAM2Predictor

    return RS2SAM2Predictor(model, model_id=model_id, precision=mode)


def load_predictor(
    preset: str | None = None,
    checkpoint: str | Path | None = None,
    device: str = "auto",
    model_id: str | None = None,
    precision: str = "fp32",
):
    """A PhraseSegmenter: an RS2-SAM 2 checkpoint (its own config; a published model folder also works),
    or a preset's fresh model, in `precision` (see `make_predictor`; the entry points default to auto).
    Models by name (`paper-rrsisd` …) are resolved one layer up, by
    `backend.weights.models.load_named_predictor`.

    With a preset and a checkpoint, the checkpoint must have that preset's architecture.
    """
    target = resolve_device(device)
    resolve_precision(precision, target)  # refuse a mode this device cannot run before loading anything
    if checkpoint is not None and Path(checkpoint).is_dir():
        return _published_folder_predictor(Path(checkpoint), preset, str(target), model_id, precision)
    if checkpoint is not None:
        expected = get_preset(preset) if preset else None
        built, _ = load_checkpoint(checkpoint, device=str(target), expected=expected)
        return make_predictor(built, model_id or Path(checkpoint).stem, precision)
    config = get_preset(preset or DEFAULT_PRESET)
    if config.family == "paper":
        raise UserError(
            f"{config.name} needs its published weights: rs2sam2 weights download --model {config.name}"
        )
    built = build_model(config, device=str(target)).eval()
    return make_predictor(built, model_id or f"rs2sam2-{config.name}-untrained", precision)


def _published_folder_predictor(
    folder: Path, preset: str | None, device: str, model_id: str | None, precision: str
):
    from backend.model.paper.folder import load_published_folder, preset_for_folder

    known = preset or preset_for_folder(folder)
    # Both published models share one architecture, so an unrecognised folder loads as either.
    built = load_published_folder(folder, get_preset(known or "paper-rrsisd"), device=device)
    return make_predictor(built, model_id or known or folder.name, precision)


def load_checkpoint(path: str | Path, device: str = "cpu", expected: ModelConfig | None = None):
    """Rebuild the model from the file's own config and load its weights (eval mode).

    `expected`: refuse a checkpoint whose architecture differs from that config.
    Pretrained-weight sources in the stored config are ignored: the file already holds every weight.
    """
    paper = load_paper_file(path, device, expected)
    if paper is not None:
        paper[0].weights_file = Path(path)  # where its weights came from (the OpenVINO cache keeps these)
        return paper
    config, state, metadata = read_checkpoint(path)
    check_expected(Path(path), config, expected)
    config = config.replace(
        sam2_checkpoint=None,
        clip_pretrained=None,
        # Keep the freezing the model was trained with, now that no pretrained file is named.
        freeze_sam_backbone=config.sam_backbone_frozen,
        freeze_clip=config.clip_frozen,
    )
    model = build_model(config, device="cpu")
    check_state_dict(model, state, "model checkpoint", path)
    model.load_state_dict(state)
    model.weights_file = Path(path)  # where its weights came from (the OpenVINO cache keeps these)
    return model.to(device).eval(), metadata
