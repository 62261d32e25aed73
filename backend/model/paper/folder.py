"""Loading a published RS2-SAM 2 model folder (Hugging Face layout) strictly and with one copy in memory.

A folder holds `config.json` (the reference's `EvfConfig`: model_type "evf", hidden_size, out_dim,
mm_extractor_scale …), the weights as `model.safetensors` or `pytorch_model.bin` — or shards of either
listed by `model.safetensors.index.json` / `pytorch_model.bin.index.json` — and the tokenizer files
(`sentencepiece.bpe.model`, `tokenizer_config.json`, `special_tokens_map.json`, `added_tokens.json`).

Every key and shape is checked against the model before any weight is read; SAM 2's video modules are
accepted and dropped by name (`build.SAM2_VIDEO_ONLY`); anything else missing, unexpected or misshapen is
one `UserError` naming the first few. The model is built on the meta device and the tensors are assigned
to it as read, so the weights exist once (safetensors: read into place; .bin: memory-mapped).
"""

from __future__ import annotations

import json
import pickle
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from backend.errors import UserError
from backend.model.paper.build import build_paper_model, is_video_only_key
from backend.model.paper.model import PaperRS2SAM2
from backend.model.paper.safetensors_stream import TensorEntry, read_header, read_tensor
from backend.model.paper.tokenizer import PaperTokenizer
from backend.model.presets import PRESETS, ModelConfig
from backend.model.weights_io import describe_keys

SAFETENSORS, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"
BIN, BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"
TOKENIZER_MODEL = "sentencepiece.bpe.model"
TOKENIZER_EXTRAS = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")


def preset_for_folder(folder: Path) -> str | None:
    """The paper preset a folder is, by its published folder name (`rrsisd`, `refseg`: the presets'
    hub_folder), if it tells."""
    by_folder = {config.hub_folder: name for name, config in PRESETS.items() if config.hub_folder}
    return by_folder.get(folder.name)


@dataclass(frozen=True)
class PublishedFolder:
    path: Path
    config_json: dict
    weight_files: tuple[Path, ...]
    kind: str  # "safetensors" or "bin"
    tokenizer_model: Path

    def files(self) -> list[Path]:
        """Every file of the folder this model uses (for copying or checking it)."""
        extras = [self.path / name for name in TOKENIZER_EXTRAS if (self.path / name).is_file()]
        index = [self.path / name for name in (SAFETENSORS_INDEX, BIN_INDEX) if (self.path / name).is_file()]
        return [self.path / "config.json", *index, *self.weight_files, self.tokenizer_model, *extras]


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"The {what} {str(path)!r} is unreadable ({type(exc).__name__}).") from None
    if not isinstance(data, dict):
        raise UserError(f"The {what} {str(path)!r} is not a JSON object.")
    return data


def _sharded(folder: Path, index_name: str) -> tuple[Path, ...]:
    index = _read_json(folder / index_name, "weights index")
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise UserError(f"The weights index {str(folder / index_name)!r} has no weight_map.")
    names = sorted(set(weight_map.values()))
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise UserError(f"The model folder {str(folder)!r} lacks weight files {describe_keys(missing, 3)}.")
    return tuple(folder / name for name in names)


