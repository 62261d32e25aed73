"""The measurements of the GPU check, each run by scripts/device_check.py in a process of its own:

    python -m bench.gpu_measure STEP --out FILE.json [options]

- `timing`: one 1024 px tile through `tiny` and the paper architecture (`paper-rrsisd` shapes, random
  weights), one phrase and eight phrases in one forward, in fp32, bf16 autocast and fp16 autocast (what
  a GPU without bf16 runs: torch is told the GPU has none), with the peak GPU memory and each precision's
  mask IoU against GPU fp32 (random weights: cut at fp32's median per phrase, as `rs2sam2 bench
  precision`); plus the bundled demo model at its own threshold, and GPU fp32 against CPU fp32.
- `oom`: a real CUDA out-of-memory in the engine's model call, retried phrase by phrase
  (bench/gpu_memory.py), with `tiny` at 1024 px in bf16.
- `ddp-rank` and `train-ddp` (bench/gpu_ddp.py), run under torchrun by the device check: one DDP
  training step (NCCL with one rank; gloo with two ranks sharing the one GPU), its gradient against the
  full batch's in one process; and a short DDP training run whose loss on held-out scenes must fall.
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

from bench.gpu_common import MIB, on_cuda, synchronise
from bench.gpu_ddp import ddp_rank, train_ddp

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


def _reset_peak(device: str) -> None:
    import torch

    if on_cuda(device):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated(device) / MIB if on_cuda(device) else None


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
    from backend.model.project.predictor import RS2SAM2Predictor

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
        synchronise(device)
        start = time.perf_counter()
        result = call()
        synchronise(device)
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
        weights = torch.cuda.memory_allocated(device) / MIB if on_cuda(device) else None
        model_rows, maps = _time_precisions(model, name, args, image, weights)
        if "fp32" in maps:
            measured = agreement(maps, None)
            agreements[name] = {kind: measured[kind][0] for kind in maps}
            for row in model_rows:
                if row["phrases"] == 8:
                    row["iou_vs_fp32"] = agreements[name].get(row["precision"])
        rows += model_rows
        parameters = sum(p.numel() for p in model.parameters())
        held = f", {weights:,.0f} MiB on the GPU (fp32 weights)" if weights is not None else ""
        notes.append(f"{name}: {parameters / 1e6:.1f} M parameters{held}")
        del model
        if on_cuda(device):
            torch.cuda.empty_cache()
    if on_cuda(device) and "demo" not in args.models:
        demo = _demo_agreement(device, args.precisions)
        agreements["demo"] = demo.pop("iou")
        notes.append(demo["note"])
    if on_cuda(device):
        notes.append(f"`auto` on this GPU: {resolve_precision('auto', device).describe()}")
    return {
        "status": "ok",
        "size": args.size,
        "rows": rows,
        "agreement": agreements,
        "conditions": _timing_conditions(what, args),
        "notes": notes,
    }


def _time_precisions(
    model, name: str, args: argparse.Namespace, image: np.ndarray, weights: float | None
) -> tuple[list[dict], dict[str, list[np.ndarray]]]:
    """One model in each precision, one phrase then eight in one forward: the rows, and the eight
    phrases' probability maps per precision."""
    device = args.device
    rows: list[dict] = []
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
    return rows, maps


def _timing_conditions(what: str, args: argparse.Namespace) -> str:
    return (
        f"{what}; random weights (seed 0) for `tiny` and the paper architecture (`{args.paper_preset}` "
        "shapes); one phrase, then eight phrases in one forward; median of "
        f"{args.repeats} calls after 2 warm-up calls, each call from the image to the probability maps "
        "on the host (`predict`: preprocessing, encoders, decoder, resize); peak = the largest memory "
        "torch allocated during those calls, weights included; fp16 = what the product runs on a GPU "
        "without bf16 (torch told so). Mask IoU: the eight phrases' masks cut at fp32's median "
        "probability per phrase (random weights put most pixels on one side of 0.5), the lowest."
    )


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

    if not on_cuda(args.device):
        return {"status": "skipped", "error": "a real CUDA out-of-memory needs a CUDA device"}
    torch.manual_seed(0)
    model = build_model(args.preset, device=args.device).eval()
    predictor = make_predictor(model, args.preset, "bf16")
    report = oom_retry_check(predictor, _image(args.size)[0], max_phrases=64)
    report["model"] = f"{args.preset} at {args.size} px, {predictor.precision.describe()}"
    report["status"] = "ok" if report["passed"] else "failed"
    return report


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
        if on_cuda(self.device):
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
            synchronise(self.device)
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
    from bench.engine import make_raster

    folder = Path(tempfile.mkdtemp(prefix="rs2sam2-engine-"))
    made = time.perf_counter()
    raster = make_raster(folder / f"raster-{args.raster_side}.tif", args.raster_side)
    make_seconds = time.perf_counter() - made
    wall, sampler, run = _engine_run(raster, timed, device, args.seconds)
    report = _busy_report(
        "engine",
        wall,
        timed,
        sampler,
        {
            "raster": f"{args.raster_side}² uint8 RGB GeoTIFF (bench/engine.py's; written in "
            f"{make_seconds:.0f} s)",
            **run,
            "model": f"{args.preset}, random weights, {predictor.precision.describe()}",
        },
    )
    # The same number of model calls on tiles from memory: how busy the model alone keeps the GPU, so
    # that the engine's own share (reading, vectorising) can be told apart.
    alone_args = argparse.Namespace(**{**vars(args), "seconds": 30.0})
    alone = _model_alone(TimedModel(predictor, device), device, alone_args, "for comparison", run["tiles"])
    report["model_alone"] = {key: alone[key] for key in ("busy", "busy_source", "tiles", "wall_seconds")}
    report["notes"] += alone["notes"][:1]
    report["notes"].append(f"{run['features']} features found; {report['raster']}; {report['model']}")
    return report


def _engine_run(raster: Path, timed: TimedModel, device: str, seconds: float):
    """The engine over the raster (tiles mode, every object kept), stopped after `seconds`, with the GPU's
    utilisation sampled: the wall time, the sampler, and the tiles done, objects found, whether stopped."""
    from backend.engine.options import EngineOptions
    from backend.engine.segment import segment
    from backend.errors import CancelledError

    tiles_done = [0, 0]

    def progress(done: int, total: int) -> None:
        tiles_done[:] = [done, total]

    deadline = time.perf_counter() + seconds
    warm_up = np.zeros((timed.predictor.input_size,) * 2 + (3,), np.uint8)
    timed.predictor.predict(warm_up, ["warm-up"])  # cuDNN, cuBLAS
    features, stopped = 0, False
    with UtilisationSampler(device) as sampler:
        started = time.perf_counter()
        try:
            result = segment(
                raster,
                ["the red roofs"],
                timed,
                EngineOptions(keep="all", context="tiles"),
                progress=progress,
                cancel=lambda: time.perf_counter() > deadline,
            )
            features = len(result.features)
        except CancelledError:
            stopped = True
        wall = time.perf_counter() - started
    run = {"tiles": tiles_done[0], "tiles_total": tiles_done[1], "stopped_at_time_limit": stopped}
    return wall, sampler, {**run, "features": features}


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
            (inside, "share of wall time inside model calls") if on_cuda(timed.device) else (None, "")
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
