"""Writers of tiny benchmark folders in the exact public on-disk layouts (seeded)."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE, computed by hand: run lengths over the column-major flattening,
    starting with a run of zeros."""
    flat = mask.astype(np.uint8).flatten(order="F")
    counts, current, run = [], 0, 0
    for value in flat:
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    counts.append(run)
    return {"size": [mask.shape[0], mask.shape[1]], "counts": counts}


def write_rrsisd(root: Path, seed: int = 0, size: int = 32) -> dict[str, list[tuple[str, np.ndarray]]]:
    """An RRSIS-D folder: rrsisd/refs(unc).p, rrsisd/instances.json, images/rrsisd/JPEGImages/*.jpg.

    Four images; refs with polygons (two parts), compressed RLE and uncompressed RLE. Returns, per
    split, the expected (phrase, mask) list in reading order.
    """
    from pycocotools import mask as coco_mask

    rng = np.random.default_rng(seed)
    (root / "rrsisd").mkdir(parents=True)
    images_dir = root / "images" / "rrsisd" / "JPEGImages"
    images_dir.mkdir(parents=True)
    images, annotations, refs = [], [], []
    expected: dict[str, list[tuple[str, np.ndarray]]] = {"train": [], "val": [], "test": []}

    def polygon_ann(ann_id: int, image_id: int):
        mask = np.zeros((size, size), bool)
        mask[2:6, 3:9] = True  # [x0,y0,...] rectangle x 3..9, y 2..6
        mask[20:25, 10:12] = True
        seg = [[3, 2, 9, 2, 9, 6, 3, 6], [10, 20, 12, 20, 12, 25, 10, 25]]
        return {"id": ann_id, "image_id": image_id, "category_id": 1, "segmentation": seg, "iscrowd": 0}, mask

    def random_mask():
        mask = np.zeros((size, size), bool)
        y, x = rng.integers(0, size - 10, 2)
        mask[y : y + rng.integers(3, 10), x : x + rng.integers(3, 10)] = True
        mask[rng.integers(0, size), rng.integers(0, size)] = True  # a stray pixel: RLE must keep it
        return mask

    def compressed_ann(ann_id: int, image_id: int):
        mask = random_mask()
        rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")  # as json stores it
        return {"id": ann_id, "image_id": image_id, "category_id": 2, "segmentation": rle, "iscrowd": 1}, mask

    def uncompressed_ann(ann_id: int, image_id: int):
        mask = random_mask()
        return {
            "id": ann_id,
            "image_id": image_id,
            "category_id": 2,
            "segmentation": uncompressed_rle(mask),
            "iscrowd": 1,
        }, mask

    plan = [  # (image_id, split, ann maker, sentences)
        (7, "train", polygon_ann, ["the two roofs", "both buildings"]),
        (7, "train", compressed_ann, ["the small pond"]),
        (3, "train", uncompressed_ann, ["a vehicle on the left"]),
        (5, "val", compressed_ann, ["the bridge"]),
        (9, "test", uncompressed_ann, ["the airport", "the runway", "planes parked"]),
    ]
    ann_id = 100
    sent_id = 0
    masks: dict[int, np.ndarray] = {}
    seen_images = set()
    for ref_id, (image_id, split, make, sentences) in enumerate(plan):
        if image_id not in seen_images:
            seen_images.add(image_id)
            file_name = f"{image_id:05d}.jpg"
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
                images_dir / file_name
            )
            images.append({"id": image_id, "file_name": file_name, "height": size, "width": size})
        annotation, masks[ann_id] = make(ann_id, image_id)
        annotations.append(annotation)
        sentence_dicts = []
        for text in sentences:
            sentence_dicts.append(
                {"raw": text, "tokens": text.split(), "sent_id": sent_id, "sent": text.lower()}
            )
            sent_id += 1
        refs.append(
            {
                "ref_id": ref_id,
                "ann_id": ann_id,
                "image_id": image_id,
                "category_id": annotation["category_id"],
                "split": split,
                "sentences": sentence_dicts,
                "sent_ids": [s["sent_id"] for s in sentence_dicts],
                "file_name": f"{image_id:05d}_{ann_id}.jpg",
            }
        )
        ann_id += 1
    # Reading order: by image id, then ref id.
    for ref in sorted(refs, key=lambda r: (r["image_id"], r["ref_id"])):
        for sentence in ref["sentences"]:
            expected[ref["split"]].append((sentence["raw"], masks[ref["ann_id"]]))
    with open(root / "rrsisd" / "refs(unc).p", "wb") as handle:
        pickle.dump(refs, handle, protocol=2)
    (root / "rrsisd" / "instances.json").write_text(
        json.dumps(
            {
                "images": images,
                "annotations": annotations,
                "categories": [{"id": 1, "name": "building"}, {"id": 2, "name": "other"}],
            }
        )
    )
    return expected


def write_refsegrs(root: Path, seed: int = 0, size: int = 24) -> dict[str, list[tuple[str, np.ndarray]]]:
    """A RefSegRS folder: images/<id>.tif, masks/<id>.tif (8-bit, foreground > 50),
    output_phrase_{train,val,test}.txt with `<id> <expression>` lines. Returns, per split, the
    expected (phrase, mask) list in reading order (by image id, then line)."""
    rng = np.random.default_rng(seed)
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    lines = {
        "train": [("10", "road along the river"), ("2", "the low vegetation"), ("10", "road")],
        "val": [("31", "vehicles in the parking lot")],
        "test": [("4", "building"), ("5", "impervious surface near the trees")],
    }
    masks = {}
    for split_lines in lines.values():
        for image_id, _ in split_lines:
            if image_id in masks:
                continue
            values = rng.choice(np.array([0, 30, 50, 51, 128, 255], dtype=np.uint8), size=(size, size))
            masks[image_id] = values > 50
            image = rng.integers(0, 255, (3, size, size), dtype=np.uint8)
            for folder, data in (("images", image), ("masks", values[None])):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # RefSegRS tiles carry no georeferencing
                    with rasterio.open(
                        root / folder / f"{image_id}.tif",
                        "w",
                        driver="GTiff",
                        width=size,
                        height=size,
                        count=data.shape[0],
                        dtype="uint8",
                    ) as dataset:
                        dataset.write(data)
    expected = {}
    for split, split_lines in lines.items():
        (root / f"output_phrase_{split}.txt").write_text("".join(f"{i} {text}\n" for i, text in split_lines))
        order = sorted(range(len(split_lines)), key=lambda k: (split_lines[k][0], k))
        expected[split] = [(split_lines[k][1], masks[split_lines[k][0]]) for k in order]
    return expected
