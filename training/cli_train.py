r"""Fine-tune RS2-SAM 2 on benchmarks, your own regions or synthetic scenes.

  rs2sam2 train --data refsegrs:/data/RefSegRS --preset tiny --out runs/refsegrs --epochs 60
  rs2sam2 train --data region:ortho.tif,labels.gpkg,description --checkpoint model.safetensors \
      --out runs/mine --max-steps 2000
  rs2sam2 train --out runs/mine --resume            # continue exactly where a killed run stopped
  torchrun --nproc-per-node 2 -m backend.cli train …   # DDP (gloo on CPU, NCCL on GPUs)

The run folder gets config.json, train_log.csv, val_log.csv, tensorboard/, last_state.pt (resumable),
best.safetensors (best val mIoU + oIoU) and final.safetensors — both load wherever a model checkpoint
is accepted (`rs2sam2 segment --checkpoint`, `rs2sam2 serve`, the QGIS plugin).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.data.specs import SPEC_HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", action="append", metavar="SPEC", help=SPEC_HELP + " (repeatable)")
    parser.add_argument(
        "--val-data",
        action="append",
        metavar="SPEC",
        help="validation data (default: the val split of --data)",
    )
    parser.add_argument("--preset", help="start from this preset's model (test, tiny, base, large)")
    parser.add_argument(
        "--checkpoint", help="start from an RS2-SAM 2 checkpoint (with --preset: it must match)"
    )
    parser.add_argument("--out", type=Path, required=True, help="the run folder")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--max-steps", type=int, help="optimizer steps")
    length.add_argument("--epochs", type=int, help="passes over the training data")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last state")
    parser.add_argument("--device", help="auto (default), cpu or cuda")
    parser.add_argument("--config", type=Path, help="a JSON or TOML file of settings (flags override it)")
    tuning = parser.add_argument_group("optimisation (defaults: method.md's recipe)")
    tuning.add_argument("--batch-size", type=int, help="global batch (split over DDP processes); default 8")
    tuning.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step; default 1")
    tuning.add_argument("--lr-new", type=float, help="lr of the modules new in RS2-SAM 2; default 1e-4")
    tuning.add_argument("--lr-rest", type=float, help="lr of everything else that trains; default 5e-5")
    tuning.add_argument("--weight-decay", type=float, help="AdamW weight decay; default 0.01")
    tuning.add_argument("--warmup-steps", type=int, help="linear warm-up; default 0")
    tuning.add_argument("--schedule", choices=("constant", "cosine", "step"), help="default constant")
    tuning.add_argument(
        "--lr-drop-epochs", type=int, nargs="+", help="with --schedule step: epochs where lr × 0.1"
    )
    tuning.add_argument("--clip-grad-norm", type=float, help="default 1.0")
    tuning.add_argument("--seed", type=int, help="default 2401")
    loss = parser.add_argument_group(
        "loss (defaults: the method's 0.9 / 0.1 both / 0.2 from pretrained weights; "
        "0.5 / 1.0 foreground / 0.2 "
        "from random weights, see training/README.md)"
    )
    loss.add_argument("--loss-ce", type=float, help="weight of the class-weighted cross-entropy")
    loss.add_argument("--loss-dice", type=float, help="weight of the Dice loss")
    loss.add_argument("--loss-tbl", type=float, help="weight of the text-guided boundary loss")
    loss.add_argument(
        "--dice-classes",
        choices=("both", "foreground"),
        help="Dice over object and background (the method) or over the object only",
    )
    tuning.add_argument("--black-box-prob", type=float, help="share of samples with black boxes; default 0.2")
    tuning.add_argument("--geometric-prob", type=float, help="share of samples flipped/rotated; default 0.5")
    book = parser.add_argument_group("bookkeeping")
    book.add_argument("--checkpoint-every", type=int, help="steps between resumable states; default 200")
    book.add_argument("--eval-every", type=int, help="steps between validations; default once per epoch")
    book.add_argument("--val-limit", type=int, help="validation samples; default 500")
    book.add_argument("--log-every", type=int, help="steps between log rows; default 10")
    book.add_argument("--num-workers", type=int, help="data-loading processes; default 0")
    book.add_argument(
        "--chip-size", type=int, help="region/synthetic chip size; default the model's input size"
    )
    book.add_argument("--no-progress", action="store_true", help="no progress bar")


_FIELDS = (
    "data",
    "val_data",
    "preset",
    "checkpoint",
    "max_steps",
    "epochs",
    "device",
    "batch_size",
    "grad_accum",
    "lr_new",
    "lr_rest",
    "weight_decay",
    "warmup_steps",
    "schedule",
    "lr_drop_epochs",
    "clip_grad_norm",
    "seed",
    "loss_ce",
    "loss_dice",
    "loss_tbl",
    "dice_classes",
    "black_box_prob",
    "geometric_prob",
    "checkpoint_every",
    "eval_every",
    "val_limit",
    "log_every",
    "num_workers",
    "chip_size",
)


def overrides_from(args: argparse.Namespace) -> dict:
    values = {name: getattr(args, name) for name in _FIELDS}
    for name in ("data", "val_data", "lr_drop_epochs"):
        if values[name] is not None:
            values[name] = tuple(values[name])
    if args.no_progress:
        values["progress"] = False
    values["out"] = str(args.out)
    return values


def run(args: argparse.Namespace) -> int:
    from training.config import build_config, read_config_file
    from training.loop import resume_config, train

    overrides = overrides_from(args)
    if args.resume:
        config = resume_config(args.out, overrides)
    else:
        file_settings = read_config_file(args.config) if args.config else {}
        config = build_config(file_settings, overrides)
    result = train(config, resume=args.resume)
    print(f"trained {result.steps} steps; run folder {result.out}")
    if result.val_history:
        from training.metrics import format_table

        last = result.val_history[-1]
        print(format_table({f"val at step {last['step']}": last}))
    if result.best_checkpoint:
        print(f"best checkpoint: {result.best_checkpoint} (val mIoU + oIoU = {result.best_score:.4f})")
    print(f"final checkpoint: {result.final_checkpoint}")
    return 0
