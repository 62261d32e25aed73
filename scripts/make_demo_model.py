"""The recipe of the bundled demo model (`make demo-model`): train the `test` preset on synthetic
scenes with the project's own training package, then write the demo assets.

  1. stage 1: `rs2sam2 train` from random weights on `synthetic:2000` (seeded);
     stage 2: `rs2sam2 train --checkpoint <stage 1 final>` on `synthetic:4000` (2000 more scenes) at a
     lower learning rate — a second annealing cycle; stage 1's val mIoU had levelled off as its
     learning rate reached 0. A finished stage is skipped; a killed one continues with --resume;
  2. stage 2's best checkpoint (val mIoU + oIoU) → backend/demo/assets/rs2sam2-demo.safetensors;
  3. a sample scene from a seed outside every training/val/test seed range → scene.tif, its truth
     polygons → scene_truth.gpkg, one sample phrase per object kind → phrases.txt;
  4. `rs2sam2 evaluate` on held-out synthetic test scenes; the table and the recipe (seed, steps,
     time) go into docs/benchmarks.md, section "Demo model".

Run it with one torch thread per process (OMP_NUM_THREADS=1) on a 2-core machine that does other work.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.bundled import ASSETS, DEMO_CHECKPOINT, DEMO_PHRASES, DEMO_SCENE  # noqa: E402

SEED = 2401  # the method's seed
# Land-cover objects only: a 4 M-parameter model trained from scratch on a CPU learns these in an
# hour; small objects (cars, trees, single buildings) need far more training than that.
KINDS = "field+pond+river+road"
# The sample scene: the first seed from 3,000,000 (outside the synthetic train 0…, val 1e6… and test
# 2e6… seed ranges) whose scene holds exactly one object of each kind, so the demo shows each kind
# once and its phrases need no position words — the model's weak side, reported separately below.
FIRST_SCENE_SEED = 3_000_000
RUN_DIR = ROOT / "runs" / "demo-model"
# From random weights, with a Dice on the object alone weighted up (FROM_SCRATCH_LOSS, the default
# from random weights; given explicitly because stage 2 starts from a checkpoint, whose default
# would be the method's fine-tuning loss). See training/README.md.
LOSS_FLAGS = ["--loss-ce", "0.5", "--loss-dice", "1.0", "--loss-tbl", "0.2", "--dice-classes", "foreground"]
COMMON_FLAGS = [
    "--schedule",
    "cosine",
    "--batch-size",
    "8",
    "--seed",
    str(SEED),
    "--checkpoint-every",
    "250",
    "--eval-every",
    "500",
    "--val-limit",
    "200",
    *LOSS_FLAGS,
]


@dataclass(frozen=True)
class Stage:
    name: str
    scenes: int
    steps: int
    flags: tuple[str, ...]  # where it starts from and its learning rates

    @property
    def folder(self) -> Path:
        return RUN_DIR / self.name

    @property
    def data(self) -> str:
        return f"synthetic:{self.scenes},{KINDS}"


STAGES = (
    # A model trained from scratch learns faster with a higher lr than the method's fine-tuning rates.
    Stage(
        "stage1",
        2000,
        10_000,
        ("--preset", "test", "--lr-new", "1e-3", "--lr-rest", "1e-3", "--warmup-steps", "200"),
    ),
    Stage(
        "stage2",
        4000,
        6_000,
        (
            "--checkpoint",
            str(RUN_DIR / "stage1" / "final.safetensors"),
            "--lr-new",
            "3e-4",
            "--lr-rest",
            "3e-4",
            "--warmup-steps",
            "100",
        ),
    ),
)


def rs2sam2(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "backend.cli", *args], cwd=ROOT, check=True)


def write_scene() -> tuple[int, list[str]]:
    from training.data.synthetic import generate_scene, write_region

    kinds = tuple(KINDS.split("+"))
    seed = FIRST_SCENE_SEED
    scene = generate_scene(seed, size=128, kinds=kinds)
    while sorted(obj.kind for obj in scene.referable) != sorted(kinds) or len(scene.objects) != len(kinds):
        seed += 1
        scene = generate_scene(seed, size=128, kinds=kinds)
    tmp = RUN_DIR / "scene"
    shutil.rmtree(tmp, ignore_errors=True)
    raster, vector = write_region(scene, tmp, name="scene")
    shutil.copyfile(raster, DEMO_SCENE)
    shutil.copyfile(vector, ASSETS / "scene_truth.gpkg")
    phrases, kinds = [], set()
    for obj in scene.referable:
        if obj.kind not in kinds and obj.phrases:
            kinds.add(obj.kind)
            phrases.append(obj.phrases[0])
    DEMO_PHRASES.write_text("\n".join(phrases) + "\n", encoding="utf-8")
    return seed, phrases


def run_stage(stage: Stage, resume: bool) -> None:
    """Train one stage unless it is finished."""
    if (stage.folder / "final.safetensors").exists():
        print(f"{stage.name}: finished earlier ({stage.folder})")
        return
    if resume and (stage.folder / "last_state.pt").exists():
        rs2sam2("train", "--out", str(stage.folder), "--resume")
    else:
        rs2sam2(
            "train",
            "--data",
            stage.data,
            "--out",
            str(stage.folder),
            "--max-steps",
            str(stage.steps),
            *stage.flags,
            *COMMON_FLAGS,
        )


def stage_minutes(stage: Stage) -> float:
    """Training time of a stage from its log (the samples/s column over its logged steps)."""
    import csv

    batch = json.loads((stage.folder / "config.json").read_text())["batch_size"]
    with open(stage.folder / "train_log.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    steps = [int(r["step"]) for r in rows]
    seconds = sum(
        (b - a) * batch / float(r["samples_per_s"]) for a, b, r in zip([0, *steps], steps, rows, strict=False)
    )
    return seconds / 60


def by_cue(samples: list[dict]) -> dict[str, dict]:
    """Metrics of the samples whose phrase uses no extra cue, and of those using each cue type."""
    from training.data.synthetic import phrase_cues
    from training.metrics import SegmentationMetrics

    groups: dict[str, list[dict]] = {"kind and colour only": []}
    for sample in samples:
        for cue in phrase_cues(sample["phrase"]) or ("",):
            groups.setdefault(f"with {cue} words" if cue else "kind and colour only", []).append(sample)
    return {
        f"… {name}": SegmentationMetrics(
            [g["intersection"] for g in group], [g["union"] for g in group]
        ).summary()
        for name, group in groups.items()
        if group
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resume", action="store_true", help="continue a killed stage")
    args = parser.parse_args()

    for stage in STAGES:
        run_stage(stage, args.resume)
    last = STAGES[-1]
    ASSETS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(last.folder / "best.safetensors", DEMO_CHECKPOINT)
    scene_seed, phrases = write_scene()

    metrics_path = RUN_DIR / "test_metrics.json"
    metrics_path.unlink(missing_ok=True)
    rs2sam2(
        "evaluate",
        "--data",
        last.data,
        "--split",
        "test",
        "--protocol",
        "native",
        "--checkpoint",
        str(DEMO_CHECKPOINT),
        "--out",
        str(metrics_path),
        "--cache-dir",
        str(RUN_DIR / "data"),
    )
    metrics = json.loads(metrics_path.read_text())
    from bench.record import record_section
    from training.metrics import format_table

    table = format_table({"demo model, synthetic test": metrics["metrics"], **by_cue(metrics["samples"])})
    stages = "\n".join(
        f"{k}. `rs2sam2 train --data {stage.data} --max-steps {stage.steps} {' '.join(stage.flags)} "
        f"{' '.join(COMMON_FLAGS)}` — {stage_minutes(stage):.0f} min of training here"
        for k, stage in enumerate(STAGES, start=1)
    ).replace(str(ROOT) + "/", "")
    report = (
        f"`make demo-model` (seed {SEED}), one torch thread on this machine:\n\n{stages}\n\n"
        f"The demo checkpoint is the last stage's best (val mIoU + oIoU), "
        f"{DEMO_CHECKPOINT.stat().st_size / 2**20:.1f} MiB.\n\n"
        f"Held-out synthetic test scenes ({last.data}, test split; native protocol), in total and by what "
        f"the phrase needs besides kind and colour (`training.data.synthetic.phrase_cues`):\n\n{table}\n\n"
        f"Sample scene seed {scene_seed}, phrases: {', '.join(repr(p) for p in phrases)}."
    )
    record_section("Demo model", report)
    print(report)


if __name__ == "__main__":
    main()
