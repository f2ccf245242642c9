"""Export a HF model folder (dense Llama or our Mixtral) to GGUF with llama.cpp's own converter.

`mixnu export gguf MODEL OUT --llama-cpp PATH` runs llama.cpp's `convert_hf_to_gguf.py` (the
reference converter; we do not re-implement it). `PATH` may be:
- a llama.cpp checkout (a folder holding `convert_hf_to_gguf.py`);
- the `llama-cpp-python` sdist, as its `.tar.gz` or unpacked (the converter is vendored under
  `vendor/llama.cpp/`). From a tarball only the converter's pure-Python files are extracted, once,
  into a cache folder (`$MIXNU_CACHE/llama-cpp/<tarball name>`, default `~/.cache/mixnu`).

The converter runs in a subprocess with the current interpreter (it needs torch, transformers,
numpy, sentencepiece: all mixnu dependencies) and imports the `gguf` package vendored beside it,
so its GGUF writer matches the converter's version. It writes to a temp file beside `OUT` that is
renamed when complete. Models the converter does not know, or tokenizers whose pre-tokenizer it does
not recognise, fail with its last error line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from mixnu.config import StageConfig
from mixnu.errors import CheckpointError, MixnuError
from mixnu.io import check_output

CONVERTER = "convert_hf_to_gguf.py"
_VENDOR = "vendor/llama.cpp"
# What the converter imports: itself, the gguf package beside it, and (newer llama.cpp) conversion/.
_KEEP = (CONVERTER, "gguf-py/", "conversion/")


class ConverterNotFoundError(MixnuError):
    """No llama.cpp `convert_hf_to_gguf.py` at the given path."""


class ExportGgufConfig(StageConfig):
    """What `export_gguf` converts, with which converter, to what."""

    model: Path = Field(description="HF model folder (LlamaForCausalLM or MixtralForCausalLM + tokenizer)")
    out: Path = Field(description="output .gguf file")
    llama_cpp: Path = Field(description="llama.cpp checkout, or the llama-cpp-python sdist (.tar.gz or unpacked)")
    outtype: Literal["f32", "f16", "bf16", "q8_0"] = "f32"
    force: bool = False
    timeout_s: float = Field(1800, gt=0, description="give up on the converter after this long")


@dataclass(frozen=True)
class ExportGgufResult:
    out: Path
    converter: Path
    outtype: str
    bytes: int
    seconds: float


def cache_root() -> Path:
    """`$MIXNU_CACHE`, else `~/.cache/mixnu`."""
    return Path(os.environ.get("MIXNU_CACHE") or Path.home() / ".cache" / "mixnu")


def find_converter(path: str | Path, cache: Path | None = None) -> Path:
    """Path of `convert_hf_to_gguf.py` in a llama.cpp checkout or a llama-cpp-python sdist (file or folder).

    Raises `ConverterNotFoundError` (one line) if none is there.
    """
    path = Path(path)
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        return _from_tarball(path, cache or cache_root() / "llama-cpp")
    if path.is_file() and path.name == CONVERTER:
        return path
    if path.is_dir():
        for cand in (path / CONVERTER, path / _VENDOR / CONVERTER, *path.glob(f"*/{_VENDOR}/{CONVERTER}")):
            if cand.is_file():
                return cand
    raise ConverterNotFoundError(
        f"{path}: no llama.cpp converter ({CONVERTER}) there; pass a llama.cpp checkout or the llama-cpp-python "
        "sdist (pip download --no-deps --no-binary llama-cpp-python llama-cpp-python)")


def _from_tarball(tarball: Path, cache: Path) -> Path:
    """Extract the converter's Python files from an sdist tarball into `cache/<name>/` (once)."""
    dest = cache / tarball.name.removesuffix(".tar.gz").removesuffix(".tgz")
    done = dest / ".complete"
    if done.is_file():
        return dest / CONVERTER
    try:
        with tarfile.open(tarball) as tf:
            members = []
            for m in tf.getmembers():
                rel = m.name.split("/", 1)[1] if "/" in m.name else ""
                if rel.startswith(_VENDOR + "/") and (m.isfile() or m.isdir()):
                    inner = rel[len(_VENDOR) + 1:]
                    if inner.startswith(_KEEP):
                        m.name = inner
                        members.append(m)
            if not any(m.name == CONVERTER for m in members):
                raise ConverterNotFoundError(f"{tarball}: no {_VENDOR}/{CONVERTER} inside this tarball")
            tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
            tf.extractall(tmp, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ConverterNotFoundError(f"{tarball}: cannot read the tarball ({exc})") from None
    (tmp / ".complete").write_text(str(tarball) + "\n")
    if dest.exists():  # another process finished first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, dest)
    return dest / CONVERTER


def export_gguf(cfg: ExportGgufConfig) -> ExportGgufResult:
    """Run llama.cpp's converter on `cfg.model`; write `cfg.out` (atomically). See the module docstring.

    Raises `ConverterNotFoundError`, `CheckpointError` (not a model folder, or the converter failed:
    its last error line is quoted) and `OutputExistsError`.
    """
    t0 = time.perf_counter()
    check_output(cfg.out, cfg.force)
    if not (cfg.model / "config.json").is_file():
        raise CheckpointError(f"{cfg.model}: not a HF model folder (no config.json)")
    converter = find_converter(cfg.llama_cpp)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = cfg.out.with_name(f".{cfg.out.name}.{os.getpid()}.tmp")
    cmd = [sys.executable, str(converter), str(cfg.model), "--outfile", str(tmp), "--outtype", cfg.outtype]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(converter.parent / "gguf-py"),
                                                         os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=cfg.timeout_s)
        if proc.returncode != 0 or not tmp.is_file():
            raise CheckpointError(f"{cfg.model}: llama.cpp's converter failed ({_last_error(proc.stderr)})")
        os.replace(tmp, cfg.out)
    except subprocess.TimeoutExpired:
        raise CheckpointError(f"{cfg.model}: llama.cpp's converter took over {cfg.timeout_s:.0f} s") from None
    finally:
        tmp.unlink(missing_ok=True)
    return ExportGgufResult(out=cfg.out, converter=converter, outtype=cfg.outtype, bytes=cfg.out.stat().st_size,
                            seconds=round(time.perf_counter() - t0, 1))


def _last_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "error" in ln:
            return ln[:240]
    return (lines[-1] if lines else "no output")[:240]
