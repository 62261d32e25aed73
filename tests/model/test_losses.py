"""The loss terms on hand-made tensors: values we can work out, and the properties that matter."""

from __future__ import annotations

import math

import pytest
import torch

from backend.model.losses import boundary_map, dice_loss, weighted_bce


def test_boundary_map_marks_the_edges_of_a_square():
    mask = torch.zeros(1, 1, 6, 6)
    mask[..., 2:4, 2:4] = 1
    edges = boundary_map(mask)[0, 0]
    # Forward differences toward the top and left: the square's top/left cells and the cells just
    # below/right of it light up; the far interior stays 0.
    assert edges[2, 2] == 2 and edges[2, 3] == 1 and edges[3, 2] == 1 and edges[3, 3] == 0
    assert edges[4, 2] == 1 and edges[2, 4] == 1 and edges[0, 0] == 0
    # Zero padding: a full mask has a boundary on its first row and column.
    full = boundary_map(torch.ones(1, 1, 3, 3))[0, 0]
    assert full[0, 0] == 2 and full[0, 1] == 1 and full[1, 1] == 0


def test_weighted_bce_uses_the_class_weights():
    logits = torch.tensor([[0.0, 0.0]])
    target = torch.tensor([[1.0, 0.0]])
    # Both pixels have loss log 2 whatever the weights: the weighted mean is log 2.
    assert math.isclose(weighted_bce(logits, target, 0.9, 1.1).item(), math.log(2), rel_tol=1e-6)
    logits = torch.tensor([[-2.0, 0.0]])  # the foreground pixel is worse now
    unweighted = weighted_bce(logits, target, 1.0, 1.0)
    weighted = weighted_bce(logits, target, 0.9, 1.1)
    assert weighted > unweighted  # foreground errors count more


def test_dice_is_zero_for_a_perfect_prediction_and_near_one_for_the_inverse():
    target = torch.zeros(1, 1, 8, 8)
    target[..., :4, :] = 1
    perfect = (target * 2 - 1) * 50
    assert dice_loss(perfect, target, smooth=1e-6).item() < 1e-4
    assert dice_loss(-perfect, target, smooth=1e-6).item() > 0.99


def test_foreground_dice_ignores_the_background_class():
    target = torch.zeros(1, 1, 10, 10)
    target[..., :1, :] = 1  # a small object: 10 of 100 pixels
    empty = torch.full_like(target, -50.0)  # "all background"
    # Both classes (summed, as the reference): the background's Dice is nearly perfect, so missing the
    # object adds only 1 to a loss that ranges over [0, 2] …
    both = dice_loss(empty, target, smooth=1e-6).item()
    assert abs(both - ((1 - 0) + (1 - 2 * 90 / 190))) < 1e-3
    # … the object alone: missing it entirely is the full loss.
    assert dice_loss(empty, target, smooth=1e-6, classes="foreground").item() > 0.999
    half = torch.where(
        torch.arange(10).reshape(1, 1, 1, 10) < 5, target * 100 - 50, torch.full_like(target, -50.0)
    )
    assert abs(dice_loss(half, target, smooth=1e-6, classes="foreground").item() - (1 - 10 / 15)) < 1e-3
    with pytest.raises(ValueError):
        dice_loss(empty, target, classes="object")
