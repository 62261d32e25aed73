"""RRSIS-D reader (refcoco-style): `rrsisd/refs(unc).p`, `rrsisd/instances.json`,
images under `images/rrsisd/JPEGImages/`. One sample per sentence.

`root` is the folder holding `rrsisd/` and `images/` (the reference code's `refer/data`); the
`rrsisd/` folder itself is accepted too (images are then looked up beside it).
"""

from __future__ import annotations

import io
import json
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.errors import UserError
from training.data.images import image_size, read_rgb
from training.data.sample import SPLITS, ReferringSample

REFS_FILE = "refs(unc).p"
INSTANCES_FILE = "instances.json"
IMAGES_DIR = Path("images") / "rrsisd" / "JPEGImages"


class _PlainDataUnpickler(pickle.Unpickler):
    """The refs file is a pickle of lists, dicts, strings and numbers only: refuse any global, so a
    tampered file cannot run code."""

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        raise UserError(
            f"{REFS_FILE} contains a Python object ({module}.{name}); only plain data is accepted"
        )


def load_refs(path: Path) -> list[dict]:
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        # latin1 keeps Python-2 byte strings readable (the refcoco family was pickled with Python 2).
        refs = _PlainDataUnpickler(io.BytesIO(data), encoding="latin1").load()  # noqa: S301 - globals refused above
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise UserError(f"{path} is not a readable refs pickle ({exc})") from exc
    if not isinstance(refs, list) or not all(isinstance(ref, dict) for ref in refs):
        raise UserError(f"{path} must hold a list of reference dicts")
    return refs


def _coco_mask():
    """pycocotools' mask codec, imported when RRSIS-D is read: the backend the QGIS plugin installs trains
    on regions without it (it is one of the `training` extras)."""
    try:
        from pycocotools import mask
    except ImportError:
        raise UserError(
            "reading RRSIS-D needs pycocotools: pip install 'pycocotools>=2.0.8,<3' (or the project's "
            "`training` extras)"
        ) from None
    return mask


def decode_segmentation(segmentation, height: int, width: int) -> np.ndarray:
    """(H, W) bool of a COCO segmentation: polygons, compressed or uncompressed RLE; the parts of one
    annotation are merged."""
    coco_mask = _coco_mask()
    if isinstance(segmentation, list):  # polygons: one flat [x0, y0, x1, y1, ...] list per part
        rles = coco_mask.frPyObjects(segmentation, height, width)
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rles = [coco_mask.frPyObjects(segmentation, height, width)]  # uncompressed RLE → compressed
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), str | bytes):
        counts = segmentation["counts"]
        rles = [
            {
                "size": list(segmentation["size"]),
                "counts": counts.encode() if isinstance(counts, str) else counts,
            }
        ]
    else:
        raise UserError(f"unknown COCO segmentation format: {type(segmentation).__name__}")
    decoded = coco_mask.decode(rles)  # (H, W, parts) uint8
    if decoded.ndim == 2:
        decoded = decoded[:, :, None]
    return decoded.any(axis=2)


@dataclass(frozen=True)
class _Entry:
    image_file: Path
    height: int
    width: int
    segmentation: object
    phrase: str
    image_id: str
    sample_id: str


def _resolve_layout(root: Path) -> tuple[Path, Path]:
    """(folder with refs + instances, images folder)."""
    candidates = [(root / "rrsisd", root / IMAGES_DIR), (root, root.parent / IMAGES_DIR)]
    for annotations_dir, images in candidates:
        if (annotations_dir / REFS_FILE).is_file() and (annotations_dir / INSTANCES_FILE).is_file():
            if not images.is_dir():
                raise UserError(f"RRSIS-D images folder {images} is missing")
            return annotations_dir, images
    raise UserError(
        f"{root} is not an RRSIS-D folder: expected rrsisd/{REFS_FILE} and rrsisd/{INSTANCES_FILE} "
        f"with images under {IMAGES_DIR}"
    )


