"""Turn a GGUF file into a plain Hugging Face model folder: `mixnu import-gguf FILE OUT`.

Many users hold a model only as a llama.cpp GGUF file (often quantized, e.g. Q4_1). mixnu's stages
read plain HF folders, so this converts one: transformers reads the GGUF (`gguf_file=`; needs the
`gguf` package), which dequantizes every tensor to float32. transformers refuses `save_pretrained`
on a model loaded that way (it carries a GGUF quantization config), so the weights are copied into a
fresh model built from the same config without that quantization config, and saved from there.

Only architectures we have checked end to end are accepted (`SUPPORTED`: Llama, which covers
SmolLM2, TinyLlama, Llama-2/3). Anything else is refused before the slow load with one line.

Writes `out/`: `model.safetensors` (float32 by default), `config.json`, `generation_config.json`,
the tokenizer rebuilt from the GGUF's vocabulary (`tokenizer.json`, `tokenizer_config.json` with the
chat template), `README.md` (a model card naming the source file, its sha256, its quantization and
that the weights were dequantized: the folder is *not* the original full-precision model), and
`mixnu_import.json` (the same facts, machine-readable). Time: ~3.5 min for SmolLM2-135M Q4_1 on a
loaded 2-core CPU (measured 2026-11-30), most of it dequantization.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from mixnu.config import StageConfig
from mixnu.errors import CheckpointError
from mixnu.hf import first_line, quiet_transformers
from mixnu.io import atomic_dir, check_output, sha256_file, write_json, write_text
from mixnu.text import LLAMA_SPECIAL_CONFIG

SUPPORTED = ("llama",)


class ImportGgufConfig(StageConfig):
    """What `import_gguf` reads and writes."""

    gguf: Path = Field(description="a .gguf file (any llama.cpp quantization transformers can dequantize)")
    out: Path = Field(description="output HF model folder")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    source: str | None = Field(None, description="where the file came from (recorded in the model card)")
    force: bool = False
    quiet: bool = Field(False, description="no progress bars (transformers' dequantizing and saving bars)")


@dataclass(frozen=True)
class ImportGgufResult:
    out: Path
    architecture: str
    name: str | None
    file_type: str
    sha256: str
    parameters: int
    vocab_size: int
    dtype: str
    seconds: float


@dataclass(frozen=True)
class GgufInfo:
    """Header facts of a GGUF file, read without loading its tensors."""

    architecture: str
    name: str | None
    file_type: str  # e.g. "MOSTLY_Q4_1"
    tensors: int
    fields: dict[str, Any]


def read_gguf_info(path: str | Path) -> GgufInfo:
    """Read the header (architecture, name, file type) of a GGUF file; `CheckpointError` if unreadable."""
    from gguf import GGUFReader, LlamaFileType

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such GGUF file")
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise CheckpointError(f"{path}: not a GGUF file (it does not start with the GGUF magic bytes)")
    try:
        reader = GGUFReader(path)
    except (ValueError, OSError, KeyError) as exc:
        first = first_line(exc)
        raise CheckpointError(f"{path}: a truncated or damaged GGUF file ({first})") from None
    fields: dict[str, Any] = {}
    for key, fld in reader.fields.items():
        if key.startswith("tokenizer.ggml.") and key not in ("tokenizer.ggml.model", "tokenizer.ggml.pre"):
            continue  # vocab arrays: large and not needed here
        try:
            fields[key] = fld.contents()
        except (ValueError, IndexError, TypeError):
            continue
    arch = str(fields.get("general.architecture", "?"))
    ftype = fields.get("general.file_type")
    try:
        ftype_name = LlamaFileType(int(ftype)).name if ftype is not None else "unknown"
    except ValueError:
        ftype_name = f"type {ftype}"
    return GgufInfo(architecture=arch, name=fields.get("general.name"), file_type=ftype_name,
                    tensors=len(reader.tensors), fields=fields)


def check_supported(path: Path, info: GgufInfo) -> None:
    """Refuse architectures import-gguf has not been checked on (one line, before the slow load)."""
    if info.architecture not in SUPPORTED:
        raise CheckpointError(
            f"{path}: GGUF architecture '{info.architecture}' is not supported by import-gguf "
            f"(supported: {', '.join(SUPPORTED)}); convert it with its own tools to a HF folder instead")
    if info.fields.get(f"{info.architecture}.expert_count"):
        raise CheckpointError(f"{path}: a mixture-of-experts GGUF ({info.fields[f'{info.architecture}.expert_count']} "
                              "experts) cannot be imported; only dense Llama GGUF files are supported")


def is_quantized(file_type: str) -> bool:
    """Whether a GGUF file type (`LlamaFileType` name, e.g. `MOSTLY_Q4_1`) stores quantized weights."""
    return file_type.removeprefix("MOSTLY_") not in ("ALL_F32", "F16", "BF16")


@contextlib.contextmanager
def _dequantize_bar(show: bool) -> Iterator[None]:
    """transformers' "Converting and de-quantizing GGUF tensors" bar (plain tqdm, which transformers'
    progress-bar switch does not reach) only when `show`."""
    if show:
        yield
        return
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    original = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def load_dequantized(path: Path, dtype: str = "float32", quiet: bool = False) -> tuple[Any, Any]:
    """(model, tokenizer) from a GGUF file, weights dequantized, as a plain (saveable) transformers model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = path.parent, path.name
    try:
        with quiet_transformers(), _dequantize_bar(not quiet):
            tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (OSError, ValueError, RuntimeError, KeyError, NotImplementedError) as exc:
        first = first_line(exc)
        raise CheckpointError(f"{path}: transformers cannot read this GGUF ({first})") from None
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = dtype
    with quiet_transformers():
        fresh = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    if getattr(config, "tie_word_embeddings", False):
        fresh.tie_weights()
        missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise CheckpointError(f"{path}: the GGUF's tensors do not match the model "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    fresh.generation_config = loaded.generation_config
    return fresh.eval(), tok


def _plain_tokenizer_class(folder: Path) -> None:
    """`tokenizer_class: PreTrainedTokenizerFast` (what `mixnu tokenizer extend` writes) instead of transformers
    5's `TokenizersBackend`, which transformers 4 cannot load; drops the loader's `is_local` /
    `local_files_only` keys, which describe how this run loaded the file, not the tokenizer."""
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("tokenizer_class") == "TokenizersBackend":
        data["tokenizer_class"] = LLAMA_SPECIAL_CONFIG["tokenizer_class"]
    for key in ("is_local", "local_files_only"):
        data.pop(key, None)
    write_json(path, data)


def model_card(cfg: ImportGgufConfig, info: GgufInfo, sha: str, params: int) -> str:
    """The README.md of an imported folder: provenance first (what it came from, what was lost)."""
    source = cfg.source or str(cfg.gguf)
    quant = info.file_type.removeprefix("MOSTLY_")
    lossy = is_quantized(info.file_type)
    return "\n".join([
        f"# {info.name or cfg.gguf.stem} (imported from GGUF by mixnu)",
        "",
        f"- Source: `{source}`",
        f"- GGUF file: `{cfg.gguf.name}`, sha256 `{sha}`",
        f"- Architecture: {info.architecture}; {params:,} parameters; {info.tensors} tensors in the GGUF",
        f"- GGUF weight type: {quant}. "
        + (f"**The weights were dequantized from {quant} to {cfg.dtype}**: this folder holds the quantized "
           "model's values, not the original full-precision weights."
           if lossy else f"Weights converted to {cfg.dtype}."),
        "- Tokenizer: rebuilt by transformers from the GGUF's vocabulary, merges and chat template.",
        f"- Converted with `mixnu import-gguf` (transformers `gguf_file=` loading) on {time.strftime('%Y-%m-%d')}.",
        f"- Licence: {info.fields.get('general.license') or 'that of the source model'} (see the source's own card).",
        "",
    ])


def import_gguf(cfg: ImportGgufConfig) -> ImportGgufResult:
    """Convert `cfg.gguf` to a HF folder at `cfg.out` (see the module docstring for what is written).

    Raises `CheckpointError` for a missing/unreadable file or an unsupported architecture, and
    `OutputExistsError` if `out` exists without `force`.
    """
    t0 = time.perf_counter()
    check_output(cfg.out, cfg.force)
    info = read_gguf_info(cfg.gguf)
    check_supported(cfg.gguf, info)
    sha = sha256_file(cfg.gguf)
    model, tok = load_dequantized(cfg.gguf, cfg.dtype, cfg.quiet)
    params = sum(p.numel() for p in model.parameters())
    with atomic_dir(cfg.out, force=cfg.force) as tmp:
        with quiet_transformers():
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
        _plain_tokenizer_class(tmp)
        write_text(tmp / "README.md", model_card(cfg, info, sha, params))
        result = ImportGgufResult(out=cfg.out, architecture=info.architecture, name=info.name,
                                  file_type=info.file_type, sha256=sha, parameters=params,
                                  vocab_size=int(model.config.vocab_size), dtype=cfg.dtype,
                                  seconds=round(time.perf_counter() - t0, 1))
        write_json(tmp / "mixnu_import.json", {**result.__dict__, "out": None, "gguf": str(cfg.gguf),
                                               "source": cfg.source or str(cfg.gguf),
                                               "dequantized": is_quantized(info.file_type)})
    return result
