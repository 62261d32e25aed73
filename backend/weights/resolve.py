"""Pretrained weights for a preset, from the cache that `rs2sam2 weights download` fills."""

from __future__ import annotations

from pathlib import Path

from backend.model.presets import ModelConfig
from backend.weights.download import cached_path
from backend.weights.registry import ALL_WEIGHTS


def with_cached_weights(config: ModelConfig, cache: Path | None = None) -> tuple[ModelConfig, list[str]]:
    """`config` with `sam2_checkpoint` / `clip_pretrained` pointing at cached official files, when the
    preset names them and they are cached (fields already set are kept). Returns notes for the user."""
    changes: dict[str, str] = {}
    notes: list[str] = []
    if config.sam2_checkpoint is None and config.official_sam2_file:
        sam2 = next(w for w in ALL_WEIGHTS if w.name == config.official_sam2_file)
        if cached_path(sam2, cache).is_file():
            changes["sam2_checkpoint"] = str(cached_path(sam2, cache))
    if config.clip_pretrained is None and config.official_sam2_file:
        clip = next(
            (w for w in ALL_WEIGHTS if w.kind == "clip" and w.architecture == config.clip_model), None
        )
        if clip is not None and cached_path(clip, cache).is_file():
            changes["clip_pretrained"] = str(cached_path(clip, cache))
    for field, path in changes.items():
        notes.append(
            f"preset {config.name}: pretrained {'SAM 2' if field == 'sam2_checkpoint' else 'CLIP'} "
            f"weights from {path}"
        )
    if config.official_sam2_file and len(changes) < 2:
        notes.append(
            f"preset {config.name}: no pretrained weights cached for "
            f"{'SAM 2 and CLIP' if not changes else 'CLIP' if 'sam2_checkpoint' in changes else 'SAM 2'}; "
            f"those parts start from random weights (fetch them with: rs2sam2 weights download "
            f"--preset {config.name})"
        )
    return (config.replace(**changes) if changes else config), notes
