"""Numeric precision of the model's forward passes, decided in one place for inference and training.

Inference runs in one of three modes (`--precision` of the entry points; `auto` picks one):

- `fp32`: full precision, the reference's inference precision.
- `bf16`: on the CPU, the heavy parts' weights are stored in bf16 and the forward runs under bf16
  autocast (oneDNN's AVX512-BF16/AMX kernels); only on CPUs with native bf16 instructions, where it is
  about twice as fast as fp32 (docs/benchmarks.md) — elsewhere bf16 is emulated and slower, so it is
  refused. On a GPU: bf16 autocast, or fp16 autocast on GPUs without bf16, with fp32 weights.
- `int8`: dynamic int8 quantisation of the heavy parts' linear layers (weights int8, activations
  quantised per call), CPU only.
- `openvino`: SAM 2's phrase-conditioned image encoder (most of a tile's compute) runs in OpenVINO,
  converted once per model and cached (backend/model/openvino_encoder.py); bf16 inference where `auto`
  would choose bf16, f32 elsewhere — so it also speeds up CPUs without native bf16 — with the other heavy
  parts in torch as in the bf16 mode when the hint is bf16. CPU only. Both families convert; on the
  paper family's encoder OpenVINO measured slower than torch, so `auto` uses it for the project's
  family only.

`auto` for the paper's model family (the published models) gives the paper's masks: it may pick a
faster mode only where that mode's masks agreed with the reference's own recorded output at mask IoU ≥
REFERENCE_AGREEMENT_IOU (PAPER_MODE_AGREEMENT, measured by tests/model/paper/test_reference_outputs.py
on the reduced paper model). None does — bf16 flips 258 of 65,536 pixels (IoU 0.978), and even the
reference's own mixed mode (BEiT-3 in bf16, SAM 2 in fp32) 129 (IoU 0.989) — so `auto` runs the paper
family in fp32 on every device; the faster modes stay available by name.

For the project's own family `auto` is a rule, not a measurement at load time (that would cost seconds
per start): the fastest mode whose masks agreed with fp32 (mask IoU ≥ AGREEMENT_IOU) on the reference set
of `rs2sam2 bench precision`
— `openvino` for the project's model family at 512 px and more (the conversion, once per model, pays
back within a few tiles; below that the tile is milliseconds and OpenVINO's start-up, about 0.35 s per
process, does not pay), else bf16 where the hardware has it natively, fp32 elsewhere (int8 measured
slower; see docs/benchmarks.md). When `auto` chose `openvino` and the conversion fails, the model runs
in the torch mode `auto` would otherwise have chosen, and says so. The benchmark checks the rule
against its own measurements on each run.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from backend.contract import PRECISIONS
from backend.errors import UserError

AGREEMENT_IOU = 0.97  # a mode is acceptable when its masks agree with fp32's at least this well
# The paper family: `auto` may pick a mode only if its masks agreed with the reference's recorded output at
# least this well. Measured mask IoU against that output (the reduced paper model, 65,536 pixels; the
# test re-measures bf16 and fails if it moves by more than the CPUs' own spread): bf16 0.978 (258 pixels
# flipped; 0.971 on another machine of the same kind, whose CPU has AMX); the reference's mixed
# mode, BEiT-3 in bf16 and SAM 2 in fp32, 0.989 (129; not a mode of this project); int8 and openvino not
# measured against the reference, so not eligible.
REFERENCE_AGREEMENT_IOU = 0.99
PAPER_MODE_AGREEMENT: dict[str, float] = {"bf16": 0.978}
# CPU flags of native bf16 arithmetic (dot products in bf16 with fp32 accumulation).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")
# Below this input side `auto` keeps fp32 on the CPU: measured, the bundled demo model (128 px) ran
# slower in bf16 than in fp32, `tiny` at 1024 px about twice as fast (docs/benchmarks.md).
BF16_MIN_IMAGE_SIZE = 512


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags as the kernel reports them (empty where there is no /proc/cpuinfo)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    return bool(set(NATIVE_BF16_FLAGS) & (cpu_flags() if flags is None else flags))


@dataclass(frozen=True)
class Precision:
    """The precision a predictor runs in: what was asked for, what runs, and why."""

    name: str  # "fp32", "bf16", "int8" or "openvino": what runs
    device_type: str  # "cpu" or "cuda"
    requested: str = ""  # what was asked for ("auto", or the same as name)
    reason: str = ""  # why `auto` chose it, or what the mode means on this device
    convert_weights: bool = False  # store the heavy parts' weights in the low precision
    openvino_hint: str = ""  # "openvino": OpenVINO's inference precision for the image encoder
    fallback: Precision | None = None  # `auto`'s torch mode, if its "openvino" cannot convert the model

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        # `openvino` in bf16: the parts left in torch (CLIP or BEiT-3, the decoder) run as the bf16 mode's.
        if self.name != "bf16" and not (self.name == "openvino" and self.openvino_hint == "bf16"):
            return None
        if self.device_type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16

    def autocast(self) -> contextlib.AbstractContextManager:
        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=dtype)

    def describe(self) -> str:
        """One phrase for a status line, e.g. "bf16 (auto: native bf16 on this CPU)"."""
        detail = f"{self.requested}: {self.reason}" if self.requested == "auto" else self.reason
        return f"{self.name} ({detail})" if detail else self.name


def resolve_precision(
    requested: str,
    device: torch.device | str,
    flags: frozenset[str] | None = None,
    image_size: int | None = None,
    converts_to_openvino: bool = False,
    paper_family: bool = False,
) -> Precision:
    """The precision to run for a request on a device; a mode the device cannot run is one UserError.

    `image_size`: the model's input side (`auto` keeps fp32 on the CPU for small models, where bf16's
    casts cost more than its kernels save). `converts_to_openvino`: the model's family has the
    `openvino` mode (`auto` may choose it). `paper_family`: the model is the paper's (`auto` keeps the
    reference's masks, see the module's docstring). `flags` replaces the CPU's own flags (tests
    simulate CPUs with and without bf16 this way).
    """
    name = (requested or "auto").lower()
    device_type = torch.device(device).type
    if name not in PRECISIONS:
        raise UserError(f"Unknown precision {requested!r}; use {', '.join(PRECISIONS)}.")
    if name == "auto" and paper_family:
        return _paper_auto(device_type, flags)
    if device_type == "cuda":
        return _resolve_on_gpu(name)
    native_bf16 = cpu_has_native_bf16(flags)
    small = image_size is not None and image_size < BF16_MIN_IMAGE_SIZE
    if name == "auto":
        if not native_bf16:
            torch_mode = Precision("fp32", "cpu", "auto", "this CPU has no native bf16")
        elif small:
            torch_mode = Precision("fp32", "cpu", "auto", f"bf16 does not pay below {BF16_MIN_IMAGE_SIZE} px")
        else:
            torch_mode = Precision("bf16", "cpu", "auto", "native bf16 on this CPU", convert_weights=True)
        if converts_to_openvino and not small and openvino_installed():
            hint = "bf16" if native_bf16 else "f32"
            reason = f"OpenVINO {_openvino_version()} image encoder in {hint}"
            return Precision("openvino", "cpu", "auto", reason, openvino_hint=hint, fallback=torch_mode)
        return torch_mode
    if name == "openvino":
        hint = "bf16" if native_bf16 and not small else "f32"
        reason = f"OpenVINO {_openvino_version()} image encoder in {hint}"
        return Precision("openvino", "cpu", name, reason, openvino_hint=hint)
    if name == "bf16" and not native_bf16:
        raise UserError(
            "--precision bf16 needs a CPU with native bf16 instructions (AVX512-BF16 or AMX), which this "
            "one lacks (it would be emulated and slower than fp32); use --precision fp32 or int8."
        )
    reasons = {"fp32": "", "bf16": "native bf16 on this CPU", "int8": "dynamic int8 linear layers"}
    return Precision(name, "cpu", name, reasons[name], convert_weights=name == "bf16")


def _paper_auto(device_type: str, flags: frozenset[str] | None) -> Precision:
    """`auto` for the paper family: the fastest mode this device runs whose masks agreed with the
    reference's (PAPER_MODE_AGREEMENT ≥ REFERENCE_AGREEMENT_IOU), else fp32 — the reference's own."""
    runnable = {"bf16": device_type == "cuda" or cpu_has_native_bf16(flags)}
    for mode, iou in sorted(PAPER_MODE_AGREEMENT.items(), key=lambda item: -item[1]):
        if iou >= REFERENCE_AGREEMENT_IOU and runnable.get(mode, False):  # pragma: no cover - none yet
            return resolve_precision(mode, device_type, flags=flags)
    best = ", ".join(f"{mode} {iou:.3f}" for mode, iou in PAPER_MODE_AGREEMENT.items())
    reason = f"the reference's masks; no faster mode agrees at IoU ≥ {REFERENCE_AGREEMENT_IOU:g} ({best})"
    return Precision("fp32", device_type, "auto", reason)


def openvino_installed() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("openvino") is not None
    except ValueError:  # a module set to None in sys.modules (tests simulate a missing package so)
        return False


def _openvino_version() -> str:
    from backend.model.openvino_encoder import openvino_version

    return openvino_version()


def _resolve_on_gpu(name: str) -> Precision:
    if name in ("int8", "openvino"):
        raise UserError(f"--precision {name} runs on the CPU only; use bf16 or fp32 on a GPU.")
    if name == "fp32":
        return Precision("fp32", "cuda", "fp32")
    kind = "bf16" if torch.cuda.is_bf16_supported() else "fp16 (this GPU has no bf16)"
    return Precision("bf16", "cuda", name, f"{kind} autocast")


def training_precision(device: torch.device) -> Precision:
    """What training and a predictor built around a live model use: bf16 autocast on CUDA GPUs (the
    reference trains in bf16), fp32 on the CPU; never changes the model's weights."""
    if device.type == "cuda":
        return Precision("bf16", "cuda", "bf16", "bf16 autocast")
    return Precision("fp32", device.type, "fp32")


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager:
    """Training's mixed precision (see `training_precision`)."""
    return training_precision(device).autocast()


