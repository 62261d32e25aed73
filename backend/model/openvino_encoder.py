"""The `openvino` precision mode: SAM 2's phrase-conditioned image encoder run by OpenVINO on the CPU.

The encoder (Hiera with the text-conditioned adapters, and the FPN neck) is nearly all of a tile's
compute (docs/benchmarks.md, "Precision modes"); everything else — CLIP or BEiT-3, the union encoder's
joint layers, the prompt encoder and the mask decoder — stays in torch. Both model families expose the
encoder as `encode_image_with_text_in_torch(images, text, padding)`. The encoder is exported once per
model with `torch.export`, converted by `openvino.convert_model` and saved as OpenVINO IR under
`<cache>/openvino/<key>/` (key: a hash of every tensor the exported graph holds, the model's
configuration and the code of the graph's modules, the input size, the text length and the versions of
torch, sam2 and OpenVINO), so the conversion (seconds for the demo model, more for large ones) is paid
once per machine; later loads read the IR and compile it. The cache is bounded and evicts the least
recently used conversion (backend/model/openvino_cache.py); a model without saved weights (a fresh
preset) is converted in memory and not cached.

Shapes are fixed: one image at the model's input size and one phrase padded to the model's text
length (the adapters mask padded tokens, so padding changes no output); several phrases run one after
the other, which is also how the CPU runs them fastest in torch. Inference precision: bf16 where the CPU
has native bf16 and the model's input is large enough for it to pay (the rule of `auto`), else f32.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from backend.errors import UserError
from backend.model import openvino_cache as ov_cache
from backend.model.openvino_cache import IR_NAME


def openvino_version() -> str:
    """The installed OpenVINO's version ("2026.4.1"); a clear error where it is missing."""
    try:
        import openvino
    except ImportError:
        raise UserError(
            "--precision openvino needs the `openvino` package (`pip install openvino`), which this "
            "Python lacks; use --precision auto, fp32, bf16 or int8."
        ) from None
    return openvino.__version__.split("-")[0]


class PhraseImageEncoder(nn.Module):
    """The model's phrase-conditioned image encoder as a module of tensors only (what export needs);
    both families have `encode_image_with_text_in_torch(images, text, padding)`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, text: torch.Tensor, padding: torch.Tensor):
        embedding, high_res = self.model.encode_image_with_text_in_torch(images, text, padding)
        return (embedding, *high_res)


@dataclass
class OpenVINOImageEncoder:
    """Callable like `RS2SAM2._encode_image_with_text`: (images, text, padding) → (embedding, high_res)."""

    compiled: object  # openvino.CompiledModel
    text_length: int
    hint: str  # "f32" or "bf16"
    cache_folder: Path | None  # None: not cached (a model without saved weights)
    converted_now: bool  # False when the IR came from the cache

    def __call__(
        self, sam_images: torch.Tensor, text: torch.Tensor, padding: torch.Tensor | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        image = sam_images.detach().float().cpu().numpy()
        per_phrase = []
        for k in range(text.shape[0]):
            own_padding = None if padding is None else padding[k : k + 1]
            phrase_text, phrase_padding = _pad(text[k : k + 1], own_padding, self.text_length)
            own_image = image[k : k + 1] if image.shape[0] > 1 else image
            result = self.compiled([own_image, phrase_text, phrase_padding])
            per_phrase.append([result[output] for output in self.compiled.outputs])
        outputs = [torch.from_numpy(np.concatenate(parts)) for parts in zip(*per_phrase)]
        return outputs[0], outputs[1:]


def _pad(text: torch.Tensor, padding: torch.Tensor | None, length: int) -> tuple[np.ndarray, np.ndarray]:
    """One phrase's text features and padding mask (None: no padding), padded (masked) to `length`
    tokens."""
    text_np = text.detach().float().cpu().numpy()
    if padding is None:
        padding_np = np.zeros(text_np.shape[:2], bool)
    else:
        padding_np = padding.detach().cpu().numpy().astype(bool)
    missing = length - text_np.shape[1]
    if missing < 0:
        raise ValueError(f"a phrase of {text_np.shape[1]} tokens is longer than the model's {length}")
    if missing:
        text_np = np.concatenate([text_np, np.zeros((1, missing, text_np.shape[2]), np.float32)], 1)
        padding_np = np.concatenate([padding_np, np.ones((1, missing), bool)], 1)
    return text_np, padding_np


def _family_parts(model: nn.Module) -> tuple[int, dict[str, nn.Module]]:
    """(width of the text features the encoder reads, the modules whose tensors the exported graph holds)
    for either model family. Besides these modules the graph holds one tensor of the model itself,
    `no_mem_embed` (`graph_tensors`)."""
    if model.config.family == "paper":
        visual = model.visual_model
        decoder = visual.sam_mask_decoder
        parts = {"image_encoder": visual.image_encoder}
        if visual.use_high_res_features_in_sam:  # the encoder's graph ends with these two convolutions
            parts.update(conv_s0=decoder.conv_s0, conv_s1=decoder.conv_s1)
        return model.text_feat_linear.out_features, parts
    sam = model.sam
    parts = {"image_encoder": sam.image_encoder, "adapters": model.adapters}
    if sam.use_high_res_features_in_sam:
        parts.update(conv_s0=sam.sam_mask_decoder.conv_s0, conv_s1=sam.sam_mask_decoder.conv_s1)
    return model.text_proj.out_features, parts


def _sam(model: nn.Module) -> nn.Module:
    return model.visual_model if model.config.family == "paper" else model.sam


def graph_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor the exported encoder graph may hold, by name: the parameters, buffers (persistent or
    not) and plain tensor attributes of the encoder's modules, and `no_mem_embed` when it is added.
    tests/model/test_openvino_mode.py checks this against what `torch.export` actually lifts."""
    _, parts = _family_parts(model)
    tensors: dict[str, torch.Tensor] = {}
    for prefix, part in parts.items():
        for module_name, module in part.named_modules(remove_duplicate=False):
            for name, value in vars(module).items():
                if name in ("_parameters", "_buffers"):
                    items = value.items()
                elif isinstance(value, torch.Tensor):
                    items = [(name, value)]
                else:
                    continue
                for tensor_name, tensor in items:
                    if tensor is not None:
                        tensors[".".join(filter(None, (prefix, module_name, tensor_name)))] = tensor
    sam = _sam(model)
    if sam.directly_add_no_mem_embed:
        tensors["no_mem_embed"] = sam.no_mem_embed
    return tensors


