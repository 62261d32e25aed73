"""The GPU check's two torchrun steps (run as `python -m bench.gpu_measure STEP`, see its docstring):

- `ddp-rank`: one DDP training step (NCCL with one rank; gloo with two ranks sharing the one GPU): the
  DDP gradient against the full batch's gradient in one process.
- `train-ddp`: a short training run as the training loop runs one on a GPU, wrapped in DDP: the loss on
  held-out scenes must fall.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from bench.gpu_common import on_cuda, synchronise

# -- one DDP step ------------------------------------------------------------------------------------

PHRASES = ["a red roof", "the river", "a small pond", "the road"]


def _ddp_batch(config, device):
    """A seeded batch of four: SAM and CLIP inputs, one mask for all, four phrases."""
    import torch

    generator = torch.Generator().manual_seed(3)
    sam = torch.randn(4, 3, config.image_size, config.image_size, generator=generator).to(device)
    clip = torch.randn(4, 3, config.clip_image_size, config.clip_image_size, generator=generator).to(device)
    masks = torch.zeros(4, 1, config.image_size, config.image_size, device=device)
    masks[:, :, 16:80, 24:96] = 1
    return sam, clip, masks, PHRASES


def _against_full_batch(plain, model, loss_fn, batch, mean_loss: float) -> dict:
    """Rank 0: the full batch's gradient in the plain model against the DDP-averaged one."""
    import torch

    sam, clip, masks, phrases = batch
    full = loss_fn(plain(sam, clip, phrases), masks)["total"]
    full.backward()
    names = [n for n, p in plain.named_parameters() if p.grad is not None]
    ours = dict(model.named_parameters())
    reference = torch.cat([dict(plain.named_parameters())[n].grad.flatten() for n in names])
    averaged = torch.cat([ours[n].grad.flatten() for n in names])
    difference = float((averaged - reference).norm() / reference.norm())
    return {
        "loss": mean_loss,
        "full_batch_loss": float(full.detach()),
        "gradient_difference": difference,
        "parameters_with_gradient": len(names),
        # Float sums in another order move a correct gradient by 0.05–0.15 % of its norm
        # (tests/training/test_distributed.py); a sum instead of a mean, or no averaging, by 50 %+.
        "passed": difference <= 1e-2,
    }


