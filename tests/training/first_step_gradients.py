"""The gradients of a training run's first step, as the training package computes them.

    python -m tests.training.first_step_gradients OUT_DIR -- <rs2sam2 train arguments>
    torchrun --nproc-per-node 2 -m tests.training.first_step_gradients OUT_DIR -- <the same arguments>

Builds the run exactly as `rs2sam2 train` does (its argument parser, `Trainer`: data, seeded model,
DDP wrapping, loss) and runs the first micro-batch's forward and backward through
`Trainer.forward_backward`, the method the training loop uses. Each rank then writes, before any
optimizer step, the gradients its parameters hold (after DDP's all-reduce: the averaged gradient of the
global batch) to OUT_DIR/grads-rank<R>.safetensors and the samples it took to OUT_DIR/rank<R>.json.

Not a test itself: tests/training/test_distributed.py runs it in one process and under torchrun.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from safetensors.torch import save_file

    from backend.model.factory import resolve_device
    from training.cli_train import add_arguments, overrides_from
    from training.config import build_config
    from training.distributed import barrier, init_distributed, shutdown_distributed
    from training.loop import Trainer

    if "--" not in argv:
        raise SystemExit("usage: first_step_gradients OUT_DIR -- <rs2sam2 train arguments>")
    split = argv.index("--")
    (out_dir,) = argv[:split]
    parser = argparse.ArgumentParser(prog="rs2sam2 train")
    add_arguments(parser)
    config = build_config({}, overrides_from(parser.parse_args(argv[split + 1 :])))
    out = Path(out_dir)
    device = resolve_device(config.device)
    context = init_distributed(device.type)
    try:
        if context.is_main:
            Path(config.out).mkdir(parents=True, exist_ok=True)
            out.mkdir(parents=True, exist_ok=True)
        barrier(context)
        trainer = Trainer(config, context, device)
        trainer.build(resume=False)
        batch = trainer.micro_batches(epoch=0)[0]
        terms = trainer.forward_backward(batch)
        grads = {
            name: parameter.grad.detach().cpu().contiguous()
            for name, parameter in trainer.model.named_parameters()
            if parameter.requires_grad and parameter.grad is not None
        }
        save_file(grads, str(out / f"grads-rank{context.rank}.safetensors"))
        record = {
            "world_size": context.world_size,
            "samples": trainer.plan.micro_batch(0, 0, context.rank),
            "phrases": list(batch["phrases"]),
            "loss": float(terms["total"].detach()),
            "trainable": sorted(n for n, p in trainer.model.named_parameters() if p.requires_grad),
        }
        (out / f"rank{context.rank}.json").write_text(json.dumps(record), encoding="utf-8")
        barrier(context)
    finally:
        shutdown_distributed(context)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
