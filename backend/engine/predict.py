"""One model call on one image, with the engine's out-of-memory fallback, and where probabilities go."""

from __future__ import annotations

import numpy as np

from backend.engine.errors import ModelOutOfMemoryError
from backend.model.api import PhrasePrediction, PhraseSegmenter


class ProbabilitySink:
    """Receives each tile core's probabilities (phrases, h, w) at (col, row) of the area."""

    def write(self, col: int, row: int, probabilities: np.ndarray) -> None:  # pragma: no cover - interface
        raise NotImplementedError


# What the allocators say when they fail, as torch raises it (a plain RuntimeError unless noted):
# the CPU allocator "DefaultCPUAllocator: can't allocate memory: you tried to allocate N bytes" or
# "... not enough memory ..."; CUDA's caching allocator "CUDA out of memory" (torch.OutOfMemoryError);
# a kernel that met it "CUDA error: out of memory"; cuBLAS / cuDNN "..._STATUS_ALLOC_FAILED"; Apple's
# "MPS backend out of memory"; numpy's "Unable to allocate N GiB for an array" (a MemoryError).
_OUT_OF_MEMORY_PHRASES = (
    "out of memory",
    "can't allocate memory",
    "cannot allocate memory",
    "not enough memory",
    "status_alloc_failed",
    "unable to allocate",
)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether an exception is an allocator running out of memory (CPU or accelerator)."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True  # torch.OutOfMemoryError is matched by name, without importing torch
    if not isinstance(exc, RuntimeError):
        return False
    message = str(exc).lower()
    return any(phrase in message for phrase in _OUT_OF_MEMORY_PHRASES)


def _free_accelerator_memory() -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def predict_tile(model: PhraseSegmenter, image: np.ndarray, phrases: list[str]) -> list[PhrasePrediction]:
    """All phrases in one batch; on out-of-memory retry one phrase at a time, else a clear error."""
    try:
        return list(model.predict(image, phrases))
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
    _free_accelerator_memory()
    try:
        return [prediction for phrase in phrases for prediction in model.predict(image, [phrase])]
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        _free_accelerator_memory()
        raise ModelOutOfMemoryError(
            f"the model ran out of memory on a {image.shape[1]}×{image.shape[0]} tile even one phrase at a "
            "time; use a smaller tile size"
        ) from None


def predict_window(
    model: PhraseSegmenter,
    image: np.ndarray,
    valid: np.ndarray,
    phrases: list[str],
    side: int,
    whole_image: bool = False,
) -> list[np.ndarray]:
    """Probabilities (h, w) per phrase for an (h, w, 3) window, 0 where it is not valid.

    A window smaller than `side` is padded (bottom/right, black) so the model always sees one scale —
    except a window that is the whole image (`whole_image`) given to a model that resizes its input as
    the paper's reference does (`resizes_input`, the paper family): it gets the image as it is and
    resizes it to its input, so an 800-pixel image is seen whole at the input's scale, not at 78 % inside
    a black border.
    """
    height, width = valid.shape
    resized_by_the_model = whole_image and getattr(model, "resizes_input", False)
    if (height, width) != (side, side) and not resized_by_the_model:
        padded = np.zeros((max(height, side), max(width, side), 3), np.uint8)
        padded[:height, :width] = image
        image = padded
    predictions = predict_tile(model, image, phrases)
    if len(predictions) != len(phrases):
        raise RuntimeError(f"the model returned {len(predictions)} predictions for {len(phrases)} phrases")
    probabilities = []
    for prediction in predictions:
        probability = np.asarray(prediction.probability, dtype=np.float32)
        if probability.shape != image.shape[:2]:
            raise RuntimeError(f"the model returned a {probability.shape} map for a {image.shape[:2]} image")
        probabilities.append(np.where(valid, probability[:height, :width], 0.0).astype(np.float32))
    return probabilities
