r"""Evaluate a model on a data split: Pr@0.5–0.9, oIoU and mIoU (docs/method.md's protocol), printed as a
table and optionally saved as JSON.

  rs2sam2 evaluate --data refsegrs:/data/RefSegRS --split test \
      --checkpoint run/best.safetensors --out test.json
  rs2sam2 evaluate --data rrsisd:/data/refer/data --split test --model paper-rrsisd   # the paper's table
  rs2sam2 evaluate --region ortho.tif,labels.gpkg,phrase --model "my roofs" --out scores.json

`--region`: the region protocol of training/region_queries.py — every label one query of the real
`rs2sam2 segment` over its 512-pixel block (--queries view: the panel's; tiles: full resolution);
scores overall, by kind and by phrase. With --out, status.json beside it tells the progress.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from backend.engine.model_loading import add_model_arguments
from training.data.specs import SPEC_HELP

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rs2sam2" / "data"


HELP = "evaluate a model (Pr@X, mIoU, oIoU)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--data", action="append", metavar="SPEC", help=SPEC_HELP + " (repeatable)")
    which.add_argument(
        "--region",
        metavar="RASTER,LABELS[,COLUMN]",
        help="score the model as the panel uses it on a labelled region (COLUMN: the phrase field, "
        "default phrase)",
    )
    parser.add_argument(
        "--queries",
        default="view",
        choices=("view", "tiles"),
        help="with --region: view (the panel's, default) or tiles (full resolution)",
    )
    parser.add_argument(
        "--split",
        default="test",
        choices=("train", "val", "test", "all"),
        help="default: test (a region's test is its spatial val blocks); all: every labelled "
        "feature of a region, e.g. a new region the model never saw",
    )
    add_model_arguments(parser, default_text="none: give one")
    parser.add_argument(
        "--protocol",
        default="reference",
        choices=("reference", "native"),
        help="reference: at 1024×1024 as the papers; native: at each image's own size",
    )
    parser.add_argument("--limit", type=int, help="evaluate the first N samples only")
    parser.add_argument(
        "--out", type=Path, help="save metrics and per-sample IoU as JSON (never overwritten)"
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=DEFAULT_CACHE, help="where synthetic scenes are written"
    )


def check_new_file(path: Path) -> None:
    """Outputs are never overwritten and need an existing folder."""
    from backend.errors import UserError

    if path.exists():
        raise UserError(f"{path} already exists; choose another --out")
    if not path.parent.is_dir():
        raise UserError(f"the folder of --out ({path.parent}) does not exist")


def write_json_atomically(path: Path, data: dict) -> None:
    check_new_file(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def run(args: argparse.Namespace) -> int:
    from backend.engine.model_loading import load_model_from_args, runtime_line
    from backend.errors import UserError
    from training.data.specs import DataSpec, open_datasets
    from training.evaluate import EvaluationConfig, evaluate
    from training.metrics import format_table

    if args.region:
        return run_region(args)
    for spec in args.data:
        DataSpec.parse(spec)
    if args.out is not None:
        check_new_file(args.out)  # before any work
    if args.preset is None and args.checkpoint is None and args.model is None:
        raise UserError("give --model, --checkpoint or --preset")
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    config = EvaluationConfig(protocol=args.protocol, limit=args.limit)
    segmenter, threads = load_model_from_args(args)
    print(f"rs2sam2 evaluate: {runtime_line(segmenter, threads)}", file=sys.stderr, flush=True)
    whole = args.split == "all"
    if whole and any(DataSpec.parse(spec).kind != "region" for spec in args.data):
        raise UserError("--split all is for regions; benchmarks and synthetic data have train, val and test")
    dataset = open_datasets(
        args.data, "test" if whole else args.split, segmenter.input_size, args.cache_dir, whole_regions=whole
    )
    result = evaluate(segmenter, dataset, config, progress=True)
    summary = result.summary()
    name = f"{dataset.name} {args.split}"
    print(f"{segmenter.model_id} on {name} ({args.protocol} protocol)\n")
    print(format_table({name: summary}))
    if args.out is not None:
        write_json_atomically(
            args.out,
            {
                "model": segmenter.model_id,
                "data": args.data,
                "split": args.split,
                "protocol": args.protocol,
                **result.to_json(),
            },
        )
        print(f"\nsaved {args.out}")
    return 0


def _model_flags(args: argparse.Namespace) -> list[str]:
    """The model arguments again, for the `rs2sam2 segment` calls of the region protocol."""
    flags = []
    for name in ("model", "preset", "checkpoint", "device", "precision"):
        value = getattr(args, name, None)
        if value is not None:
            flags += [f"--{name}", str(value)]
    return flags


def run_region(args: argparse.Namespace) -> int:
    import rasterio

    from backend.errors import UserError
    from training.metrics import format_table
    from training.progress import RunStatus
    from training.region_queries import query_region, read_labels, region_scores

    parts = args.region.split(",")
    if len(parts) not in (2, 3) or not all(parts):
        raise UserError(f"--region {args.region!r} must be RASTER,LABELS[,COLUMN]")
    raster, vector = Path(parts[0]), Path(parts[1])
    column = parts[2] if len(parts) == 3 else "phrase"
    if args.out is not None:
        check_new_file(args.out)
    if args.preset is None and args.checkpoint is None and args.model is None:
        raise UserError("give --model, --checkpoint or --preset")
    with rasterio.open(raster) as dataset:
        pixel_area = abs(dataset.transform.determinant)
    labels = read_labels(raster, vector, column)
    status = RunStatus(args.out.parent if args.out is not None else None)
    status.update(phase="evaluating", step=0, total_steps=len({label.block for label in labels}))
    with tempfile.TemporaryDirectory() as work:
        scores = query_region(
            raster,
            labels,
            _model_flags(args),
            Path(work),
            args.queries,
            pixel_area,
            progress=lambda done, total: status.update(step=done, total_steps=total),
        )
    result = {"model": args.model or args.checkpoint or args.preset, "protocol": args.queries}
    result.update(region_scores(scores))
    print(format_table({"all labels": result["overall"], **result["by_kind"]}))
    if args.out is not None:
        write_json_atomically(args.out, result)
        print(f"\nsaved {args.out}")
    status.update(phase="done")
    return 0