def ddp_rank(args: argparse.Namespace) -> dict:
    """One DDP step of the `test` preset under torchrun: each rank takes its share of a seeded batch of
    four; rank 0 also computes the full batch's gradient in one plain model. DDP averages the ranks'
    gradients, so they must be the full batch's (the loss is a mean over the batch)."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from backend.model.factory import build_model
    from backend.model.losses import LossConfig, RS2SAM2Loss
    from backend.model.presets import get_preset

    dist.init_process_group(backend=args.backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    cuda = on_cuda(args.device)
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
        torch.backends.cudnn.allow_tf32 = False  # plain fp32: the comparison is one of rounding
    config = get_preset("test")
    torch.manual_seed(0)
    model = build_model(config, device=str(device)).train()
    plain = build_model(config, device=str(device)).train() if rank == 0 else None
    if plain is not None:
        plain.load_state_dict(model.state_dict())
    ddp = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    batch = _ddp_batch(config, device)
    sam, clip, masks, phrases = batch
    loss_fn = RS2SAM2Loss(LossConfig())
    mine = slice(rank, None, world)
    started = time.perf_counter()
    loss = loss_fn(ddp(sam[mine], clip[mine], phrases[mine]), masks[mine])["total"]
    loss.backward()
    optimizer = torch.optim.AdamW(ddp.parameters(), lr=1e-4)
    optimizer.step()
    synchronise(str(device))
    step_seconds = time.perf_counter() - started
    checksum = torch.tensor([float(loss.detach())], device=device)
    dist.all_reduce(checksum)
    result: dict = {"backend": args.backend, "world_size": world, "device": str(device), "status": "ok"}
    if rank == 0:
        result.update(_against_full_batch(plain, model, loss_fn, batch, float(checksum.item()) / world))
        result["step_seconds"] = step_seconds
        result["status"] = "ok" if result["passed"] else "failed"
    dist.barrier()
    dist.destroy_process_group()
    return result


# -- a short training run ----------------------------------------------------------------------------

COLOURS = {"red": (210, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 210), "yellow": (230, 210, 40)}


def colour_batch(generator: np.random.Generator, size: int, count: int):
    """`count` scenes of two rectangles of different colours on grey noise, each with the phrase that
    names one of them ("the red rectangle") and that rectangle's mask (drawn last, so whole): learnable
    only through the phrase."""
    images = generator.integers(90, 150, (count, size, size, 3), dtype=np.uint8)
    masks = np.zeros((count, 1, size, size), np.float32)
    names = list(COLOURS)
    phrases = []
    for index in range(count):
        distractor, named = (names[i] for i in generator.choice(len(names), 2, replace=False))
        for colour in (distractor, named):
            h, w = generator.integers(size // 6, size // 2, 2)
            top, left = generator.integers(0, size - h), generator.integers(0, size - w)
            images[index, top : top + h, left : left + w] = COLOURS[colour]
        masks[index, 0, top : top + h, left : left + w] = 1
        phrases.append(f"the {named} rectangle")
    return images, masks, phrases


def _training_report(args, world: int, device, losses: list[float], seconds: float, held_out: tuple) -> dict:
    from backend.model.precision import training_precision

    before, after = held_out
    first, last = statistics.mean(losses[:10]), statistics.mean(losses[-10:])
    passed = after < 0.8 * before and last < 0.8 * first and all(np.isfinite(losses))
    return {
        "status": "ok" if passed else "failed",
        "passed": passed,
        "command": f"torchrun --nproc-per-node={world} -m bench.gpu_measure train-ddp ({args.backend}, "
        f"test preset, {args.train_steps} steps of 8 coloured-rectangle scenes, {device.type})",
        "steps": len(losses),
        "seconds": seconds,
        "ms_per_step": seconds / max(len(losses), 1) * 1000,
        "first_loss": first,
        "last_loss": last,
        "held_out_before": before,
        "held_out_after": after,
        "autocast": str(training_precision(device).autocast_dtype).replace("torch.", ""),
        "notes": [
            f"training: loss {first:.3f} → {last:.3f} (first and last ten steps), held-out scenes "
            f"{before:.3f} → {after:.3f}; {seconds / max(len(losses), 1) * 1000:.0f} ms per step of 8"
        ],
    }


def _train(network, optimizer, loss_fn, tensors, generator, size: int, steps: int, device) -> list[float]:
    """`steps` optimizer steps on fresh batches of 8 coloured-rectangle scenes: each step's loss."""
    import torch

    from backend.model.precision import autocast_for

    losses = []
    for _ in range(steps):
        images, masks, phrases = colour_batch(generator, size, 8)
        sam, clip, target = tensors(images, masks)
        with autocast_for(device):
            loss = loss_fn(network(sam, clip, phrases), target)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.module.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def train_ddp(args: argparse.Namespace) -> dict:
    """A short training run as the training loop runs one on a GPU (the `test` preset from random
    weights, the from-scratch loss, AdamW with the method's two groups, `autocast_for`: bf16 on CUDA),
    wrapped in DDP under torchrun: on coloured-rectangle scenes made on the fly, the loss on held-out
    scenes must fall. `rs2sam2 train` itself needs the data readers' packages (pyogrio, pycocotools),
    which do not fit in what travels to the GPU machine beside the engine's."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from backend.model.factory import build_model
    from backend.model.losses import LossConfig, RS2SAM2Loss
    from backend.model.precision import autocast_for
    from backend.model.preprocess import preprocess_batch
    from training.loop import adamw_kernel

    dist.init_process_group(backend=args.backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    cuda = on_cuda(args.device)
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(0)
    model = build_model("test", device=str(device)).train()
    size = model.config.image_size
    network = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    optimizer = torch.optim.AdamW(model.param_groups(lr_new=1e-3, lr_rest=1e-3), **adamw_kernel(device))
    # The training package's loss for random weights (training/config.py, FROM_SCRATCH_LOSS).
    loss_fn = RS2SAM2Loss(
        LossConfig(ce_weight=0.5, dice_weight=1.0, tbl_weight=0.2, dice_classes="foreground")
    )

    def tensors(images, masks):
        batch = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float().div_(255.0)
        return (*preprocess_batch(batch, model.config), torch.from_numpy(masks).to(device))

    held_out = colour_batch(np.random.default_rng(10_000), size, 32)

    def held_out_loss() -> float:
        sam, clip, masks = tensors(*held_out[:2])
        with torch.no_grad(), autocast_for(device):
            model.eval()
            value = float(loss_fn(model(sam, clip, held_out[2]), masks)["total"])
            model.train()
        return value

    before = held_out_loss()
    generator = np.random.default_rng(1 + rank)
    started = time.perf_counter()
    losses = _train(network, optimizer, loss_fn, tensors, generator, size, args.train_steps, device)
    synchronise(str(device))
    seconds = time.perf_counter() - started
    after = held_out_loss()
    dist.barrier()
    dist.destroy_process_group()
    return _training_report(args, world, device, losses, seconds, (before, after))
