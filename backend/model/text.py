"""Tokenised phrases as both families' networks take them: ids with a validity mask (True = a real token,
False = padding). Each family tokenises with its own vocabulary: CLIP's BPE
(backend/model/project/tokenizer.py), the paper's sentencepiece (backend/model/paper/tokenizer.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


class PhraseTruncatedWarning(UserWarning):
    """A phrase had more tokens than the text encoder's context and was cut."""


@dataclass
class TextTokens:
    ids: torch.Tensor  # (B, L) long, start + tokens + end, then `pad_id`
    valid: torch.Tensor  # (B, L) bool, False on padding
    pad_id: int = 0  # the id padding uses (CLIP: 0; the paper family's XLM-R vocabulary: 3)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def to(self, device: torch.device | str) -> TextTokens:
        return TextTokens(self.ids.to(device), self.valid.to(device), self.pad_id)

    @staticmethod
    def cat(parts: Sequence[TextTokens]) -> TextTokens:
        """Concatenate batches, padding to the longest (padding never changes a phrase's result)."""
        length = max(part.ids.shape[1] for part in parts)
        pad_id = parts[0].pad_id
        if any(part.pad_id != pad_id for part in parts):
            raise ValueError("cannot concatenate tokens of different vocabularies")
        ids = torch.cat(
            [torch.nn.functional.pad(p.ids, (0, length - p.ids.shape[1]), value=pad_id) for p in parts]
        )
        valid = torch.cat([torch.nn.functional.pad(p.valid, (0, length - p.valid.shape[1])) for p in parts])
        return TextTokens(ids, valid, pad_id)