def _code_files(model: nn.Module) -> list[Path]:
    """The source files of every class in the encoder graph (their literals are the graph's constants:
    the adapters' mixing weights, window sizes …), and of the model class that wires them."""
    import inspect

    _, parts = _family_parts(model)
    classes = {type(model), type(_sam(model))}
    for part in parts.values():
        classes.update(type(module) for module in part.modules())
    files = set()
    for cls in classes:
        try:
            files.add(Path(inspect.getsourcefile(cls)))
        except (TypeError, OSError):  # a class without a source file (built in): its version is torch's
            continue
    return sorted(files)


def cache_key(model: nn.Module, image_size: int, text_length: int, version: str) -> str:
    """Hash of everything the converted graph depends on: every tensor it holds (`graph_tensors`), the
    model's configuration and the code of the graph's modules (its constants), the shapes, and the
    versions of torch, sam2 and OpenVINO that export and convert it."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        sam2_version = package_version("sam2")
    except PackageNotFoundError:  # pragma: no cover - sam2 is a dependency
        sam2_version = "?"
    family = model.config.family
    digest = hashlib.sha256(
        f"{family}/{image_size}/{text_length}/{torch.__version__}/{sam2_version}/{version}".encode()
    )
    digest.update(repr(model.config).encode())
    for path in _code_files(model):
        digest.update(path.name.encode() + path.read_bytes())
    for name, tensor in sorted(graph_tensors(model).items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


def _example_inputs(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    size, length = model.config.image_size, model.config.text_context_length
    text = torch.zeros(1, length, _family_parts(model)[0])
    padding = torch.ones(1, length, dtype=torch.bool)
    padding[:, 0] = False  # at least one real token, as every phrase has
    return torch.zeros(1, 3, size, size), text, padding


def _convert(model: nn.Module):
    """Export the encoder and convert it: an in-memory openvino.Model."""
    import openvino

    with torch.no_grad():
        exported = torch.export.export(PhraseImageEncoder(model).eval(), _example_inputs(model), strict=False)
    return openvino.convert_model(exported)


def _save(converted, folder: Path) -> None:
    """Write a conversion as OpenVINO IR to `folder`, all or nothing (staged, then renamed)."""
    import openvino

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=ov_cache.staging_prefix(folder.name), dir=folder.parent))
    try:
        openvino.save_model(converted, staging / IR_NAME, compress_to_fp16=False)
        (staging / ov_cache.LAST_USED).touch()
        try:
            os.replace(staging, folder)  # another process may have written the same key meanwhile
        except OSError:
            if not (folder / IR_NAME).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def has_saved_weights(model: nn.Module) -> bool:
    """Whether the model's weights came from a file (set by the loaders): only then is its conversion
    worth keeping. A fresh preset's random weights hash anew on every run, so caching them would only
    fill the disk."""
    return getattr(model, "weights_file", None) is not None


def compile_image_encoder(model: nn.Module, hint: str, cache: Path, threads: int) -> OpenVINOImageEncoder:
    """The model's image encoder compiled by OpenVINO for this CPU: from the cache when it holds this
    model's conversion (one that no longer loads is discarded and converted again, once), else converted
    now and, for a model with saved weights, kept in the bounded cache (backend/model/openvino_cache.py)."""
    import openvino

    version = openvino_version()
    length = model.config.text_context_length
    core = openvino.Core()
    settings = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": max(1, threads)}
    key = cache_key(model, model.config.image_size, length, version)
    if not has_saved_weights(model):
        print(
            "converting the image encoder for OpenVINO (not cached: this model has no saved weights)",
            file=sys.stderr,
            flush=True,
        )
        compiled = core.compile_model(_convert(model), "CPU", settings)
        return OpenVINOImageEncoder(compiled, length, hint, None, True)
    ov_cache.clean_staging(cache)
    folder = cache / key
    compiled = None
    if (folder / IR_NAME).is_file():
        try:
            compiled = core.compile_model(core.read_model(folder / IR_NAME), "CPU", settings)
        except Exception as exc:  # noqa: BLE001 - a damaged IR raises whatever OpenVINO's reader raises
            first_line = (str(exc).strip().splitlines() or [""])[0]
            print(
                f"the cached OpenVINO conversion in {folder} could not be loaded ({type(exc).__name__}: "
                f"{first_line}); discarding it and converting the image encoder again",
                file=sys.stderr,
                flush=True,
            )
            shutil.rmtree(folder, ignore_errors=True)
    converted_now = compiled is None
    if converted_now:
        # Seconds for small models, a minute or more for large ones: say why the start is slow this once.
        print(
            f"converting the image encoder for OpenVINO (once per model; kept in {cache})",
            file=sys.stderr,
            flush=True,
        )
        converted = _convert(model)
        _save(converted, folder)
        compiled = core.compile_model(converted, "CPU", settings)
        removed = ov_cache.evict(cache, keep=frozenset({key}))
        if removed:
            print(
                f"removed {len(removed)} least recently used OpenVINO conversion(s) "
                f"({sum(e.size_bytes for e in removed) / 2**20:.0f} MB) to keep the cache within "
                f"{ov_cache.limit_mb(cache):g} MB",
                file=sys.stderr,
                flush=True,
            )
    ov_cache.mark_used(folder)
    return OpenVINOImageEncoder(compiled, length, hint, folder, converted_now)


def attach_openvino_encoder(model: nn.Module, precision) -> object:
    """Give the model (either family) its image encoder compiled by OpenVINO, converted and cached on
    first use; returns the precision that runs. When `auto` chose OpenVINO and the conversion fails:
    the precision `auto` would otherwise have chosen (said on stderr); asked for explicitly, the failure
    is the user's error message."""
    model.eval()
    try:
        model.encoder_runtime = compile_image_encoder(
            model, precision.openvino_hint, ov_cache.cache_folder(), threads=torch.get_num_threads()
        )
        if precision.openvino_hint == "bf16":
            # The heavy parts OpenVINO does not run (CLIP or BEiT-3) get the bf16 mode's weights; the
            # forward runs under bf16 autocast (Precision.autocast_dtype), as in that mode.
            encoder_parts = [id(part) for part in _family_parts(model)[1].values()]
            for part in model.low_precision_parts():
                if id(part) not in encoder_parts:
                    part.to(torch.bfloat16)
    except Exception as exc:  # noqa: BLE001 - export and conversion raise many types
        if precision.fallback is None:
            raise UserError(f"--precision openvino could not convert this model: {exc}") from exc
        print(
            f"OpenVINO could not convert the model ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            f"running in {precision.fallback.name} instead",
            file=sys.stderr,
            flush=True,
        )
        return precision.fallback
    return precision
