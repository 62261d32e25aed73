"""Phrases → CLIP token ids with a validity mask (the project family's union encoder reads CLIP's text)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import lru_cache

import torch
from open_clip.tokenizer import SimpleTokenizer

from backend.errors import UserError
from backend.model.text import PhraseTruncatedWarning, TextTokens


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
