"""The measurements of the GPU check, each run by scripts/device_check.py in a process of its own:

    python -m bench.gpu_measure STEP --out FILE.json [options]

- `timing`: one 1024 px tile through `tiny` and the paper architecture (`paper-rrsisd` shapes, random
  weights), one phrase and eight phrases in one forward, in fp32, bf16 autocast and fp16 autocast (what
  a GPU without bf16 runs: torch is told the GPU has none), with the peak GPU memory and each precision's
  mask IoU against GPU fp32 (random weights: cut at fp32's median per phrase, as `rs2sam2 bench
  precision`); plus the bundled demo model at its own threshold, and GPU fp32 against CPU fp32.
- `oom`: a real CUDA out-of-memory in the engine's model call, retried phrase by phrase
  (bench/gpu_memory.py), with `tiny` at 1024 px in bf16.
- `ddp-rank`: one DDP training step, run under torchrun by the device check (NCCL with one rank; gloo
  with two ranks sharing the one GPU): the DDP gradient against the full batch's gradient in one process.
- `engine`: `tiny` over an 8192² GeoTIFF through the engine (tiles mode, every object kept), with the
  share of wall time the GPU was busy (NVML's utilisation, sampled) and the share spent inside model
  calls; without the engine's packages (rasterio, shapely, pyproj), the model part alone on the same
  number of tiles from memory.

`--device cpu` with small models runs the same code on a CPU (the device check's CPU tests use it);
the GPU's numbers (memory, utilisation) are then left out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

MIB = 1 << 20
PHRASES = [
    "the dark lake",
    "the brown farmland",
    "the blue stream",
    "the dark street",
    "the large white building next to the river",
    "two tennis courts",
    "a small pond on the left",
    "the red roofs",
]
GPU_PRECISIONS = ("fp32", "bf16", "fp16")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_measure", description=__doc__)
    parser.add_argument("step", choices=sorted(STEPS))
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", nargs="+", default=["tiny", "paper"], help="timing: tiny, paper, test")
    parser.add_argument("--paper-preset", default="paper-rrsisd", help="timing: the paper architecture")
    parser.add_argument("--precisions", nargs="+", default=list(GPU_PRECISIONS))
    parser.add_argument("--size", type=int, default=1024, help="timing/oom: the tile's side")
    parser.add_argument("--repeats", type=int, default=5, help="timing: timed calls per row (median)")
    parser.add_argument("--preset", default="tiny", help="oom/engine: the model")
    parser.add_argument("--raster-side", type=int, default=8192, help="engine: the raster's side")
    parser.add_argument("--seconds", type=float, default=150.0, help="engine: stop after this long")
    parser.add_argument("--backend", default="nccl", help="ddp-rank, train-ddp: the process group's backend")
    parser.add_argument("--train-steps", type=int, default=200, help="train-ddp: optimizer steps")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        result = STEPS[args.step](args)
    except Exception as exc:  # the device check reports it and goes on with the next step
        import traceback

        traceback.print_exc()
        result = {"status": "error", "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
    result.setdefault("seconds", time.perf_counter() - started)
    if args.step not in ("ddp-rank", "train-ddp") or int(os.environ.get("RANK", "0")) == 0:
        Path(args.out).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0 if result.get("status") in ("ok", "failed") else 1


# -- shared ------------------------------------------------------------------------------------------


def _cuda(device: str) -> bool:
    return device.startswith("cuda")


def _sync(device: str) -> None:
    import torch

    if _cuda(device):
        torch.cuda.synchronize(device)


def _reset_peak(device: str) -> None:
    import torch

    if _cuda(device):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated(device) / MIB if _cuda(device) else None


def _image(size: int) -> tuple[np.ndarray, str]:
    """The demo scene at size×size (the CPU benchmarks' reference tile), or seeded noise without rasterio."""
    try:
        from bench.precision import reference_image

        return reference_image(size), f"the demo scene at {size} px"
    except ImportError:
        return np.random.default_rng(0).integers(
            0, 256, (size, size, 3), np.uint8
        ), f"seeded noise, {size} px"


@contextlib.contextmanager
def _precision(kind: str):
    """fp16: torch is told the GPU has no bf16, so the product's own rule picks fp16 autocast."""
    import torch

    if kind != "fp16":
        yield
        return
    original = torch.cuda.is_bf16_supported
    torch.cuda.is_bf16_supported = lambda *args, **kwargs: False
    try:
        yield
    finally:
        torch.cuda.is_bf16_supported = original


def _make_predictor(model, name: str, kind: str, device: str):
    """A predictor in `kind` around the shared model (on a GPU no mode changes the weights)."""
    from backend.model.precision import resolve_precision

    precision = resolve_precision("fp32" if kind == "fp32" else "bf16", device)
    if model.config.family == "paper":
        from backend.model.paper.predictor import PaperPredictor

        return PaperPredictor(model, name, precision=precision)
    from backend.model.predictor import RS2SAM2Predictor

    return RS2SAM2Predictor(model, name, precision=precision)


def _build(name: str, device: str, paper_preset: str, workdir: Path):
    import torch

    from backend.model.factory import build_model

    torch.manual_seed(0)
    if name != "paper":
        return build_model(name, device=device).eval()
    from backend.model.paper.tokenizer import PaperTokenizer
    from backend.model.presets import get_preset
    from bench.paper import _tokenizer_model
    from bench.precision import _random_paper_model

    config = get_preset(paper_preset)
    model = _random_paper_model(config, device=device)
    _tokenizer_model(workdir)
    model.tokenizer = PaperTokenizer(workdir / "sentencepiece.bpe.model", config.text_context_length)
    return model


def _median_ms(call, repeats: int, device: str) -> tuple[float, object]:
    result = None
    for _ in range(2):  # warm-up: cuDNN's algorithm choice, cuBLAS handles, the caching allocator
        result = call()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        result = call()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, result


# -- timing ------------------------------------------------------------------------------------------


def timing(args: argparse.Namespace) -> dict:
    import torch

    from backend.model.precision import resolve_precision
    from bench.precision import agreement

    device = args.device
    image, what = _image(args.size)
    rows: list[dict] = []
    agreements: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="rs2sam2-gpu-"))
    for name in args.models:
        model = _build(name, device, args.paper_preset, workdir)
        weights = torch.cuda.memory_allocated(device) / MIB if _cuda(device) else None
        maps: dict[str, list[np.ndarray]] = {}
        for kind in args.precisions:
            with _precision(kind):
                predictor = _make_predictor(model, name, kind, device)
                chosen_batch = predictor.max_batch
                dtype = predictor.precision.autocast_dtype
                for count in (1, 8):
                    predictor.max_batch = count  # all of them in one forward
                    _reset_peak(device)
                    ms, predictions = _median_ms(
                        lambda n=count, run=predictor.predict: run(image, PHRASES[:n]), args.repeats, device
                    )
                    rows.append(
                        {
                            "model": name,
                            "precision": kind,
                            "autocast": str(dtype).replace("torch.", "") if dtype else "none",
                            "phrases": count,
                            "ms": ms,
                            "ms_per_phrase": ms / count,
                            "peak_mib": _peak_mib(device),
                            "weights_mib": weights,
                            "batch_chosen": chosen_batch,
                        }
                    )
                    if count == 8:
                        maps[kind] = [p.probability for p in predictions]
        if "fp32" in maps:
            measured = agreement(maps, None)
            agreements[name] = {kind: measured[kind][0] for kind in maps}
            for row in rows:
                if row["model"] == name and row["phrases"] == 8:
                    row["iou_vs_fp32"] = agreements[name].get(row["precision"])
        parameters = sum(p.numel() for p in model.parameters())
        held = f", {weights:,.0f} MiB on the GPU (fp32 weights)" if weights is not None else ""
        notes.append(f"{name}: {parameters / 1e6:.1f} M parameters{held}")
        del model
        predictor = None
        if _cuda(device):
            torch.cuda.empty_cache()
    if _cuda(device) and "demo" not in args.models:
        demo = _demo_agreement(device, args.precisions)
        agreements["demo"] = demo.pop("iou")
        notes.append(demo["note"])
    if _cuda(device):
        notes.append(f"`auto` on this GPU: {resolve_precision('auto', device).describe()}")
    conditions = (
        f"{what}; random weights (seed 0) for `tiny` and the paper architecture (`{args.paper_preset}` "
        "shapes); one phrase, then eight phrases in one forward; median of "
        f"{args.repeats} calls after 2 warm-up calls, each call from the image to the probability maps "
        "on the host (`predict`: preprocessing, encoders, decoder, resize); peak = the largest memory "
        "torch allocated during those calls, weights included; fp16 = what the product runs on a GPU "
        "without bf16 (torch told so). Mask IoU: the eight phrases' masks cut at fp32's median "
        "probability per phrase (random weights put most pixels on one side of 0.5), the lowest."
    )
    return {
        "status": "ok",
        "size": args.size,
        "rows": rows,
        "agreement": agreements,
        "conditions": conditions,
        "notes": notes,
    }


