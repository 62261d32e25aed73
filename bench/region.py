"""Small-region fine-tuning, as a person would do it: label one region, fine-tune the bundled model on
it with the default recipe, then query a second region of the same kind with the real command line —
`rs2sam2 segment RASTER PHRASE… --bbox <a 512-pixel window> --keep best` — before and after.

The two regions (bench/region_data.py) are 2048² rasters at 0.5 m made by a generator configuration of
their own (other colour shades and names, another mix of kinds, other object sizes than the scenes the
bundled model learnt from), with about 45 labelled polygons each in a `description` column. Region A
trains (`rs2sam2 train --data region:A.tif,A.gpkg,description --checkpoint <model>`: the recipe picks
itself); each label of region B is one query over the 512-pixel block it lies in; a query's IoU is that
of the kept polygon against the labelled one (0 when nothing is found). Two protocols: the panel's
(`--keep best`, the view of the whole block, refined and — for objects too small for it — searched at
full resolution) and full-resolution tiles (`--context tiles`). Reported: mIoU, oIoU and Pr@0.5 in
total and by kind, before and after, on region B and on region A's own labels; with `--blends`, the
fine-tuned model blended with its start at other shares (how the recipe's blend was chosen).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

A_SEED, B_SEED = 10_000_000, 10_000_100  # outside every synthetic split's seeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", help="the model to fine-tune (default: the bundled demo model)")
    parser.add_argument(
        "--labels",
        type=_counts,
        default=(45,),
        help="labelled polygons in region A, one fine-tuning per count, e.g. 15,45,64 (default 45; at most "
        "64: four per 512-px block)",
    )
    parser.add_argument("--queries", type=int, default=45, help="labelled polygons queried in region B")
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
    parser.add_argument(
        "--protocols",
        default="view,tiles",
        help="query protocols: view (the panel's: --keep best on the whole block) and/or tiles "
        "(--context tiles: full resolution); default both",
    )
    parser.add_argument(
        "--blends",
        default="",
        help="also query (view protocol) the last step blended with this share of the starting weights, "
        "e.g. 0,0.5 (the run's own result uses the recipe's share)",
    )


# The lines of `rs2sam2 train`'s output that say what the run chose (quoted in the report)
RUN_NOTES = ("start", "settings", "replay", "recipe", "small", "valid", "steps", "result", "warn")


def query_region(
    region, checkpoint: Path, workdir: Path, device: str, protocol: str = "view"
) -> list[tuple[str, float, float]]:
    """(kind, intersection px, union px) per label of `region`, one `rs2sam2 segment` call per block
    (the protocol lives in training/region_queries.py, shared with the service's evaluation jobs)."""
    from bench.region_data import GSD
    from training.region_queries import query_region as query

    flags = ["--checkpoint", str(checkpoint), "--device", device]
    scores = query(region.raster, region.labels, flags, workdir, protocol, pixel_area=GSD**2)
    return [(score.kind, score.intersection, score.union) for score in scores]


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
    notes = [line for line in done.stderr.splitlines() if line.startswith(RUN_NOTES)]
    best = out / "best.safetensors"
    return (best if best.exists() else out / "final.safetensors"), minutes, "\n".join(notes)


def _earlier_run(run_dir: Path) -> tuple[Path, float, str]:
    saved = json.loads((run_dir / "bench.json").read_text())
    best = run_dir / "best.safetensors"
    return (best if best.exists() else run_dir / "final.safetensors"), saved["minutes"], saved["notes"]


def _counts(text: str) -> tuple[int, ...]:
    counts = tuple(int(part) for part in text.split(",") if part.strip())
    if not counts or min(counts) < 1 or max(counts) > 64:
        raise argparse.ArgumentTypeError("give label counts between 1 and 64, e.g. 15,45")
    return counts


def summarise(results: list[tuple[str, float, float]], kinds: set[str] | None = None) -> dict:
    from training.region_queries import QueryScore
    from training.region_queries import summarise as summarise_scores

    return summarise_scores([QueryScore(k, "", i, u) for k, i, u in results if kinds is None or k in kinds])


@dataclass
class Tuning:
    """One fine-tuning on region A with `labels` labelled polygons, and its queries on region B."""

    labels: int
    kinds: Counter  # labels in A by kind
    minutes: float
    notes: str
    checkpoint: Path
    results: dict[str, list]  # protocol → query results on region B
    # The same queries on region A's own labels (what the run trained on), for the largest label count:
    # a model that cannot outline its training labels is limited by what it can see or hold, not by
    # how it generalises to region B.
    own: dict[str, list] | None = None
    blends: dict[float, list] = field(default_factory=dict)  # start share → view queries on region B


def _kind_miou(results: list, kind: str) -> str:
    """The mIoU of one kind's queries in percent, "–" when there are none."""
    if not any(k == kind for k, _, _ in results):
        return "–"
    return f"{100 * summarise(results, {kind})['mIoU']:.1f}"


def _row(name: str, summary: dict) -> str:
    return (
        f"| {name} | {100 * summary['mIoU']:.1f} | {100 * summary['oIoU']:.1f} | "
        f"{100 * summary['Pr@0.5']:.1f} | {summary['samples']} |"
    )


PROTOCOL_NAMES = {"view": "view (the panel's)", "tiles": "full-resolution tiles"}


def report(before: dict[str, list], tunings: list[Tuning], args: argparse.Namespace) -> str:
    """The head (regions, command, what the main run said), totals per protocol and label count, then
    by kind for the largest label count."""
    main = max(tunings, key=lambda t: t.labels)
    protocols = list(before)
    lines = ["| queries | mIoU | oIoU | Pr@0.5 | queries |", "|---|---|---|---|---|"]
    for protocol in protocols:
        name = PROTOCOL_NAMES[protocol]
        lines.append(_row(f"{name}: region B before fine-tuning", summarise(before[protocol])))
        for tuning in sorted(tunings, key=lambda t: t.labels):
            where = f"after {tuning.labels} labels ({tuning.minutes:.0f} min)"
            lines.append(_row(f"{name}: region B {where}", summarise(tuning.results[protocol])))
        if main.own is not None:
            lines.append(
                _row(f"{name}: region A's own labels after {main.labels}", summarise(main.own[protocol]))
            )
    for share, results in sorted(main.blends.items()):
        lines.append(
            _row(f"view: region B, last step blended with {share:.0%} of the start", summarise(results))
        )
    lines += ["", f"mIoU by kind, {main.labels} labels in A (B: region B; A: its own labels):", ""]
    head, rule = "| kind | labels in A | queries in B |", "|---|---|---|"
    for protocol in protocols:
        head += f" {protocol}: B before | {protocol}: B after |" + (
            f" {protocol}: A after |" if main.own else ""
        )
        rule += "---|---|" + ("---|" if main.own else "")
    lines += [head, rule]
    kinds = {kind for results in main.results.values() for kind, _, _ in results}
    kinds |= {kind for results in (main.own or {}).values() for kind, _, _ in results}
    for kind in sorted(kinds):
        queries = sum(1 for k, _, _ in main.results[protocols[0]] if k == kind)
        cells = []
        for protocol in protocols:
            cells += [_kind_miou(before[protocol], kind), _kind_miou(main.results[protocol], kind)]
            cells += [_kind_miou(main.own[protocol], kind)] if main.own else []
        lines.append(f"| {kind} | {main.kinds.get(kind, 0)} | {queries} | " + " | ".join(cells) + " |")
    head = (
        f"Regions A (labelled) and B (queried): 2048² px at 0.5 m (bench/region_data.py: its own palette, "
        f"mix of kinds and object sizes); {args.queries} labels of B are queried. Fine-tuning `rs2sam2 train "
        f"--data region:A.tif,A.gpkg,description --checkpoint {args.model_name}"
        f"{(' ' + args.train_args) if args.train_args else ''}`, torch threads: "
        f"{os.environ.get('OMP_NUM_THREADS', '1')}; with {main.labels} labels the run said:\n\n```\n"
        f"{main.notes}\n```\n\nQueries: `rs2sam2 segment B.tif PHRASE… --bbox <the label's 512-px block> "
        f"--keep best --checkpoint <model>` (view) and the same with `--context tiles` (tiles); after = "
        f"`{main.checkpoint.name}` of each run."
    )
    return head + "\n\n" + "\n".join(lines)


def _blend_checkpoint(start: Path, run_dir: Path, share: float) -> Path:
    """The run's last step blended with `share` of the starting weights, as a checkpoint file."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from training.state import load_state
    from training.weights_blend import blend_state

    with safe_open(str(start), "pt") as handle:
        header = handle.metadata()
    last = {k: v for k, v in load_state(run_dir / "last_state.pt")["model"].items()}
    blended = blend_state(load_file(str(start)), last, 1 - share)
    out = run_dir / f"blend-{share:g}.safetensors"
    save_file(
        {k: v.contiguous() for k, v in blended.items() if isinstance(v, torch.Tensor)}, str(out), header
    )
    return out


def run(args: argparse.Namespace) -> str:
    from backend.bundled import DEMO_CHECKPOINT
    from bench.region_data import make_region

    checkpoint = Path(args.checkpoint or DEMO_CHECKPOINT).resolve()
    args.model_name = "<bundled demo model>" if args.checkpoint is None else checkpoint.name
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    blends = [float(b) for b in args.blends.split(",") if b.strip()]
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(args.workdir or scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        region_b = make_region(workdir / "regions", "B", B_SEED, args.queries)
        before = {p: query_region(region_b, checkpoint, workdir, args.device, p) for p in protocols}
        tunings = []
        for count in args.labels:
            region_a = make_region(workdir / "regions", f"A{count}", A_SEED, count)
            run_dir = workdir / f"finetune-{count}"
            if args.reuse_run and (run_dir / "final.safetensors").exists():
                tuned, minutes, notes = _earlier_run(run_dir)
            else:
                shutil.rmtree(run_dir, ignore_errors=True)
                tuned, minutes, notes = fine_tune(region_a, checkpoint, run_dir, args.train_args.split())
                (run_dir / "bench.json").write_text(json.dumps({"minutes": minutes, "notes": notes}))
            after = {p: query_region(region_b, tuned, workdir, args.device, p) for p in protocols}
            kinds = Counter(label.kind for label in region_a.labels)
            own = None
            if count == max(args.labels):
                own = {p: query_region(region_a, tuned, workdir, args.device, p) for p in protocols}
            tuning = Tuning(count, kinds, minutes, notes, tuned, after, own)
            if count == max(args.labels):
                for share in blends:
                    blended = _blend_checkpoint(checkpoint, run_dir, share)
                    tuning.blends[share] = query_region(region_b, blended, workdir, args.device, "view")
            tunings.append(tuning)
        return report(before, tunings, args)