def inspect_folder(path: str | Path) -> PublishedFolder:
    """Find the files of a published model folder (no weights are read)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise UserError(f"The model folder {str(folder)!r} does not exist.")
    if not (folder / "config.json").is_file():
        raise UserError(f"{str(folder)!r} is not a published model folder (it has no config.json).")
    config_json = _read_json(folder / "config.json", "model configuration")
    if (folder / SAFETENSORS_INDEX).is_file():
        kind, files = "safetensors", _sharded(folder, SAFETENSORS_INDEX)
    elif (folder / SAFETENSORS).is_file():
        kind, files = "safetensors", (folder / SAFETENSORS,)
    elif (folder / BIN_INDEX).is_file():
        kind, files = "bin", _sharded(folder, BIN_INDEX)
    elif (folder / BIN).is_file():
        kind, files = "bin", (folder / BIN,)
    else:
        raise UserError(
            f"The model folder {str(folder)!r} has no weights ({SAFETENSORS} or {BIN}, or their index)."
        )
    tokenizer = folder / TOKENIZER_MODEL
    if not tokenizer.is_file():
        candidates = sorted(folder.glob("*.model"))
        if len(candidates) != 1:
            raise UserError(f"The model folder {str(folder)!r} has no tokenizer model ({TOKENIZER_MODEL}).")
        tokenizer = candidates[0]
    return PublishedFolder(folder, config_json, files, kind, tokenizer)


def check_config_json(folder: PublishedFolder, config: ModelConfig, prompt_dim: int) -> None:
    """The published config.json must describe this architecture (else one sentence saying how not)."""
    data = folder.config_json
    expected = {
        "model_type": "evf",
        "hidden_size": config.beit3_width,
        "out_dim": prompt_dim,
        "mm_extractor_scale": config.beit3_scale,
    }
    # EvfConfig's defaults apply to fields a config.json leaves out.
    defaults = {"hidden_size": 1024, "out_dim": 256, "mm_extractor_scale": "large"}
    for field, want in expected.items():
        have = data.get(field, defaults.get(field))
        if have != want:
            raise UserError(
                f"The model folder {str(folder.path)!r} holds another architecture than {config.name!r} "
                f"(config.json {field}: {have!r}, expected {want!r})."
            )


# ---- reading tensors --------------------------------------------------------------------------------
def _bin_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A pickled state dict, with weights_only=True (never executing code), memory-mapped when it can be."""
    what = f"weights file {str(path)!r}"
    if path.stat().st_size == 0:
        raise UserError(f"The {what} is empty; download it again.")
    try:
        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            data = torch.load(str(path), map_location="cpu", weights_only=True)  # legacy format
    except pickle.UnpicklingError as exc:
        raise UserError(
            f"The {what} cannot be read safely: it holds pickled Python objects, not only weights "
            f"({str(exc).splitlines()[0][:100]})."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        raise UserError(f"The {what} is corrupt or truncated ({str(exc).splitlines()[0][:100]}).") from None
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UserError(f"The {what} does not hold a dictionary of weights.")
    return data


@dataclass
class _Source:
    path: Path
    entries: dict[str, TensorEntry] | None  # safetensors
    tensors: dict[str, torch.Tensor] | None  # .bin (memory-mapped)

    def shapes(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        if self.entries is not None:
            return {key: (entry.shape, entry.dtype) for key, entry in self.entries.items()}
        return {key: (tuple(t.shape), t.dtype) for key, t in self.tensors.items()}


def _open_sources(folder: PublishedFolder) -> list[_Source]:
    sources = []
    for path in folder.weight_files:
        if folder.kind == "safetensors":
            entries, _ = read_header(path, "weights file")
            sources.append(_Source(path, entries, None))
        else:
            sources.append(_Source(path, None, _bin_tensors(path)))
    return sources


def check_keys(
    found: dict[str, tuple[tuple[int, ...], torch.dtype]], expected: dict[str, torch.Tensor], where: str
) -> None:
    """Raise one UserError for missing, unexpected, misshapen or non-float keys (video modules dropped)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(k for k in set(found) - set(expected) if not is_video_only_key(k))
    wrong = []
    for key in sorted(set(found) & set(expected)):
        shape, dtype = found[key]
        if shape != tuple(expected[key].shape):
            wrong.append(f"{key} {shape} vs {tuple(expected[key].shape)}")
        elif dtype.is_floating_point != expected[key].dtype.is_floating_point:
            wrong.append(f"{key} dtype {str(dtype).removeprefix('torch.')}")
    problems = []
    if missing:
        problems.append(f"missing keys {describe_keys(missing, 4)}")
    if unexpected:
        problems.append(f"unexpected keys {describe_keys(unexpected, 4)}")
    if wrong:
        problems.append(f"wrongly shaped keys {describe_keys(wrong, 4)}")
    if problems:
        raise UserError(f"The weights in {where} do not match this model: {'; '.join(problems)}.")


def _gather_shapes(sources: list[_Source]) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    found: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
    for source in sources:
        for key, value in source.shapes().items():
            if key in found:
                raise UserError(f"The weight {key!r} appears in two files of the model folder.")
            found[key] = value
    return found


def _read_state(sources: list[_Source], expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for source in sources:
        if source.entries is not None:
            with open(source.path, "rb") as handle:
                for key, entry in source.entries.items():
                    if key in expected:
                        state[key] = read_tensor(handle, entry)
        else:
            state.update({key: t for key, t in source.tensors.items() if key in expected})
    for key, tensor in state.items():  # e.g. a folder converted to half precision
        if tensor.dtype != expected[key].dtype:
            state[key] = tensor.to(expected[key].dtype)
    return state


def assign_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Make the (meta) model's tensors the loaded ones; fail if anything stayed on the meta device."""
    model.load_state_dict(state, strict=True, assign=True)
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:  # pragma: no cover - a module tree that grew tensors outside its state dict
        raise RuntimeError(f"tensors left without weights after loading: {left[:3]}")


def load_tokenizer(path: Path, config: ModelConfig) -> PaperTokenizer:
    tokenizer = PaperTokenizer(path, max_tokens=config.text_context_length)
    if tokenizer.vocab_size > config.beit3_vocab:
        raise UserError(
            f"The tokenizer {str(path)!r} has {tokenizer.vocab_size} ids, more than the model's "
            f"{config.beit3_vocab}: it belongs to another model."
        )
    return tokenizer


def unused_keys(model: PaperRS2SAM2) -> set[str]:
    """Keys of weights outside the model's data flow: `meo_linear` (the reference never calls it) and SAM 2's
    point/box prompts, IoU and object-score heads and the hypernetworks of masks 1–3."""
    unused = {id(parameter) for parameter in model.visual_model.unused_parameters()}
    names = {f"visual_model.{name}" for name, p in model.visual_model.named_parameters() if id(p) in unused}
    return names | {key for key in model.state_dict() if key.startswith("meo_linear.")}


@dataclass(frozen=True)
class KeyDifferences:
    """What a folder loaded with `allow_key_differences` lacked or had besides the model's keys."""

    unexpected: tuple[str, ...]  # in the folder, not in the model: ignored
    missing_unused: tuple[str, ...]  # in the model, not in the folder, outside the data flow: zeros

    def __bool__(self) -> bool:
        return bool(self.unexpected or self.missing_unused)

    def describe(self) -> str:
        parts = []
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected key(s) ignored: {', '.join(self.unexpected)}")
        if self.missing_unused:
            parts.append(
                f"{len(self.missing_unused)} missing key(s) of weights the model does not use, set to zero: "
                + ", ".join(self.missing_unused)
            )
        return "; ".join(parts)


def check_keys_allowing_differences(
    found: dict[str, tuple[tuple[int, ...], torch.dtype]],
    expected: dict[str, torch.Tensor],
    unused: set[str],
    where: str,
) -> KeyDifferences:
    """Like `check_keys`, but unexpected keys and missing keys of unused weights are listed, not refused;
    missing weights the model uses and wrongly shaped keys are still refused."""
    missing = sorted(set(expected) - set(found))
    used_missing = [key for key in missing if key not in unused]
    if used_missing:
        raise UserError(
            f"The weights in {where} lack {len(used_missing)} weight(s) the model uses "
            f"({describe_keys(used_missing, 4)}); they cannot be left out, even with differences allowed."
        )
    present = {key: value for key, value in found.items() if key in expected}
    check_keys(present, {key: expected[key] for key in present}, where)  # shapes and types
    unexpected = sorted(k for k in set(found) - set(expected) if not is_video_only_key(k))
    return KeyDifferences(tuple(unexpected), tuple(missing))


def load_published_folder(
    path: str | Path, config: ModelConfig, device: str = "cpu", allow_key_differences: bool = False
) -> PaperRS2SAM2:
    """The paper model with the folder's weights and tokenizer (eval mode), or one UserError.

    Strict by default: every key of the model, no other. `allow_key_differences` (an explicit choice of
    the person loading it) accepts a folder whose keys differ from this code's — extra keys are ignored,
    missing keys of weights outside the data flow are set to zero — and says so loudly on stderr (the
    model's `key_differences` keeps the list); missing weights the model uses are refused all the same."""
    folder = inspect_folder(path)
    model = build_paper_model(config, empty=True)
    check_config_json(folder, config, model.visual_model.hidden_dim)
    tokenizer = load_tokenizer(folder.tokenizer_model, config)
    expected = model.state_dict()
    sources = _open_sources(folder)
    where = f"the model folder {str(folder.path)!r}"
    differences = KeyDifferences((), ())
    if allow_key_differences:
        differences = check_keys_allowing_differences(
            _gather_shapes(sources), expected, unused_keys(model), where
        )
    else:
        check_keys(_gather_shapes(sources), expected, where)
    state = _read_state(sources, expected)
    for key in differences.missing_unused:
        state[key] = torch.zeros(expected[key].shape, dtype=expected[key].dtype)
    if differences:
        print(
            f"WARNING: {where} does not match this model's keys; loaded anyway as asked "
            f"(key differences allowed): {differences.describe()}",
            file=sys.stderr,
            flush=True,
        )
    assign_weights(model, state)
    model.key_differences = differences
    model.tokenizer = tokenizer
    model.weights_file = folder.path  # where its weights came from (the OpenVINO cache keeps these)
    return model.to(device).eval()