def _demo_agreement(device: str, precisions: list[str]) -> dict:
    """The bundled demo model on the demo scene at its threshold (0.5): each GPU precision against GPU
    fp32, and GPU fp32 against CPU fp32 (torch's defaults, and with TF32 off)."""
    import torch

    from backend.bundled import DEMO_CHECKPOINT, demo_phrases
    from backend.model.factory import load_checkpoint
    from bench.precision import _iou

    image = _image(128)[0]

    def probabilities(on: str, kind: str = "fp32") -> list[np.ndarray]:
        with _precision(kind):
            model, _ = load_checkpoint(DEMO_CHECKPOINT, device=on)
            predictor = _make_predictor(model, "demo", kind, on)
            return [p.probability for p in predictor.predict(image, demo_phrases())]

    reference = probabilities(device)
    iou = {
        kind: min(_iou(a > 0.5, b > 0.5) for a, b in zip(probabilities(device, kind), reference))
        for kind in precisions
        if kind != "fp32"
    }
    cpu = probabilities("cpu")
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        strict = probabilities(device)
    finally:
        torch.backends.cudnn.allow_tf32 = before

    def differences(gpu: list[np.ndarray]) -> str:
        largest = max(float(np.abs(g - c).max()) for g, c in zip(gpu, cpu))
        mean = float(np.mean([np.abs(g - c).mean() for g, c in zip(gpu, cpu)]))
        return f"largest {largest:.1e}, mean {mean:.1e}"

    note = (
        "demo model (128 px, trained) on the demo scene, masks at its threshold 0.5: IoU against GPU fp32 "
        + ", ".join(f"{kind} {value:.4f}" for kind, value in iou.items())
        + f"; GPU fp32 against CPU fp32, probabilities: {differences(reference)} with torch's defaults "
        f"(cuDNN may use TF32), {differences(strict)} with TF32 off"
    )
    return {"iou": iou, "note": note}


