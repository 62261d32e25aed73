"""Phrases → token ids exactly as the reference's tokenizer gives them, on `sentencepiece` directly.

The reference uses transformers' slow `XLMRobertaTokenizer` over the published sentencepiece model, with
the padding token set to `<unk>`. Its ids are fairseq's: `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3 and every
sentencepiece piece id + 1, except sentencepiece's own unknown piece (id 0), which becomes 3. A phrase is
`<s> pieces </s>`; a batch is padded with 3, and the BEiT-3 attention mask is `ids != 3`, so an unknown
piece inside a phrase is masked there as well (as in the reference). This module reproduces that without
depending on transformers, whose tokenizer API changed across majors.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from backend.errors import UserError
from backend.model.text import PhraseTruncatedWarning, TextTokens

BOS_ID, PAD_ID_FAIRSEQ, EOS_ID, UNK_ID = 0, 1, 2, 3
PAD_ID = UNK_ID  # the reference pads with <unk>
FAIRSEQ_OFFSET = 1
# Strings the reference's tokenizer would turn into special or added tokens instead of text.
RESERVED = ("<s>", "</s>", "<pad>", "<unk>", "<mask>", "[SEG]")


class PaperTokenizer:
    """XLM-R-style ids from a sentencepiece model (the published `sentencepiece.bpe.model`)."""

    def __init__(self, model: bytes | str | Path, max_tokens: int):
        import sentencepiece

        self.model_bytes = Path(model).read_bytes() if isinstance(model, str | Path) else bytes(model)
        self.max_tokens = max_tokens  # incl. <s> and </s>
        self._sp = sentencepiece.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(self.model_bytes)
        except (RuntimeError, OSError) as exc:
            raise UserError(f"The tokenizer's sentencepiece model cannot be read ({exc}).") from None

    @property
    def vocab_size(self) -> int:
        """Ids this tokenizer can produce: the pieces + offset, and the `<mask>` id after them."""
        return self._sp.get_piece_size() + FAIRSEQ_OFFSET + 1

    def _piece_ids(self, phrase: str) -> list[int]:
        spm_ids = [self._sp.piece_to_id(piece) for piece in self._sp.encode(phrase, out_type=str)]
        return [spm_id + FAIRSEQ_OFFSET if spm_id else UNK_ID for spm_id in spm_ids]

    def encode_one(self, phrase: str) -> list[int]:
        if not isinstance(phrase, str) or not phrase.strip():
            raise UserError(f"Phrase {phrase!r} is empty; give some words describing the object.")
        reserved = [token for token in RESERVED if token in phrase]
        if reserved:
            raise UserError(
                f"The phrase {phrase!r} contains {reserved[0]!r}, which this model's tokenizer reserves; "
                "reword it."
            )
        ids = [BOS_ID, *self._piece_ids(phrase), EOS_ID]
        if len(ids) > self.max_tokens:
            warnings.warn(
                f"The phrase {phrase[:60]!r} has {len(ids)} tokens; the model reads {self.max_tokens}, so it "
                "was cut.",
                PhraseTruncatedWarning,
                stacklevel=3,
            )
            ids = ids[: self.max_tokens - 1] + [EOS_ID]
        return ids

    def __call__(self, phrases: Sequence[str]) -> TextTokens:
        """A batch padded with the reference's padding id to its longest phrase."""
        if isinstance(phrases, str):
            raise TypeError("the tokenizer takes a list of phrases, not a single string")
        if len(phrases) == 0:
            raise UserError("No phrase was given; give at least one.")
        rows = [self.encode_one(phrase) for phrase in phrases]
        length = max(len(row) for row in rows)
        ids = torch.full((len(rows), length), PAD_ID, dtype=torch.long)
        valid = torch.zeros(len(rows), length, dtype=torch.bool)
        for index, row in enumerate(rows):
            ids[index, : len(row)] = torch.tensor(row)
            valid[index, : len(row)] = True
        return TextTokens(ids, valid, PAD_ID)


def attention_mask(tokens: TextTokens) -> torch.Tensor:
    """The reference's BEiT-3 attention mask: every id that is not the padding id (so `<unk>` too)."""
    return tokens.ids != PAD_ID
