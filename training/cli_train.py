r"""Fine-tune RS2-SAM 2 on benchmarks, your own regions or synthetic scenes.

  rs2sam2 train --data refsegrs:/data/RefSegRS --preset tiny --out runs/refsegrs --epochs 60
  rs2sam2 train --data region:ortho.tif,labels.gpkg,description --checkpoint model.safetensors \
      --out runs/mine --max-steps 2000
  rs2sam2 train --out runs/mine --resume            # continue exactly where a killed run stopped
  torchrun --nproc-per-node 2 -m backend.cli train …   # DDP (gloo on CPU, NCCL on GPUs)

SIGTERM, or a file named `stop` in the run folder, stops the run after its current step with its state
saved (exit code 130; --resume continues it); status.json says where it is (training/progress.py).
The run folder gets config.json, status.json, train_log.csv, val_log.csv, tensorboard/, last_state.pt
(resumable), best.safetensors (best val mIoU + oIoU) and final.safetensors — both load wherever a model
checkpoint is accepted (`rs2sam2 segment --checkpoint`, `rs2sam2 serve`, the QGIS plugin).
"""

from __future__ import annotations

import argparse
import errno
from pathlib import Path

from backend.errors import UserError
from training.config_cli import add_config_arguments, overrides_from

HELP = "fine-tune RS2-SAM 2 on benchmarks, regions or synthetic data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_config_arguments(parser)  # one flag per TrainConfig field (training/config.py)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last state")
    parser.add_argument("--config", type=Path, help="a JSON or TOML file of settings (flags override it)")


def run(args: argparse.Namespace) -> int:
    from backend import process_gc
    from training.config import build_config, read_config_file
    from training.loop import resume_config, train
    from training.progress import stop_on_sigterm

    process_gc.end_start_up()  # the libraries are imported; a long run collects with the usual thresholds
    overrides = overrides_from(args)
    if args.resume:
        config = resume_config(args.out, overrides)
    else:
        file_settings = read_config_file(args.config) if args.config else {}
        config = build_config(file_settings, overrides)
    stop_on_sigterm()  # SIGTERM: stop at the next step, resumable (training/progress.py)
    try:
        result = train(config, resume=args.resume)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise UserError(
            f"the disk is full ({exc.filename or config.out}): free some space, then continue the run with "
            "--resume (its last saved state is whole)"
        ) from None
    print(f"trained {result.steps} steps; run folder {result.out}")
    if result.val_history:
        from training.metrics import format_table

        last = result.val_history[-1]
        print(format_table({f"val at step {last['step']}": last}))
    if result.best_checkpoint:
        print(f"best checkpoint: {result.best_checkpoint} (val mIoU + oIoU = {result.best_score:.4f})")
    print(f"final checkpoint: {result.final_checkpoint}")
    return 0
