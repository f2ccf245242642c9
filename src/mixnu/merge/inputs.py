"""The inputs of `mixnu merge`: Llama-family checkpoint folders, read lazily, and their checks.

`Checkpoint` parses a folder (config.json + safetensors, sharded or not) by reading only each
file's safetensors header, and refuses anything missing, corrupt or not a plain Llama (the model
types, tensor names and ignored buffers come from `mixnu.arch`). `check_compatible` (experts vs
base: architecture fields, rope, shapes), `tokenizer_source` (same tokenizer) and
`experts_identical` run before anything is written; `open_inputs` does all of them for a
`MergeConfig`. Pickle checkpoints (`pytorch_model.bin`, `*.pt`) are refused, never unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mixnu import arch
from mixnu.arch.mixtral import llama_fields, normalized_rope
from mixnu.errors import CheckpointError, ConfigError, TokenizerError
from mixnu.io import check_output, sha256_file
from mixnu.merge.config import MergeConfig
from mixnu.merge.safetensors_stream import STORAGE, TensorInfo, read_header

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "chat_template.jinja", "chat_template.json")


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


def _arch_fields(ck: Checkpoint) -> dict[str, Any]:
    c = ck.config
    out = llama_fields(c)
    out["num_key_value_heads"] = c.get("num_key_value_heads") or c.get("num_attention_heads")
    out["head_dim"] = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    out["hidden_act"] = c.get("hidden_act", "silu")
    out["rope"] = normalized_rope(c)
    return out


def check_compatible(base: Checkpoint, experts: list[Checkpoint]) -> None:
    ref = _arch_fields(base)
    for ck in experts:
        got = _arch_fields(ck)
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


def experts_identical(experts: list[Checkpoint]) -> bool:
    """True if every expert's MLP tensors equal the first expert's bit for bit (stops at the first
    difference, usually the first tensor read; holds two tensors at a time)."""
    mlp = arch.load("llama").checkpoint["mlp"]
    for i in range(experts[0].num_layers):
        for template in mlp.values():
            name = template.format(layer=i)
            ref = experts[0].read_array(name)
            for ck in experts[1:]:
                other = ck.read_array(name)
                if other.dtype != ref.dtype or other.tobytes() != ref.tobytes():
                    return False
    return True


def input_files(cks: list[Checkpoint], extra: list[Path]) -> list[Path]:
    files: list[Path] = []
    for ck in cks:
        files += [ck.path / "config.json", *ck.weight_files]
        idx = ck.path / "model.safetensors.index.json"
        if idx.is_file():
            files.append(idx)
        files += [ck.path / f for f in TOKENIZER_FILES if (ck.path / f).is_file()]
    files += [p for p in extra if p is not None]
    return list(dict.fromkeys(files))


def open_inputs(cfg: MergeConfig) -> tuple[Path, Checkpoint, list[Checkpoint], Path]:
    if cfg.out is None:
        raise ConfigError("no output folder; pass --out DIR (or set out: in the config)")
    out = check_output(cfg.out, cfg.force)
    base = Checkpoint(cfg.base, "base")
    experts = [Checkpoint(e.path, f"expert '{e.name}'") for e in cfg.experts]
    check_compatible(base, experts)
    return out, base, experts, tokenizer_source(base, experts)
