"""Small-region fine-tuning, as a person would do it: label one region, fine-tune the bundled model on
it with the default recipe, then query a second region of the same kind with the real command line —
`rs2sam2 segment RASTER PHRASE… --bbox <a 512-pixel window> --keep best` — before and after.

The two regions (bench/region_data.py) are 2048² rasters at 0.5 m made by a generator configuration of
their own (other colour shades and names, another mix of kinds, other object sizes than the scenes the
bundled model learnt from), with about 45 labelled polygons each in a `description` column. Region A
trains (`rs2sam2 train --data region:A.tif,A.gpkg,description --checkpoint <model>`: the recipe picks
itself); each label of region B is one query over the 512-pixel block it lies in; a query's IoU is that
of the kept polygon against the labelled one (0 when nothing is found). Reported: mIoU, oIoU and
Pr@0.5 in total, on the kinds region A has labels of, and by kind.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

A_SEED, B_SEED = 10_000_000, 10_000_100  # outside every synthetic split's seeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", help="the model to fine-tune (default: the bundled demo model)")
    parser.add_argument("--labels", type=int, default=45, help="labelled polygons per region (default 45)")
    parser.add_argument(
        "--train-args",
        default="",
        help="extra `rs2sam2 train` flags, e.g. '--max-steps 800' (default: none; the recipe chooses)",
    )
    parser.add_argument("--workdir", help="keep the regions and the run here (default: a temporary folder)")
    parser.add_argument(
        "--reuse-run",
        action="store_true",
        help="with --workdir: query with the fine-tuned model already there (when only the engine changed)",
    )
    parser.add_argument("--device", default="cpu")


def query_region(region, checkpoint: Path, workdir: Path, device: str) -> list[tuple[str, float, float]]:
    """(kind, intersection px, union px) per label of `region`, one `rs2sam2 segment` call per block."""
    import pyogrio
    import shapely

    from backend.cli import main as rs2sam2
    from bench.region_data import GSD

    blocks: dict[tuple, list] = {}
    for label in region.labels:
        blocks.setdefault(label.block, []).append(label)
    results = []
    for k, (bounds, labels) in enumerate(blocks.items()):
        out = workdir / f"query-{k}.gpkg"
        out.unlink(missing_ok=True)
        code = rs2sam2(
            ["segment", str(region.raster), *[label.phrase for label in labels], "-o", str(out)]
            + ["--bbox", ",".join(f"{v:.3f}" for v in bounds), "--keep", "best"]
            + ["--checkpoint", str(checkpoint), "--device", device, "--quiet"]
        )
        if code != 0:
            raise RuntimeError(f"rs2sam2 segment failed with exit code {code}")
        found: dict[str, shapely.Geometry] = {}
        if out.exists():
            meta, _, wkb, fields = pyogrio.raw.read(str(out))
            phrases = fields[list(meta["fields"]).index("phrase")]
            for phrase, geometry in zip(phrases, shapely.from_wkb(wkb)):
                found[phrase] = shapely.union(found[phrase], geometry) if phrase in found else geometry
        for label in labels:
            truth = shapely.intersection(label.geometry, shapely.box(*bounds))
            guess = found.get(label.phrase)
            inter = 0.0 if guess is None else shapely.area(shapely.intersection(guess, truth))
            union = shapely.area(truth) if guess is None else shapely.area(shapely.union(guess, truth))
            results.append((label.kind, inter / GSD**2, union / GSD**2))
    return results


def fine_tune(region, checkpoint: Path, out: Path, extra: list[str]) -> tuple[Path, float, str]:
    """Run `rs2sam2 train` on the labelled region; (checkpoint to use, minutes, the run's own notes)."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    command = [sys.executable, "-m", "backend.cli", "train", "--data"]
    command += [f"region:{region.raster},{region.labels_path},description", "--checkpoint", str(checkpoint)]
    command += ["--out", str(out), "--device", "cpu", "--no-progress", *extra]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    minutes = (time.perf_counter() - started) / 60
    if done.returncode != 0:
        raise RuntimeError(f"rs2sam2 train failed:\n{done.stderr[-3000:]}")
    notes = [
        line
        for line in done.stderr.splitlines()
        if line.startswith(("recipe", "small", "valid", "steps", "warn"))
    ]
    best = out / "best.safetensors"
    return (best if best.exists() else out / "final.safetensors"), minutes, "\n".join(notes)


def _earlier_run(run_dir: Path) -> tuple[Path, float, str]:
    saved = json.loads((run_dir / "bench.json").read_text())
    best = run_dir / "best.safetensors"
    return (best if best.exists() else run_dir / "final.safetensors"), saved["minutes"], saved["notes"]


def summarise(results: list[tuple[str, float, float]], kinds: set[str] | None = None) -> dict:
    from training.metrics import SegmentationMetrics

    chosen = [(i, u) for kind, i, u in results if kinds is None or kind in kinds]
    return SegmentationMetrics([round(i) for i, _ in chosen], [round(u) for _, u in chosen]).summary()


def report(before, after, labelled_kinds: set[str], minutes: float, notes: str, run: Path, args) -> str:
    def row(name: str, summary: dict) -> str:
        return (
            f"| {name} | {100 * summary['mIoU']:.1f} | {100 * summary['oIoU']:.1f} | "
            f"{100 * summary['Pr@0.5']:.1f} | {summary['samples']} |"
        )

    lines = ["| queries on region B | mIoU | oIoU | Pr@0.5 | queries |", "|---|---|---|---|---|"]
    for name, results in (("before", before), ("after", after)):
        lines.append(row(f"{name}, all kinds", summarise(results)))
        lines.append(row(f"{name}, kinds labelled in A", summarise(results, labelled_kinds)))
    kinds = sorted({kind for kind, _, _ in after})
    lines += ["", "| kind | labels in A | queries in B | mIoU before | mIoU after |", "|---|---|---|---|---|"]
    for kind in kinds:
        b, a = summarise(before, {kind}), summarise(after, {kind})
        lines.append(
            f"| {kind} | {args.labelled_counts.get(kind, 0)} | {a['samples']} | {100 * b['mIoU']:.1f} | "
            f"{100 * a['mIoU']:.1f} |"
        )
    head = (
        f"Regions A (labelled) and B (queried): 2048² px at 0.5 m, {args.labels} labels each "
        "(bench/region_data.py: its own palette, mix of kinds and object sizes). Fine-tuning "
        f"`rs2sam2 train --data region:A.tif,A.gpkg,description --checkpoint {args.model_name}"
        f"{(' ' + args.train_args) if args.train_args else ''}` took {minutes:.1f} min here "
        f"(torch threads: {os.environ.get('OMP_NUM_THREADS', '1')}); the run said:\n\n```\n{notes}\n```\n\n"
        f"Queries: `rs2sam2 segment B.tif PHRASE… --bbox <the label's 512-px block> --keep best "
        f"--checkpoint <model>`; after = `{run.name}`."
    )
    return head + "\n\n" + "\n".join(lines)


def run(args: argparse.Namespace) -> str:
    from collections import Counter

    from backend.bundled import DEMO_CHECKPOINT
    from bench.region_data import make_region

    checkpoint = Path(args.checkpoint or DEMO_CHECKPOINT).resolve()
    args.model_name = "<bundled demo model>" if args.checkpoint is None else checkpoint.name
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(args.workdir or scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        region_a = make_region(workdir / "regions", "A", A_SEED, args.labels)
        region_b = make_region(workdir / "regions", "B", B_SEED, args.labels)
        args.labelled_counts = Counter(label.kind for label in region_a.labels)
        before = query_region(region_b, checkpoint, workdir, args.device)
        run_dir = workdir / "finetune"
        if args.reuse_run and (run_dir / "final.safetensors").exists():
            tuned, minutes, notes = _earlier_run(run_dir)
        else:
            if run_dir.exists():
                import shutil

                shutil.rmtree(run_dir)
            tuned, minutes, notes = fine_tune(region_a, checkpoint, run_dir, args.train_args.split())
            (run_dir / "bench.json").write_text(json.dumps({"minutes": minutes, "notes": notes}))
        after = query_region(region_b, tuned, workdir, args.device)
        return report(before, after, set(args.labelled_counts), minutes, notes, tuned, args)
