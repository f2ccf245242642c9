"""Checkpoint folders in and out for `mixnu merge`, without loading whole models.

Reading: `Checkpoint` parses a Llama-family folder (config.json + safetensors, sharded or not) by
reading only each file's safetensors header. Tensor bytes are read later with plain `readinto`
calls into fresh buffers (no memory map), one tensor or one slice of rows at a time, so the
resident memory of a merge is what it holds, not the pages of 3 GB of mapped inputs.

Writing: `ShardWriter` writes one safetensors file whose header is known in advance (every output
name, dtype and shape is planned before any data is read) and then streams tensor bytes in order,
chunk by chunk, so no output shard is ever held in memory.

Checks: `check_compatible` (experts vs base: architecture, shapes) and `tokenizer_source`
(same tokenizer). Tensor names, model types and config keys come from `mixnu.arch`.

Pickle checkpoints (`pytorch_model.bin`, `*.pt`) are refused, never unpickled.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixnu import arch
from mixnu.arch.mixtral import llama_fields, normalized_rope
from mixnu.errors import CheckpointError, TokenizerError
from mixnu.io import sha256_file

# safetensors dtype tag -> (torch dtype name, bytes per element)
ST_DTYPES: dict[str, tuple[str, int]] = {
    "F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
    "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1), "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
}
TORCH_TO_ST = {name: tag for tag, (name, _) in ST_DTYPES.items()}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
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


def _pickle_hint(folder: Path) -> str:
    return (
        f"{folder} holds only pickle weights ({', '.join(sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES))}); "
        "mixnu never unpickles. Convert it once where you trust the file: python -c \"from transformers import "
        f"AutoModelForCausalLM as M; M.from_pretrained('{folder}').save_pretrained('{folder}-safetensors')\""
    )


class Checkpoint:
    """A Llama-family checkpoint folder, read lazily.

    Attributes: `path`, `config` (the raw config.json dict), `tensors` (name -> `TensorInfo`),
    `weight_files` (the safetensors files). Construction reads config.json and the safetensors
    headers only, and raises `CheckpointError` for anything that is missing, corrupt or not Llama.
    """

    def __init__(self, path: str | Path, label: str) -> None:
        self.path = Path(path)
        self.label = label
        folder = self.path
        if not folder.is_dir():
            raise CheckpointError(f"{label}: {folder} is not a folder; give a checkpoint folder (config.json + *.safetensors)")
        cfg_path = folder / "config.json"
        if not cfg_path.is_file():
            raise CheckpointError(f"{label}: {folder} has no config.json; give a save_pretrained checkpoint folder")
        try:
            self.config: dict[str, Any] = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{label}: {cfg_path} is not valid JSON ({exc}); re-save the checkpoint") from None
        llama = arch.load("llama")
        mtype = self.config.get("model_type")
        if mtype not in llama.model_types:
            raise CheckpointError(
                f"{label}: {folder} is a '{mtype}' model; mixnu merge takes Llama-family checkpoints "
                f"(model_type {' or '.join(llama.model_types)})"
            )
        for flag in ("attention_bias", "mlp_bias"):
            if self.config.get(flag):
                raise CheckpointError(f"{label}: {folder} uses {flag}=true, which Mixtral cannot hold; merge bias-free models")
        if self.config.get("hidden_act", "silu") != "silu":
            raise CheckpointError(f"{label}: {folder} uses hidden_act={self.config.get('hidden_act')}; Mixtral experts use silu")
        self.weight_files = self._weight_files(folder)
        self.tensors: dict[str, TensorInfo] = {}
        for f in self.weight_files:
            for name, info in read_header(f).items():
                self.tensors[name] = info
        self.tensors = {k: v for k, v in self.tensors.items() if not k.endswith(llama.ignore_suffixes)}
        expected = arch.llama_tensor_names(self.num_layers, self.tied)
        missing = [n for n in expected if n not in self.tensors]
        if self.tied and llama.checkpoint["head"] in self.tensors:
            self.tensors.pop(llama.checkpoint["head"])
        extra = sorted(set(self.tensors) - set(expected))
        if missing or extra:
            what = f"lacks {missing[0]}" if missing else f"has an unexpected tensor {extra[0]}"
            n = len(missing) + len(extra)
            raise CheckpointError(
                f"{label}: {folder} {what} ({n} name(s) differ from a plain Llama with {self.num_layers} layers); "
                f"give an unmodified {llama.architectures[0]} checkpoint"
            )

    def _weight_files(self, folder: Path) -> list[Path]:
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
                files = sorted({folder / f for f in weight_map.values()})
            except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
                raise CheckpointError(f"{self.label}: {index} is not a valid index ({exc}); re-save the checkpoint") from None
            for f in files:
                if not f.is_file():
                    raise CheckpointError(f"{self.label}: {f.name}, listed in {index}, is missing; copy the whole checkpoint")
            return files
        files = sorted(folder.glob("*.safetensors"))
        if files:
            return files
        if any(p.suffix in PICKLE_SUFFIXES for p in folder.iterdir()):
            raise CheckpointError(f"{self.label}: " + _pickle_hint(folder))
        raise CheckpointError(f"{self.label}: {folder} has no *.safetensors weights; give a save_pretrained checkpoint folder")

    @property
    def num_layers(self) -> int:
        return int(self.config.get("num_hidden_layers", 0))

    @property
    def tied(self) -> bool:
        return bool(self.config.get("tie_word_embeddings", False))

    def read_array(self, name: str, row_start: int | None = None, row_end: int | None = None) -> np.ndarray:
        """Tensor `name` (or rows [row_start, row_end)) as a fresh numpy array of its storage type
        (`STORAGE`: bfloat16 comes as its uint16 bit patterns), read with one `readinto`."""
        info = self.tensors[name]
        shape = list(info.shape)
        start, end = info.start, info.end
        if row_start is not None:
            row_bytes = (end - start) // max(shape[0], 1)
            row_end = shape[0] if row_end is None else row_end
            start, end = info.start + row_start * row_bytes, info.start + row_end * row_bytes
            shape[0] = row_end - row_start
        buf = bytearray(end - start)
        with open(info.file, "rb") as fh:
            fh.seek(start)
            got = fh.readinto(buf)
        if got != len(buf):
            raise CheckpointError(f"{self.label}: {info.file} ended early while reading {name}; the file is truncated")
        return np.frombuffer(buf, dtype=STORAGE[info.dtype]).reshape(shape)


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


TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "chat_template.jinja", "chat_template.json")


def _arch(ck: Checkpoint) -> dict[str, Any]:
    c = ck.config
    out = llama_fields(c)
    out["num_key_value_heads"] = c.get("num_key_value_heads") or c.get("num_attention_heads")
    out["head_dim"] = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    out["hidden_act"] = c.get("hidden_act", "silu")
    out["rope"] = normalized_rope(c)
    return out


def check_compatible(base: Checkpoint, experts: list[Checkpoint]) -> None:
    ref = _arch(base)
    for ck in experts:
        got = _arch(ck)
        for key, want in ref.items():
            if got[key] != want:
                raise CheckpointError(
                    f"{ck.label} ({ck.path}) differs from the base in {key} ({got[key]} vs {want}); "
                    "every expert must be trained from the base with its architecture and vocabulary"
                )
        for name, info in base.tensors.items():
            if ck.tensors[name].shape != info.shape:
                raise CheckpointError(
                    f"{ck.label} ({ck.path}): {name} has shape {list(ck.tensors[name].shape)}, "
                    f"the base {list(info.shape)}; every expert must have the base's shapes"
                )


def _tokenizer_vocab(path: Path) -> Any:
    try:
        tj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TokenizerError(f"{path} is not valid JSON ({exc}); re-save the tokenizer") from None
    return [tj.get("model"), tj.get("added_tokens")]


def tokenizer_source(base: Checkpoint, experts: list[Checkpoint]) -> Path:
    """The folder whose tokenizer is copied (the base's); refuses experts whose tokenizer differs.

    `tokenizer.model` must be byte-identical; `tokenizer.json` must hold the same model (vocab,
    merges) and added tokens (other fields, e.g. truncation settings, may differ).
    """
    files = ("tokenizer.model", "tokenizer.json")
    ref = {f: sha256_file(base.path / f) for f in files if (base.path / f).is_file()}
    if not ref:
        raise TokenizerError(f"base: {base.path} has no tokenizer (tokenizer.json or tokenizer.model); save it there")
    for ck in experts:
        for f in files:
            if f not in ref or not (ck.path / f).is_file() or sha256_file(ck.path / f) == ref[f]:
                continue
            if f == "tokenizer.json" and _tokenizer_vocab(ck.path / f) == _tokenizer_vocab(base.path / f):
                continue
            what = "SentencePiece model" if f == "tokenizer.model" else "vocabulary"
            raise TokenizerError(f"{ck.label} ({ck.path}) has a different tokenizer {what} from the base; "
                                 "experts must use the base's tokenizer")
    return base.path