def apply_precision(parts: list[nn.Module], precision: Precision) -> None:
    """Prepare a model's heavy parts (its `low_precision_parts()`) for inference in `precision`, in place.

    bf16: their weights become bf16 (half the memory; no cast per call under autocast). int8: their
    linear layers become dynamically quantised ones. The rest of the model (prompt encoder, decoder,
    small heads) keeps fp32 weights and runs under autocast.
    """
    if precision.name == "bf16" and precision.convert_weights:
        for part in parts:
            part.to(torch.bfloat16)
    elif precision.name == "int8":
        with warnings.catch_warnings():
            # torch.ao.quantization is deprecated in favour of torchao, yet complete in the pinned torch.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantiz", category=UserWarning)
            for part in parts:
                _quantize_linears(part)


def prepare_for_inference(model: nn.Module, precision: Precision) -> Precision:
    """Prepare a model of either family for `precision` in place; returns the precision that runs
    (`auto`'s torch mode when its `openvino` could not convert the model)."""
    if precision.name == "openvino":
        from backend.model.openvino_encoder import attach_openvino_encoder

        precision = attach_openvino_encoder(model, precision)
    if precision.name != "openvino":
        apply_precision(model.low_precision_parts(), precision)
    return precision


def _quantize_linears(module: nn.Module) -> None:
    """Replace every nn.Linear below `module` by its dynamically quantised int8 version, except inside
    nn.TransformerEncoderLayer, whose fast path reads `linear.weight` as a tensor."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import default_dynamic_qconfig

    for name, child in module.named_children():
        if isinstance(child, nn.TransformerEncoderLayer):
            continue
        if type(child) is nn.Linear:
            child.qconfig = default_dynamic_qconfig
            setattr(module, name, DynamicLinear.from_float(child))
        else:
            _quantize_linears(child)
