"""A small sentencepiece model trained offline, standing in for the published `sentencepiece.bpe.model`."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "the large white building next to the river",
    "a small pond on the left of the road",
    "the expressway service area on the bottom right",
    "two tennis courts beside the parking lot",
    "the harbour with many boats",
    "storage tanks at the top of the image",
    "the baseball field in the middle",
    "a red roof near the bridge",
    "vehicles parked along the street",
    "the golf course and the stadium",
]


def train_tiny_spm(prefix: Path, vocab_size: int = 120) -> Path:
    """Train deterministically (one thread, fixed corpus and options); returns the .model file."""
    import sentencepiece

    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 20),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        model_type="bpe",
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    return Path(f"{prefix}.model")
