"""The tokenizer gives the reference's ids (transformers' XLMRobertaTokenizer with pad = unk) on a small
sentencepiece model trained here; the expected ids were recorded once with transformers (data/README.md)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from backend.errors import UserError
from backend.model.paper.tokenizer import PAD_ID, PaperTokenizer, attention_mask
from backend.model.text import PhraseTruncatedWarning, TextTokens

REFERENCE = json.loads((Path(__file__).parent / "data" / "reference_tokenizer_ids.json").read_text("utf-8"))


def test_ids_match_the_reference_tokenizer(spm_file):
    tokenizer = PaperTokenizer(spm_file, max_tokens=1022)
    for phrase, expected in zip(REFERENCE["phrases"], REFERENCE["ids"], strict=True):
        assert tokenizer.encode_one(phrase) == expected, phrase


def test_batch_padding_and_attention_match_the_reference(spm_file):
    tokens = PaperTokenizer(spm_file, max_tokens=1022)(REFERENCE["phrases"])
    assert tokens.ids.tolist() == REFERENCE["batch_ids"]  # padded with 3 (<unk>)
    assert attention_mask(tokens).tolist() == REFERENCE["attention"]  # so real <unk> pieces are masked too
    lengths = [len(ids) for ids in REFERENCE["ids"]]
    assert tokens.valid.sum(1).tolist() == lengths  # true padding only (what the fusions mask)
    assert tokens.pad_id == PAD_ID == 3
    # Batches built separately concatenate with the same padding.
    single = PaperTokenizer(spm_file, 1022)
    joined = TextTokens.cat([single([phrase]) for phrase in REFERENCE["phrases"]])
    assert joined.ids.tolist() == REFERENCE["batch_ids"]


def test_long_phrase_is_cut_with_a_warning_and_keeps_its_end_token(spm_file):
    tokenizer = PaperTokenizer(spm_file, max_tokens=8)
    with pytest.warns(PhraseTruncatedWarning, match="the model reads 8"):
        ids = tokenizer.encode_one("the large white building next to the river " * 3)
    assert len(ids) == 8 and ids[0] == 0 and ids[-1] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(tokenizer.encode_one("a pond")) <= 8


def test_bad_phrases_get_one_clear_error(spm_file):
    tokenizer = PaperTokenizer(spm_file, max_tokens=64)
    with pytest.raises(UserError, match="empty"):
        tokenizer(["   "])
    with pytest.raises(UserError, match="reserves"):
        tokenizer(["the <mask> roof"])
    with pytest.raises(UserError, match="cannot be read"):
        PaperTokenizer(b"not a sentencepiece model", max_tokens=64)