# -- out of memory -----------------------------------------------------------------------------------


def oom(args: argparse.Namespace) -> dict:
    import torch

    from backend.model.factory import build_model, make_predictor
    from bench.gpu_memory import oom_retry_check

    if not _cuda(args.device):
        return {"status": "skipped", "error": "a real CUDA out-of-memory needs a CUDA device"}
    torch.manual_seed(0)
    model = build_model(args.preset, device=args.device).eval()
    predictor = make_predictor(model, args.preset, "bf16")
    report = oom_retry_check(predictor, _image(args.size)[0], max_phrases=64)
    report["model"] = f"{args.preset} at {args.size} px, {predictor.precision.describe()}"
    report["status"] = "ok" if report["passed"] else "failed"
    return report


# -- one DDP step ------------------------------------------------------------------------------------


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
    cuda = _cuda(args.device)
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
    generator = torch.Generator().manual_seed(3)
    sam = torch.randn(4, 3, config.image_size, config.image_size, generator=generator).to(device)
    clip = torch.randn(4, 3, config.clip_image_size, config.clip_image_size, generator=generator).to(device)
    masks = torch.zeros(4, 1, config.image_size, config.image_size, device=device)
    masks[:, :, 16:80, 24:96] = 1
    phrases = ["a red roof", "the river", "a small pond", "the road"]
    loss_fn = RS2SAM2Loss(LossConfig())
    mine = slice(rank, None, world)
    started = time.perf_counter()
    loss = loss_fn(ddp(sam[mine], clip[mine], phrases[mine]), masks[mine])["total"]
    loss.backward()
    optimizer = torch.optim.AdamW(ddp.parameters(), lr=1e-4)
    optimizer.step()
    _sync(str(device))
    step_seconds = time.perf_counter() - started
    checksum = torch.tensor([float(loss.detach())], device=device)
    dist.all_reduce(checksum)
    result: dict = {"backend": args.backend, "world_size": world, "device": str(device), "status": "ok"}
    if rank == 0:
        full = loss_fn(plain(sam, clip, phrases), masks)["total"]
        full.backward()
        names = [n for n, p in plain.named_parameters() if p.grad is not None]
        ours = dict(model.named_parameters())
        reference = torch.cat([dict(plain.named_parameters())[n].grad.flatten() for n in names])
        averaged = torch.cat([ours[n].grad.flatten() for n in names])
        difference = float((averaged - reference).norm() / reference.norm())
        result.update(
            {
                "loss": float(checksum.item()) / world,
                "full_batch_loss": float(full.detach()),
                "gradient_difference": difference,
                "parameters_with_gradient": len(names),
                "step_seconds": step_seconds,
                # Float sums in another order move a correct gradient by 0.05–0.15 % of its norm
                # (tests/training/test_distributed.py); a sum instead of a mean, or no averaging, by 50 %+.
                "passed": difference <= 1e-2,
            }
        )
        result["status"] = "ok" if result["passed"] else "failed"
    dist.barrier()
    dist.destroy_process_group()
    return result


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
    from backend.model.precision import autocast_for, training_precision
    from backend.model.preprocess import preprocess_batch

    dist.init_process_group(backend=args.backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    cuda = _cuda(args.device)
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(0)
    model = build_model("test", device=str(device)).train()
    size = model.config.image_size
    network = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    optimizer = torch.optim.AdamW(model.param_groups(lr_new=1e-3, lr_rest=1e-3))
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
    losses, started = [], time.perf_counter()
    for _ in range(args.train_steps):
        images, masks, phrases = colour_batch(generator, size, 8)
        sam, clip, target = tensors(images, masks)
        with autocast_for(device):
            loss = loss_fn(network(sam, clip, phrases), target)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
    _sync(str(device))
    seconds = time.perf_counter() - started
    after = held_out_loss()
    dist.barrier()
    dist.destroy_process_group()
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


# -- the engine on a large raster --------------------------------------------------------------------


class UtilisationSampler:
    """NVML's GPU utilisation (the share of the last sample period in which a kernel ran), read every
    0.1 s in a thread; None where NVML cannot be read."""

    def __init__(self, device: str):
        self.device, self.samples, self._stop = device, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import torch

        while not self._stop.wait(0.1):
            try:
                self.samples.append(torch.cuda.utilization(self.device))
            except Exception:  # no pynvml, or NVML refused: no samples
                return

    def __enter__(self):
        if _cuda(self.device):
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.samples) / 100 if self.samples else None


