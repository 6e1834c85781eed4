"""Write safetensors files byte-for-byte reproducibly.

The safetensors library serializes ``__metadata__`` from a hash map, so the same tensors and
metadata give different bytes (and package digests) from run to run. This writer produces the
same format (8-byte little-endian header length, a JSON header padded with spaces to a multiple
of 8, then the tensors' bytes back to back) with sorted metadata and tensors sorted by name, so an
identical export yields an identical sha256. Any safetensors reader loads the result.
"""
from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_NUMPY_CODES = {
    "bool": "BOOL", "uint8": "U8", "int8": "I8", "int16": "I16", "uint16": "U16", "float16": "F16", "int32": "I32",
    "uint32": "U32", "float32": "F32", "int64": "I64", "uint64": "U64", "float64": "F64",
}
_TORCH_CODES = {
    "torch.bool": "BOOL", "torch.uint8": "U8", "torch.int8": "I8", "torch.int16": "I16", "torch.float16": "F16",
    "torch.bfloat16": "BF16", "torch.int32": "I32", "torch.float32": "F32", "torch.int64": "I64", "torch.float64": "F64",
}


@dataclass(frozen=True, slots=True)
class RawTensor:
    """One tensor ready to write: safetensors dtype code, shape and little-endian bytes."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes


def from_numpy(array: Any) -> RawTensor:
    a = np.ascontiguousarray(array)
    code = _NUMPY_CODES.get(a.dtype.name)
    if code is None:
        raise TypeError(f"safetensors cannot store dtype {a.dtype}")
    return RawTensor(code, tuple(int(d) for d in a.shape), a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())


def from_torch(tensor: Any) -> RawTensor:
    import torch

    t = tensor.detach().cpu().contiguous()
    code = _TORCH_CODES.get(str(t.dtype))
    if code is None:
        raise TypeError(f"safetensors cannot store dtype {t.dtype}")
    # Viewed as bytes, so bfloat16 (which NumPy lacks) is stored exactly too.
    data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return RawTensor(code, tuple(t.shape), data)


def write_safetensors(path: Path, tensors: Mapping[str, RawTensor] | Iterable[tuple[str, RawTensor]],
                      metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``tensors`` (name -> RawTensor) and string ``metadata`` to ``path`` deterministically."""
    items = sorted(dict(tensors).items())
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {k: str(metadata[k]) for k in sorted(metadata)}
    offset = 0
    for name, t in items:
        header[name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(t.data)]}
        offset += len(t.data)
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for _, t in items:
            f.write(t.data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def write_numpy(path: Path, arrays: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> Path:
    """``write_safetensors`` for a name -> NumPy array mapping."""
    return write_safetensors(path, {k: from_numpy(v) for k, v in arrays.items()}, metadata)
