"""Data readers: one per on-disk format, all yielding `ReferringSample`s.

- `rrsisd.RRSISDDataset` — RRSIS-D (refcoco-style pickles + COCO instances);
- `refsegrs.RefSegRSDataset` — RefSegRS (images/, masks/, output_phrase_{split}.txt);
- `region.RegionDataset` — the user's own raster(s) + labelled polygons;
- `synthetic.generate_scene` / `write_region` — procedural aerial scenes in the region format;
- `specs.open_datasets` — the command line's `KIND:VALUE` data specs.
"""

from training.data.sample import ConcatReferringDataset, ReferringDataset, ReferringSample

__all__ = ["ConcatReferringDataset", "ReferringDataset", "ReferringSample"]