class TimedModel:
    """Wraps a predictor: wall time spent inside its calls (synchronised), and the calls made."""

    def __init__(self, predictor, device: str):
        self.predictor, self.device, self.seconds, self.calls = predictor, device, 0.0, 0

    def __getattr__(self, name):
        return getattr(self.predictor, name)

    def predict(self, image, phrases):
        start = time.perf_counter()
        try:
            return self.predictor.predict(image, phrases)
        finally:
            _sync(self.device)
            self.seconds += time.perf_counter() - start
            self.calls += 1


def engine(args: argparse.Namespace) -> dict:
    import torch

    from backend.model.factory import load_predictor

    device = args.device
    torch.manual_seed(0)
    predictor = load_predictor(preset=args.preset, device=device, precision="auto")
    timed = TimedModel(predictor, device)
    try:
        import pyproj  # noqa: F401 - the engine's packages
        import rasterio  # noqa: F401
        import shapely  # noqa: F401
    except ImportError as exc:
        return _model_alone(timed, device, args, f"the engine's packages are missing here ({exc.name})")
    from backend.engine.options import SegmentOptions
    from backend.engine.segment import segment
    from backend.errors import CancelledError
    from bench.engine import make_raster

    folder = Path(tempfile.mkdtemp(prefix="rs2sam2-engine-"))
    made = time.perf_counter()
    raster = make_raster(folder / f"raster-{args.raster_side}.tif", args.raster_side)
    make_seconds = time.perf_counter() - made
    tiles_done = [0, 0]

    def progress(done: int, total: int) -> None:
        tiles_done[:] = [done, total]

    deadline = time.perf_counter() + args.seconds
    predictor.predict(np.zeros((predictor.input_size,) * 2 + (3,), np.uint8), ["warm-up"])  # cuDNN, cuBLAS
    features, stopped = 0, False
    with UtilisationSampler(device) as sampler:
        started = time.perf_counter()
        try:
            result = segment(
                raster,
                ["the red roofs"],
                timed,
                SegmentOptions(keep="all", context="tiles"),
                progress=progress,
                cancel=lambda: time.perf_counter() > deadline,
            )
            features = len(result.features)
        except CancelledError:
            stopped = True
        wall = time.perf_counter() - started
    report = _busy_report(
        "engine",
        wall,
        timed,
        sampler,
        {
            "raster": f"{args.raster_side}² uint8 RGB GeoTIFF (bench/engine.py's; written in "
            f"{make_seconds:.0f} s)",
            "tiles": tiles_done[0],
            "tiles_total": tiles_done[1],
            "stopped_at_time_limit": stopped,
            "features": features,
            "model": f"{args.preset}, random weights, {predictor.precision.describe()}",
        },
    )
    # The same number of model calls on tiles from memory: how busy the model alone keeps the GPU, so
    # that the engine's own share (reading, vectorising) can be told apart.
    alone_args = argparse.Namespace(**{**vars(args), "seconds": 30.0})
    alone = _model_alone(TimedModel(predictor, device), device, alone_args, "for comparison", tiles_done[0])
    report["model_alone"] = {key: alone[key] for key in ("busy", "busy_source", "tiles", "wall_seconds")}
    report["notes"] += alone["notes"][:1]
    report["notes"].append(f"{features} features found; {report['raster']}; {report['model']}")
    return report


