"""It learns: the `test` preset overfits synthetic scenes where the phrase decides which object is meant.

Each image holds a red square and a blue disc; "the red square" and "the blue circle" on the same
image must give different masks. Trained through the real training API (preprocess, forward, loss,
param groups), then checked through the predictor on the original uint8 images.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.model.factory import build_model
from backend.model.losses import RS2SAM2Loss
from backend.model.preprocess import preprocess_image, preprocess_mask
from backend.model.project.predictor import RS2SAM2Predictor

MAX_STEPS = 300


def two_object_scenes(seed: int, n_images: int = 2, size: int = 128):
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    samples = []
    for _ in range(n_images):
        image = rng.normal(110, 12, (size, size, 3)).clip(0, 255).astype(np.uint8)
        while True:  # two places far enough apart not to overlap
            (r1, c1), (r2, c2) = rng.integers(20, size - 20, (2, 2))
            if abs(r1 - r2) > 36 or abs(c1 - c2) > 36:
                break
        square = (abs(rows - r1) <= 12) & (abs(cols - c1) <= 12)
        disc = (rows - r2) ** 2 + (cols - c2) ** 2 <= 13**2
        image[square] = (200, 40, 40)
        image[disc] = (40, 60, 200)
        samples += [(image, "the red square", square), (image, "the blue circle", disc)]
    return samples


def _iou(probability: np.ndarray, mask: np.ndarray) -> float:
    prediction = probability > 0.5
    return float((prediction & mask).sum() / max((prediction | mask).sum(), 1))


@pytest.mark.slow
def test_test_preset_overfits_phrase_dependent_masks():
    torch.manual_seed(0)
    model = build_model("test")
    samples = two_object_scenes(seed=0)
    inputs = [preprocess_image(image, model.config) for image, _, _ in samples]
    sam = torch.stack([i.sam for i in inputs])
    clip = torch.stack([i.clip for i in inputs])
    masks = torch.stack([preprocess_mask(mask, model.config) for _, _, mask in samples])
    tokens = model.tokenize([phrase for _, phrase, _ in samples])
    loss_fn = RS2SAM2Loss()
    optimizer = torch.optim.AdamW(model.param_groups(lr_new=1e-3, lr_rest=1e-3, weight_decay=0.0))

    target = masks > 0.5
    for step in range(1, MAX_STEPS + 1):
        out = model(sam, clip, tokens)
        loss = loss_fn(out, masks)["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        # No dropout or batch norm: the training forward's masks are the inference masks.
        prediction = out.logits.detach() > 0
        train_ious = (prediction & target).flatten(1).sum(1) / (prediction | target).flatten(1).sum(1).clamp(
            min=1
        )
        if step % 5 == 0 and train_ious.min() >= 0.92:
            break

    # The verdict comes from the predictor, on the original uint8 images.
    predictor = RS2SAM2Predictor(model, "overfit")
    ious = [_iou(predictor.predict(image, [phrase])[0].probability, mask) for image, phrase, mask in samples]
    assert min(ious) >= 0.9, f"IoUs after {step} steps: {ious}"
    # The phrase decides: on the same image the two phrases' predictions are different objects.
    red, blue = predictor.predict(samples[0][0], ["the red square", "the blue circle"])
    assert _iou(red.probability, samples[0][2]) >= 0.9 and _iou(blue.probability, samples[0][2]) < 0.1