class RRSISDDataset:
    """One split of RRSIS-D; sentences of one image are adjacent."""

    def __init__(self, root: str | Path, split: str = "train") -> None:
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}; RRSIS-D has {', '.join(SPLITS)}")
        self.root = Path(root)
        self.name = "rrsisd"
        self.split = split
        annotations_dir, images_dir = _resolve_layout(self.root)
        refs = load_refs(annotations_dir / REFS_FILE)
        try:
            instances = json.loads((annotations_dir / INSTANCES_FILE).read_text(encoding="utf-8"))
            images = {image["id"]: image for image in instances["images"]}
            annotations = {ann["id"]: ann for ann in instances["annotations"]}
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UserError(
                f"{annotations_dir / INSTANCES_FILE} is not a COCO instances file ({exc})"
            ) from exc

        entries: list[_Entry] = []
        for ref in sorted(
            (r for r in refs if r.get("split") == split), key=lambda r: (r["image_id"], r["ref_id"])
        ):
            try:
                image = images[ref["image_id"]]
                annotation = annotations[ref["ann_id"]]
            except KeyError as exc:
                raise UserError(
                    f"ref {ref.get('ref_id')} points to a missing image or annotation ({exc})"
                ) from exc
            for sentence in ref["sentences"]:
                phrase = str(sentence.get("raw", sentence.get("sent", ""))).strip()
                entries.append(
                    _Entry(
                        image_file=images_dir / image["file_name"],
                        height=int(image["height"]),
                        width=int(image["width"]),
                        segmentation=annotation["segmentation"],
                        phrase=phrase,
                        image_id=str(ref["image_id"]),
                        sample_id=f"{ref['ref_id']}/{sentence.get('sent_id', len(entries))}",
                    )
                )
        if not entries:
            raise UserError(f"RRSIS-D split {split!r} in {self.root} is empty")
        _check_entries(entries, split, images_dir)
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> ReferringSample:
        entry = self._entries[index]
        image = read_rgb(entry.image_file)
        if image.shape[:2] != (entry.height, entry.width):
            raise UserError(
                f"{entry.image_file} is {image.shape[1]}×{image.shape[0]}, "
                f"instances.json says {entry.width}×{entry.height}"
            )
        try:
            mask = decode_segmentation(entry.segmentation, entry.height, entry.width)
        except (ValueError, TypeError, KeyError, IndexError) as exc:  # pycocotools on a broken RLE
            raise UserError(f"the mask of RRSIS-D sample {entry.sample_id} does not decode ({exc})") from None
        return ReferringSample(image, mask, entry.phrase, entry.image_id, entry.sample_id)


def _check_entries(entries: list[_Entry], split: str, images_dir: Path) -> None:
    """Every sample of the split has a phrase, an image file of the size instances.json gives and a
    segmentation of a known form: checked before a run starts rather than hours into it (the images
    from their headers)."""
    for entry in entries:
        if not entry.phrase:
            raise UserError(f"RRSIS-D sample {entry.sample_id} (image {entry.image_id}) has no sentence text")
        problem = segmentation_problem(entry.segmentation, entry.height, entry.width)
        if problem is not None:
            raise UserError(f"the mask of RRSIS-D sample {entry.sample_id} is broken: {problem}")
    files = {entry.image_file: (entry.height, entry.width) for entry in entries}
    missing = sorted(path.name for path in files if not path.is_file())
    if missing:
        raise UserError(
            f"RRSIS-D split {split!r} lacks {len(missing)} of its {len(files)} images in {images_dir} "
            f"(first: {missing[0]})"
        )
    for path, (height, width) in files.items():
        found = image_size(path)
        if found != (height, width):
            raise UserError(f"{path} is {found[1]}×{found[0]} pixels, instances.json says {width}×{height}")


def segmentation_problem(segmentation, height: int, width: int) -> str | None:
    """What is wrong with a COCO segmentation (None when it has one of the forms decoded above)."""
    if isinstance(segmentation, list):
        parts_ok = segmentation and all(
            isinstance(part, list)
            and len(part) >= 6
            and len(part) % 2 == 0
            and all(isinstance(v, int | float) and math.isfinite(v) for v in part)
            for part in segmentation
        )
        return None if parts_ok else "its polygons must each be a list of at least three x, y pairs"
    if not isinstance(segmentation, dict):
        return f"a segmentation is polygons or RLE, not {type(segmentation).__name__}"
    size, counts = segmentation.get("size"), segmentation.get("counts")
    if not isinstance(size, list | tuple) or list(size) != [height, width]:
        return f"its RLE size {size!r} is not the image's {height}×{width}"
    if isinstance(counts, list):
        if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != height * width:
            return f"its RLE counts do not add up to the image's {height * width} pixels"
        return None
    if isinstance(counts, str | bytes) and counts:
        return None
    return "its RLE has no counts"