def _model_alone(
    timed: TimedModel, device: str, args: argparse.Namespace, why: str, tiles: int | None = None
) -> dict:
    side = timed.input_size
    tiles = tiles or (args.raster_side // (side - side // 8) + 1) ** 2
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (side, side, 3), np.uint8) for _ in range(4)]
    timed.predict(images[0], ["warm-up"])
    timed.seconds, timed.calls = 0.0, 0
    deadline = time.perf_counter() + args.seconds
    with UtilisationSampler(device) as sampler:
        started = time.perf_counter()
        for index in range(tiles):
            if time.perf_counter() > deadline:
                break
            timed.predict(images[index % 4], ["the red roofs"])
        wall = time.perf_counter() - started
    return _busy_report(
        "model alone",
        wall,
        timed,
        sampler,
        {"tiles": timed.calls, "tiles_total": tiles, "why": why, "model": timed.model_id},
    )


def _busy_report(mode: str, wall: float, timed: TimedModel, sampler: UtilisationSampler, extra: dict) -> dict:
    inside = timed.seconds / wall if wall else None
    busy, source = sampler.mean, "NVML utilisation, sampled every 0.1 s"
    if busy is None:
        busy, source = (
            (inside, "share of wall time inside model calls") if _cuda(timed.device) else (None, "")
        )
    notes = [
        f"{mode}: {extra.get('tiles')} of {extra.get('tiles_total')} tiles in {wall:.1f} s "
        f"({wall / max(extra.get('tiles') or 1, 1) * 1000:.0f} ms per tile); inside model calls "
        f"{timed.seconds:.1f} s ({(inside or 0):.0%} of wall time); GPU busy {source or 'not measured'}: "
        + ("—" if busy is None else f"{busy:.0%}")
    ]
    if extra.get("why") and extra["why"] != "for comparison":
        notes.append(f"model part alone: {extra['why']}")
    return {
        "status": "ok",
        "mode": "engine" if mode == "engine" else "model alone",
        "wall_seconds": wall,
        "model_seconds": timed.seconds,
        "inside_model_share": inside,
        "busy": busy,
        "busy_source": source,
        "notes": notes,
        **extra,
    }


STEPS = {"timing": timing, "oom": oom, "ddp-rank": ddp_rank, "train-ddp": train_ddp, "engine": engine}

if __name__ == "__main__":
    sys.exit(main())
