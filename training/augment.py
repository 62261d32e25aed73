"""Training augmentations that keep the phrase true.

- Flips and 90° rotations move things: "the car on the left" is on the right after a horizontal
  flip. Position words are rewritten through the same geometric map (left/right/top/bottom, upper/
  lower, north/south/east/west, above/below, horizontal/vertical…); a phrase whose wording cannot be
  rewritten safely for a transform (e.g. "above" under a rotation) is left untransformed.
- The reference recipe's occlusion: some training expressions get many black boxes (32 px at 1024).
- Photometric changes that keep colour words true (the small-region recipe): brightness, contrast,
  gamma, desaturation toward grey, blur and noise, each one curve for all bands — at every pixel the
  bands keep their order, so a red roof stays red and a dark pond darker than the blue one; no hue
  shifts, channel swaps or per-band gains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

# Directions as unit steps (dx, dy) in image coordinates (x right, y down).
_N, _S, _W, _E = (0, -1), (0, 1), (-1, 0), (1, 0)

# Word families: each maps directions to words; a word is rewritten inside its own family. A family
# lacking the new direction makes the rewrite impossible (the transform is skipped for that phrase).
_FAMILIES: list[dict[tuple[int, int], str]] = [
    {_N: "top", _S: "bottom", _W: "left", _E: "right"},
    {_N: "topmost", _S: "bottommost", _W: "leftmost", _E: "rightmost"},
    {_N: "uppermost", _S: "lowermost", _W: "leftmost", _E: "rightmost"},
    {_N: "north", _S: "south", _W: "west", _E: "east"},
    {_N: "northern", _S: "southern", _W: "western", _E: "eastern"},
    {_N: "northward", _S: "southward", _W: "westward", _E: "eastward"},
    {_N: "upper", _S: "lower"},
    {_N: "above", _S: "below"},
    {_N: "up", _S: "down"},
]
_AXIS_WORDS = {
    "horizontal": "vertical",
    "vertical": "horizontal",
    "horizontally": "vertically",
    "vertically": "horizontally",
}
# Words that are not positions in the image despite the spelling, protected from rewriting.
_IDIOMS = re.compile(
    r"\b(on top of|right (next|beside|by|in|at|on|near|across|behind|above|below|under)\b|left behind|up to)"
)
# Compass compounds ("northwest", "north-east") are decomposed by the word regex on '-' but not
# without it; such single words are refused rather than guessed.
_COMPASS_COMPOUND = re.compile(r"\b(north|south)(east|west)(ern)?\b")

_WORD_INDEX: dict[str, list[tuple[dict, tuple[int, int]]]] = {}
for _family in _FAMILIES:
    for _direction, _word in _family.items():
        _WORD_INDEX.setdefault(_word, []).append((_family, _direction))


def _map_direction(direction: tuple[int, int], transform: str) -> tuple[int, int]:
    dx, dy = direction
    if transform == "hflip":
        return -dx, dy
    if transform == "vflip":
        return dx, -dy
    # np.rot90(k=1) turns the picture counter-clockwise: top → left, left → bottom.
    for _ in range({"rot90": 1, "rot180": 2, "rot270": 3}.get(transform, 0)):
        dx, dy = dy, -dx
    return dx, dy


def rewrite_phrase(phrase: str, transform: str) -> str | None:
    """The phrase made true again after `transform`, or None when that cannot be done safely."""
    if transform == "identity":
        return phrase
    if _COMPASS_COMPOUND.search(phrase.lower()):
        return None
    protected: list[str] = []

    def protect(match: re.Match) -> str:
        protected.append(match.group(0))
        return f"\x00{len(protected) - 1}\x00"

    text = _IDIOMS.sub(protect, phrase)
    failed = False
    swaps_axes = transform in ("rot90", "rot270")

    def replace(match: re.Match) -> str:
        nonlocal failed
        word = match.group(0)
        lower = word.lower()
        if lower in _AXIS_WORDS:
            new = _AXIS_WORDS[lower] if swaps_axes else lower
        else:
            family, direction = _WORD_INDEX[lower][0]
            new_direction = _map_direction(direction, transform)
            new = family.get(new_direction)
            if new is None:
                failed = True
                return word
        return new.capitalize() if word[0].isupper() else new

    words = sorted({*_WORD_INDEX, *_AXIS_WORDS}, key=len, reverse=True)
    pattern = re.compile(r"\b(" + "|".join(words) + r")\b", re.IGNORECASE)
    text = pattern.sub(replace, text)
    if failed:
        return None
    return re.sub("\x00(\\d+)\x00", lambda m: protected[int(m.group(1))], text)


def apply_transform(array: np.ndarray, transform: str) -> np.ndarray:
    """The same geometric transform on an image (H, W, C) or mask (H, W)."""
    if transform == "identity":
        return array
    if transform == "hflip":
        return np.ascontiguousarray(array[:, ::-1])
    if transform == "vflip":
        return np.ascontiguousarray(array[::-1])
    k = {"rot90": 1, "rot180": 2, "rot270": 3}[transform]
    return np.ascontiguousarray(np.rot90(array, k, axes=(0, 1)))


@dataclass(frozen=True)
class AugmentConfig:
    geometric_prob: float = 0.5  # chance of a flip/rotation (when the phrase allows it)
    rotations: bool = True
    black_box_prob: float = 0.2  # the reference recipe (RRSIS-D): 20 % of expressions …
    black_box_count: tuple[int, int] = (20, 60)  # … get 20–60 boxes …
    black_box_fraction: float = 32 / 1024  # … of 32 px at 1024 (scaled to the image's side)
    photometric_prob: float = 0.0  # chance of colour-preserving photometric changes
    brightness: tuple[float, float] = (0.75, 1.3)  # gain
    contrast: tuple[float, float] = (0.7, 1.3)  # around the image's mean grey level
    gamma: tuple[float, float] = (0.75, 1.35)
    desaturate: tuple[float, float] = (0.0, 0.25)  # share of each pixel's grey mixed in
    blur: tuple[float, float] = (0.0, 1.0)  # σ in pixels (below 0.3: none)
    noise: tuple[float, float] = (0.0, 6.0)  # σ in 8-bit levels


def photometric(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Brightness, contrast, gamma, desaturation, blur and noise, the same curve for every band."""
    x = image.astype(np.float32) * rng.uniform(*config.brightness)
    mean = float(x.mean())
    x = mean + (x - mean) * rng.uniform(*config.contrast)
    x = 255.0 * (np.clip(x, 0, 255) / 255.0) ** rng.uniform(*config.gamma)
    grey = x.mean(axis=2, keepdims=True)
    x = x + (grey - x) * rng.uniform(*config.desaturate)
    sigma = rng.uniform(*config.blur)
    if sigma >= 0.3:
        blurred = Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(sigma))
        x = np.asarray(blurred, np.float32)
    x = x + rng.normal(0, rng.uniform(*config.noise), x.shape[:2])[:, :, None]  # one value for all bands
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def augment(
    image: np.ndarray, mask: np.ndarray, phrase: str, rng: np.random.Generator, config: AugmentConfig
) -> tuple[np.ndarray, np.ndarray, str]:
    """One random augmentation of a training sample (the mask is never boxed: the object stays the target)."""
    if config.geometric_prob > 0 and rng.random() < config.geometric_prob:
        choices = ["hflip", "vflip"] + (["rot90", "rot180", "rot270"] if config.rotations else [])
        order = rng.permutation(len(choices))
        for k in order:  # the first transform the phrase can follow
            rewritten = rewrite_phrase(phrase, choices[k])
            if rewritten is not None:
                image, mask, phrase = (
                    apply_transform(image, choices[k]),
                    apply_transform(mask, choices[k]),
                    rewritten,
                )
                break
    if config.photometric_prob > 0 and rng.random() < config.photometric_prob:
        image = photometric(image, rng, config)
    if config.black_box_prob > 0 and rng.random() < config.black_box_prob:
        image = image.copy()
        height, width = image.shape[:2]
        side = max(1, round(config.black_box_fraction * max(height, width)))
        count = int(rng.integers(config.black_box_count[0], config.black_box_count[1] + 1))
        ys = rng.integers(0, max(1, height - side + 1), count)
        xs = rng.integers(0, max(1, width - side + 1), count)
        for y, x in zip(ys, xs):
            image[y : y + side, x : x + side] = 0
    return image, mask, phrase
