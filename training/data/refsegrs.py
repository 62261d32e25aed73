"""RefSegRS reader: `images/<id>.tif`, `masks/<id>.tif` (foreground = value > 50) and
`output_phrase_{train,val,test}.txt` with one `<id> <expression>` per line."""

from __future__ import annotations

from pathlib import Path

from backend.errors import UserError
from training.data.images import image_size, read_rgb, read_tiff_bands
from training.data.sample import SPLITS, ReferringSample

MASK_THRESHOLD = 50  # the benchmark's masks are 8-bit; > 50 is foreground


def read_phrase_file(path: Path) -> list[tuple[str, str]]:
    """(id, expression) per non-empty line; the expression is everything after the first space (or tab)."""
    pairs = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a UTF-8 text file of '<id> <expression>' lines") from None
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)  # a space in the published files; a tab is tolerated
        if len(parts) != 2 or not parts[1].strip():
            raise UserError(f"{path.name} line {number} is not '<id> <expression>': {line!r}")
        pairs.append((parts[0], parts[1].strip()))
    return pairs


class RefSegRSDataset:
    """One split of RefSegRS; lines sharing an image id are made adjacent."""

    def __init__(self, root: str | Path, split: str = "train") -> None:
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}; RefSegRS has {', '.join(SPLITS)}")
        self.root = Path(root)
        self.name = "refsegrs"
        self.split = split
        phrase_file = self.root / f"output_phrase_{split}.txt"
        if (
            not (self.root / "images").is_dir()
            or not (self.root / "masks").is_dir()
            or not phrase_file.is_file()
        ):
            raise UserError(
                f"{self.root} is not a RefSegRS folder: "
                f"expected images/, masks/ and output_phrase_{split}.txt"
            )
        pairs = read_phrase_file(phrase_file)
        if not pairs:
            raise UserError(f"RefSegRS split {split!r} in {self.root} is empty")
        order = sorted(
            range(len(pairs)), key=lambda i: (pairs[i][0], i)
        )  # stable: keeps line order per image
        self._pairs = [(pairs[i][0], pairs[i][1], i) for i in order]
        self._check_files(sorted({image_id for image_id, _ in pairs}))

    def _check_files(self, image_ids: list[str]) -> None:
        """Every image of the split has its image and its mask, readable and of one size: from the
        headers, before a run starts rather than hours into it."""
        missing = [
            f"{folder}/{image_id}.tif"
            for image_id in image_ids
            for folder in ("images", "masks")
            if not (self.root / folder / f"{image_id}.tif").is_file()
        ]
        if missing:
            raise UserError(
                f"RefSegRS split {self.split!r} in {self.root} lacks {len(missing)} image or mask "
                f"file(s) its phrase file names (first: {missing[0]})"
            )
        for image_id in image_ids:
            image = image_size(self.root / "images" / f"{image_id}.tif")
            mask = image_size(self.root / "masks" / f"{image_id}.tif")
            if mask != image:
                raise UserError(_size_mismatch(image_id, mask, image))

    def __len__(self) -> int:
        return len(self._pairs)

    def __getitem__(self, index: int) -> ReferringSample:
        image_id, phrase, line_index = self._pairs[index]
        image = read_rgb(self.root / "images" / f"{image_id}.tif")
        mask = read_tiff_bands(self.root / "masks" / f"{image_id}.tif")[0] > MASK_THRESHOLD
        if mask.shape != image.shape[:2]:
            raise UserError(_size_mismatch(image_id, mask.shape, image.shape[:2]))
        return ReferringSample(image, mask, phrase, image_id, f"{image_id}/{line_index}")


def _size_mismatch(image_id: str, mask: tuple[int, ...], image: tuple[int, ...]) -> str:
    return (
        f"the RefSegRS mask of image {image_id} is {mask[1]}×{mask[0]} pixels and the image "
        f"{image[1]}×{image[0]}"
    )
