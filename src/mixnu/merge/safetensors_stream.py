"""Safetensors files read and written in pieces, without loading whole models or shards.

Reading: `read_header` parses and checks one file's header; tensor bytes are read later with plain
`readinto` calls into fresh buffers (no memory map), one tensor or one slice of rows at a time
(`mixnu.merge.inputs.Checkpoint.read_array`), so the resident memory of a merge is what it holds,
not the pages of 3 GB of mapped inputs.

Writing: `ShardWriter` writes one safetensors file whose header is known in advance (every output
name, dtype and shape is planned before any data is read) and then streams tensor bytes in order,
chunk by chunk, so no output shard is ever held in memory.

Dtypes: arrays are numpy storage arrays (`STORAGE`: bfloat16 as its uint16 bit patterns);
`to_f32` / `from_f32` convert exactly (round to nearest even, as torch does), `to_torch` /
`from_torch` bridge to torch for the text-based router init.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixnu.errors import CheckpointError

ST_DTYPES: dict[str, tuple[str, int]] = {
    "F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
    "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1), "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
}
TORCH_TO_ST = {name: tag for tag, (name, _) in ST_DTYPES.items()}
_MAX_HEADER = 100 * 2**20


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: file, safetensors dtype tag, shape, absolute byte range."""

    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        return ST_DTYPES[self.dtype][1]


def read_header(path: Path) -> dict[str, TensorInfo]:
    """Parse and check one safetensors header; `CheckpointError` if the file is not valid."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                raise ValueError("shorter than a header")
            (n,) = struct.unpack("<Q", raw)
            if n > min(_MAX_HEADER, size - 8):
                raise ValueError("header length is out of range")
            header = json.loads(fh.read(n))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        header.pop("__metadata__", None)
        out: dict[str, TensorInfo] = {}
        base = 8 + n
        end_max = 0
        for name, meta in header.items():
            dtype, shape, (a, b) = meta["dtype"], tuple(int(d) for d in meta["shape"]), meta["data_offsets"]
            if dtype not in ST_DTYPES:
                raise ValueError(f"tensor {name} has unsupported dtype {dtype}")
            info = TensorInfo(path, dtype, shape, base + a, base + b)
            if b < a or info.end - info.start != info.numel * info.itemsize:
                raise ValueError(f"tensor {name} has a byte range that does not match its shape")
            end_max = max(end_max, info.end)
            out[name] = info
        if end_max > size:
            raise ValueError(f"file is truncated ({size} bytes, header needs {end_max})")
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{path}: not a valid safetensors file ({exc}); re-save or re-download this checkpoint"
        ) from None
    return out


STORAGE = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I64": np.int64,
           "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
OUT_TAGS = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}


def to_f32(arr: np.ndarray, tag: str) -> np.ndarray:
    """Exact float32 values of a float16/bfloat16/float32 array (float64 is rounded to float32)."""
    if tag == "BF16":
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.astype(np.float32)


def from_f32(f32: np.ndarray, out: str) -> np.ndarray:
    """float32 -> storage array of `out` ("float32" | "float16" | "bfloat16"), rounding to nearest even
    as torch does (`tensor.to(dtype)`); bfloat16 is returned as uint16 bit patterns."""
    if out == "float32":
        return f32.astype(np.float32, copy=False)
    if out == "float16":
        return f32.astype(np.float16)
    u = f32.view(np.uint32)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(f32)
    if nan.any():
        rounded[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)  # keep NaN a NaN
    return rounded


def to_torch(arr: np.ndarray, out: str):
    """A torch view of a storage array of dtype `out` (for the router-init forward passes)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(arr))
    return t.view(torch.bfloat16) if out == "bfloat16" else t


def from_torch(t, out: str) -> np.ndarray:
    """A torch tensor -> storage array of dtype `out`."""
    import torch

    t = t.detach().to(getattr(torch, out)).contiguous()
    return t.view(torch.uint16).numpy() if out == "bfloat16" else t.numpy()


class ShardWriter:
    """Stream one safetensors file whose tensors (names, dtypes, shapes, order) are fixed up front.

    `entries` is a list of `(name, torch dtype name, shape)`; `write(tensor)` appends the next
    tensor's bytes (called in the order of `entries`, possibly several times per tensor for row
    chunks). `close()` checks that every byte was written. The header is sorted by name as the
    `safetensors` library writes it; data follows in `entries` order.
    """

    def __init__(self, path: Path, entries: list[tuple[str, str, tuple[int, ...]]],
                 metadata: dict[str, str] | None = None) -> None:
        header: dict[str, Any] = {"__metadata__": metadata or {"format": "pt"}}
        offset = 0
        self._sizes: list[int] = []
        for name, dtype, shape in entries:
            tag = TORCH_TO_ST[dtype]
            n = ST_DTYPES[tag][1] * math.prod(shape)
            header[name] = {"dtype": tag, "shape": list(shape), "data_offsets": [offset, offset + n]}
            offset += n
            self._sizes.append(n)
        raw = json.dumps(dict(sorted(header.items())), separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self.total = offset
        self.path = path
        self._fh = open(path, "wb")
        self._fh.write(struct.pack("<Q", len(raw)) + raw)
        self._written = 0

    def write(self, arr: np.ndarray) -> None:
        """Append the bytes of `arr` (a storage array in the planned dtype, e.g. from `from_f32`)."""
        data = np.ascontiguousarray(arr)
        self._fh.write(memoryview(data).cast("B"))
        self._written += data.nbytes

    def close(self) -> None:
        """Close and check that exactly the planned bytes were written.

        No fsync: the folder only becomes the output by a rename after every shard is closed, so a
        killed process never leaves a partial output; flushing 1.6 GB to disk would double the wall time.
        """
        self._fh.close()
        if self._written != self.total:
            raise RuntimeError(f"{self.path}: wrote {self._written} bytes, planned {self.total}")
