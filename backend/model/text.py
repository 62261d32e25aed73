"""Phrases → CLIP token ids with a validity mask (True = a real token, False = padding)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
from open_clip.tokenizer import SimpleTokenizer

from backend.errors import UserError


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


@lru_cache(maxsize=1)
def _tokenizer() -> SimpleTokenizer:
    return SimpleTokenizer()  # CLIP's BPE vocabulary ships inside open_clip: works offline


def tokenize(phrases: Sequence[str], context_length: int) -> TextTokens:
    """Tokenise, truncating (with a PhraseTruncatedWarning) phrases longer than the context.

    The batch is padded to its longest phrase, not to the full context (shorter = faster).
    """
    if isinstance(phrases, str):
        raise TypeError("tokenize() takes a list of phrases, not a single string")
    if len(phrases) == 0:
        raise UserError("No phrase was given; give at least one.")
    tokenizer = _tokenizer()
    rows: list[list[int]] = []
    for phrase in phrases:
        if not isinstance(phrase, str) or not phrase.strip():
            raise UserError(f"Phrase {phrase!r} is empty; give some words describing the object.")
        ids = [tokenizer.sot_token_id, *tokenizer.encode(phrase), tokenizer.eot_token_id]
        if len(ids) > context_length:
            warnings.warn(
                f"The phrase {_clip(phrase)!r} has {len(ids)} tokens; the text encoder reads "
                f"{context_length}, so it was truncated.",
                PhraseTruncatedWarning,
                stacklevel=2,
            )
            ids = ids[: context_length - 1] + [tokenizer.eot_token_id]
        rows.append(ids)
    length = max(len(row) for row in rows)
    ids_tensor = torch.zeros(len(rows), length, dtype=torch.long)
    valid = torch.zeros(len(rows), length, dtype=torch.bool)
    for index, row in enumerate(rows):
        ids_tensor[index, : len(row)] = torch.tensor(row)
        valid[index, : len(row)] = True
    return TextTokens(ids_tensor, valid)


def _clip(phrase: str, limit: int = 60) -> str:
    return phrase if len(phrase) <= limit else phrase[: limit - 1] + "…"
