"""safetensors files read and written one tensor at a time, so a 3.7 GB model is in memory once.

The format (an 8-byte little-endian header length, a JSON header of dtype/shape/byte offsets, the raw
bytes) is simple and fixed. The `safetensors` package reads through a memory map, whose touched pages count
in the process's resident memory beside the tensors copied out of it (two copies at the peak); here each
tensor is read with `readinto` straight into its own memory and the file is never mapped.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch

from backend.errors import UserError

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
NAMES = {dtype: name for name, dtype in DTYPES.items()}
MAX_HEADER_BYTES = 100 * 2**20  # the format's own limit
READ_CHUNK = 64 * 2**20


@dataclass(frozen=True)
class TensorEntry:
    key: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int  # absolute byte offsets in the file
    end: int


def read_header(path: Path, what: str) -> tuple[dict[str, TensorEntry], dict[str, str]]:
    """Entries and `__metadata__`, checked against the file's size (a truncated file fails here)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise UserError(f"The {what} {str(path)!r} is truncated (no safetensors header).")
        (length,) = struct.unpack("<Q", head)
        if length > MAX_HEADER_BYTES or 8 + length > size:
            raise UserError(f"The {what} {str(path)!r} is corrupt or truncated (bad header length).")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise UserError(f"The {what} {str(path)!r} is corrupt (unreadable header).") from None
    if not isinstance(header, dict):
        raise UserError(f"The {what} {str(path)!r} is corrupt (unreadable header).")
    metadata = header.pop("__metadata__", None) or {}
    base = 8 + length
    entries: dict[str, TensorEntry] = {}
    for key, info in header.items():
        try:
            dtype = DTYPES[info["dtype"]]
            shape = tuple(int(n) for n in info["shape"])
            begin, end = (int(n) for n in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise UserError(f"The {what} {str(path)!r} is corrupt (bad entry for {key!r}).") from None
        nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        if end - begin != nbytes or begin < 0:
            raise UserError(f"The {what} {str(path)!r} is corrupt (the size of {key!r} does not add up).")
        if base + end > size:
            raise UserError(
                f"The {what} {str(path)!r} is truncated: {key!r} ends past the end of the file "
                f"({size} bytes); download it again."
            )
        entries[key] = TensorEntry(key, dtype, shape, base + begin, base + end)
    return entries, {str(k): str(v) for k, v in metadata.items()}


def read_tensor(handle: BinaryIO, entry: TensorEntry) -> torch.Tensor:
    tensor = torch.empty(entry.shape, dtype=entry.dtype)
    view = memoryview(tensor.reshape(-1).view(torch.uint8).numpy())
    handle.seek(entry.start)
    done = 0
    while done < len(view):
        got = handle.readinto(view[done : done + READ_CHUNK])
        if not got:
            raise UserError(f"A weights file ended early while reading {entry.key!r}; download it again.")
        done += got
    return tensor


def write_file(path: Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write atomically (temp file in the same folder, then os.replace), one tensor at a time."""
    header: dict[str, object] = {"__metadata__": metadata}
    offset = 0
    for key, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        header[key] = {
            "dtype": NAMES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # keep the data 8-byte aligned, as the format recommends
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(struct.pack("<Q", len(encoded)))
            handle.write(encoded)
            for tensor in tensors.values():
                data = tensor.detach().to("cpu").contiguous()
                handle.write(memoryview(data.reshape(-1).view(torch.uint8).numpy()))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
