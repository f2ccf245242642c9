"""Merge a Llama base and N Llama experts into one Mixtral MoE checkpoint: `mixnu merge`.

`merge_experts(MergeConfig) -> MergeResult` writes a folder that `AutoModelForCausalLM` loads and
that vLLM and llama.cpp's converter read: `config.json` (a MixtralConfig carrying every Llama
field), sharded safetensors under the hub names (`mixnu.arch`'s Mixtral `checkpoint` templates:
`model.layers.L.block_sparse_moe.experts.E.w1/w2/w3` = gate/down/up, `...block_sparse_moe.gate`) with `model.safetensors.index.json`, the tokenizer
(with `tokenizer.model`), `generation_config.json`, and a README model card with the merge config
and the sha256 of every input file. Each expert's MLP becomes expert E of every layer; attention,
norms, embeddings and head are the experts' mean (`shared: average`) or the base's (`shared: base`).

Streaming: every output name, dtype and shape is planned from the safetensors headers before any
data is read; then tensors are produced one at a time (large ones in row chunks) and written
straight into the shard files. Memory holds one tensor chunk (plus, for text-based router init,
one layer of weights and the sample's hidden states), never a shard or a model. Everything is
built in a temp folder beside the output and renamed at the end (`mixnu.io.atomic_dir`).

`average_experts(MergeConfig)` writes the plain weight average of the experts as a dense Llama.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import math
import re
import resource
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from mixnu import arch
from mixnu.arch.mixtral import mixtral_config
from mixnu.config import StageConfig, dump_config
from mixnu.console import progress
from mixnu.errors import CheckpointError, ConfigError
from mixnu.io import atomic_dir, check_output, sha256_file, write_json, write_text
from mixnu.merge_io import (
    OUT_TAGS,
    STORAGE,
    TOKENIZER_FILES,
    Checkpoint,
    ShardWriter,
    check_compatible,
    from_f32,
    from_torch,
    to_f32,
    to_torch,
    tokenizer_source,
)

CHUNK_ELEMS = 1 << 22  # elements per row chunk of a large tensor (4M: 32 MB as float64)



class RouterConfig(StageConfig):
    """How the routers start: `random` (seeded), `uniform` (zeros), or from text: `prompts`, `data`."""

    init: Literal["random", "uniform", "prompts", "data"] = "random"
    seed: int = 0
    samples: int = Field(64, ge=1, description="corpus lines sampled per expert for init: data")
    max_tokens: int = Field(128, ge=1, description="tokens kept per text for prompts/data init")


class ExpertSpec(StageConfig):
    """One expert: a name, a Llama checkpoint folder, and optional text for router init."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    path: Path
    corpus: Path | None = None
    prompts: list[str] = Field(default_factory=list)


class MergeConfig(StageConfig):
    """Settings of `mixnu merge` (the YAML keys of issue #5, plus output options)."""

    base: Path
    experts: list[ExpertSpec]
    experts_per_token: int = Field(2, ge=1)
    dtype: Literal["float32", "float16", "bfloat16"] = "bfloat16"
    shared: Literal["average", "base"] = "average"
    router: RouterConfig = Field(default_factory=RouterConfig)
    out: Path | None = None
    force: bool = False
    allow_identical: bool = Field(False, description="merge even if every expert's MLPs are identical")
    max_shard_mb: int = Field(4096, ge=1, description="largest output shard, in MB (10^6 bytes)")
    quiet: bool = True

    @field_validator("experts")
    @classmethod
    def _enough_experts(cls, v: list[ExpertSpec]) -> list[ExpertSpec]:
        if len(v) < 2:
            raise ValueError(f"a mixture needs at least 2 experts, got {len(v)}; add experts")
        names = [e.name for e in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"expert names must be unique; {dup[0]} appears twice")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> MergeConfig:
        if self.experts_per_token > len(self.experts):
            raise ValueError(f"experts_per_token={self.experts_per_token} exceeds the {len(self.experts)} experts")
        for e in self.experts:
            if self.router.init == "prompts" and not e.prompts:
                raise ValueError(f"router.init=prompts needs prompts for every expert; '{e.name}' has none")
            if self.router.init == "data" and e.corpus is None:
                raise ValueError(f"router.init=data needs a corpus for every expert; '{e.name}' has none")
        return self


@dataclass(frozen=True)
class MergeResult:
    """What a merge wrote, and what it cost."""

    out: Path
    kind: str  # "mixtral" or "dense-average"
    experts: tuple[str, ...]
    num_layers: int
    experts_per_token: int
    shared: str
    router_init: str
    dtype: str
    shards: tuple[str, ...]
    tensors: int
    parameters: int
    total_bytes: int
    identical_experts: bool
    max_held_bytes: int  # most tensor bytes held at once by the merge (chunks, layer weights, hidden states)
    peak_rss_mb: float  # the process's peak RSS so far (ru_maxrss), imports included
    wall_s: float


@dataclass
class _Out:
    """One planned output tensor: how to make it, and its layer (-1 outside layers)."""

    name: str
    shape: tuple[int, ...]
    kind: Literal["copy", "mean", "router"]
    sources: list[tuple[Checkpoint, str]]
    layer: int = -1
    role: str = ""  # "embed", "shared", "w1", "w2", "w3", "router"
    expert: int = -1


def _plan_moe(cfg: MergeConfig, base: Checkpoint, experts: list[Checkpoint]) -> list[_Out]:
    shared_src = [base] if cfg.shared == "base" else experts

    def shared(name: str, role: str, layer: int = -1) -> _Out:
        kind = "copy" if len(shared_src) == 1 else "mean"
        return _Out(name, base.tensors[name].shape, kind, [(ck, name) for ck in shared_src], layer, role)

    llama, moe = arch.load("llama").checkpoint, arch.load("mixtral").checkpoint
    plan = [shared(llama["embed"], "embed")]
    hidden = base.config["hidden_size"]
    for i in range(base.num_layers):
        plan += [shared(t.format(layer=i), "shared", i) for t in llama["attention"]]
        plan.append(_Out(moe["router"].format(layer=i), (len(experts), hidden), "router", [], i, "router"))
        # same projection of every expert in a row, so identical experts are detected holding one tensor
        for w in moe["expert_from_mlp"]:
            name = llama["mlp"][arch.expert_source(w)].format(layer=i)
            for e, ck in enumerate(experts):
                plan.append(_Out(moe["expert"].format(layer=i, expert=e, w=w), base.tensors[name].shape,
                                 "copy", [(ck, name)], i, w, e))
    plan += [shared(name, "shared") for name in llama["final"]]
    if not base.tied:
        plan.append(shared(llama["head"], "shared"))
    return plan


def _shards(plan: list[_Out], itemsize: int, max_bytes: int) -> list[list[_Out]]:
    shards: list[list[_Out]] = [[]]
    size = 0
    for o in plan:
        n = itemsize * math.prod(o.shape)
        if shards[-1] and size + n > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(o)
        size += n
    return shards


class _Producer:
    """Makes planned tensors chunk by chunk (numpy storage arrays) and keeps the memory accounting.

    Arithmetic is numpy: means are summed in float64, then rounded to float32 and to the output
    dtype (as torch's `.double().mean().to(dtype)` does), so the usual merge never imports torch;
    torch comes in only for the text-based router init.
    """

    def __init__(self, dtype: str, cfg: MergeConfig | None, base: Checkpoint, forward: Any) -> None:
        self.dtype = dtype
        self.tag = OUT_TAGS[dtype]
        self.cfg = cfg
        self.base = base
        self.forward = forward
        self.max_held = 0
        self.held_layer = 0
        self.layer: dict[str, Any] = {}

    def note(self, live: int) -> None:
        fwd = self.forward.held_bytes() if self.forward is not None else 0
        self.max_held = max(self.max_held, self.held_layer + fwd + live)

    def chunks(self, o: _Out):
        """Yield (row_start, storage array in the output dtype) for one planned tensor."""
        if o.kind == "router":
            yield 0, self.router(o)
            return
        rows = o.shape[0]
        per_row = max(1, (o.shape[1] if len(o.shape) > 1 else 1))
        step = max(1, CHUNK_ELEMS // per_row)
        for a in range(0, rows, step):
            b = min(rows, a + step)
            if o.kind == "copy":
                ck, name = o.sources[0]
                t = ck.read_array(name, a, b)
                tag = ck.tensors[name].dtype
                out = t if tag == self.tag else from_f32(to_f32(t, tag), self.dtype)
                self.note(t.nbytes + (out.nbytes if out is not t else 0))
            else:
                acc = None
                for ck, name in o.sources:
                    t = ck.read_array(name, a, b)
                    x = to_f32(t, ck.tensors[name].dtype).astype(np.float64)
                    if acc is None:
                        acc = x
                    else:
                        acc += x
                    self.note(t.nbytes + x.nbytes * 2)
                acc /= len(o.sources)
                out = from_f32(acc.astype(np.float32), self.dtype)
                del acc
            yield a, out

    def router(self, o: _Out) -> np.ndarray:
        init = self.cfg.router.init
        e, h = o.shape
        if init == "uniform":
            return from_f32(np.zeros((e, h), np.float32), self.dtype)
        if init == "random":
            std = float(self.base.config.get("initializer_range", 0.02))
            return from_f32(_router_init().random_router(e, h, self.cfg.router.seed, o.layer, std), self.dtype)
        llama = arch.load("llama").checkpoint
        pre = llama["layer"].format(layer=o.layer)
        weights = {name[len(pre):]: self.layer[name] for name in (t.format(layer=o.layer) for t in llama["attention"])}
        xs = self.forward.router_inputs(o.layer, weights)
        return from_torch(self.forward.centroid_router(xs), self.dtype)

    def keep(self, o: _Out, chunks: list[np.ndarray]) -> None:
        """Remember the layer's weights (as torch tensors) while a text-based router init needs them."""
        if self.forward is not None and o.layer >= 0:
            arr = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
            self.layer[o.name] = to_torch(arr, self.dtype)
            self.held_layer += arr.nbytes

    def end_layer(self, layer: int, num_experts: int) -> None:
        if self.forward is not None:
            moe = arch.load("mixtral").checkpoint  # experts as (w1, w2, w3) = (gate, down, up)
            experts = [tuple(self.layer[moe["expert"].format(layer=layer, expert=e, w=w)] for w in moe["expert_from_mlp"])
                       for e in range(num_experts)]
            self.forward.advance(self.layer[moe["router"].format(layer=layer)], experts)
        self.layer = {}
        self.held_layer = 0


def _router_init():
    from mixnu import router_init

    return router_init


def _write_weights(tmp: Path, plan: list[_Out], producer: _Producer, max_bytes: int, num_experts: int,
                   quiet: bool) -> tuple[list[str], int]:
    """Stream every planned tensor into shard files under `tmp`; write the index. Returns (shards, bytes)."""
    itemsize = np.dtype(STORAGE[producer.tag]).itemsize
    groups = _shards(plan, itemsize, max_bytes)
    names = [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
    weight_map: dict[str, str] = {}
    total = 0
    last_w = list(arch.load("mixtral").checkpoint["expert_from_mlp"])[-1]
    with progress(quiet, "tensors") as bar:
        task = bar.add_task("merge", total=len(plan))
        for fname, group in zip(names, groups, strict=True):
            writer = ShardWriter(tmp / fname, [(o.name, producer.dtype, o.shape) for o in group])
            for o in group:
                kept = []
                for row, chunk in producer.chunks(o):
                    writer.write(chunk)
                    if o.role == "embed" and producer.forward is not None:
                        producer.forward.embed_rows(to_torch(chunk, producer.dtype), row)
                    if producer.forward is not None and o.layer >= 0:
                        kept.append(chunk)
                producer.keep(o, kept)
                weight_map[o.name] = fname
                bar.advance(task)
                if o.role == last_w and o.expert == num_experts - 1:
                    producer.end_layer(o.layer, num_experts)
            writer.close()
            total += writer.total
    write_json(tmp / "model.safetensors.index.json",
               {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})
    return names, total


def _inputs(cks: list[Checkpoint], extra: list[Path]) -> list[Path]:
    files: list[Path] = []
    for ck in cks:
        files += [ck.path / "config.json", *ck.weight_files]
        idx = ck.path / "model.safetensors.index.json"
        if idx.is_file():
            files.append(idx)
        files += [ck.path / f for f in TOKENIZER_FILES if (ck.path / f).is_file()]
    files += [p for p in extra if p is not None]
    return list(dict.fromkeys(files))


def _copy_side_files(src: Path, tmp: Path, base_cfg: dict[str, Any]) -> None:
    for f in TOKENIZER_FILES:
        if (src / f).is_file():
            shutil.copyfile(src / f, tmp / f)
    if (src / "generation_config.json").is_file():
        shutil.copyfile(src / "generation_config.json", tmp / "generation_config.json")
    else:
        write_json(tmp / "generation_config.json", {
            "bos_token_id": base_cfg.get("bos_token_id"), "eos_token_id": base_cfg.get("eos_token_id"),
            "pad_token_id": base_cfg.get("pad_token_id")})


def _model_card(cfg: MergeConfig, kind: str, hashes: dict[Path, str], summary: list[str]) -> str:
    rows = "\n".join(f"| `{p}` | `{h}` |" for p, h in hashes.items())
    body = "\n".join(f"- {s}" for s in summary)
    title = "Mixtral mixture of experts" if kind == "mixtral" else "weight average of the experts"
    return (
        f"# {title}, built by `mixnu merge`\n\n{body}\n\n"
        "Load it with `AutoTokenizer.from_pretrained(path)` and `AutoModelForCausalLM.from_pretrained(path)`.\n\n"
        f"## Merge config\n\n```yaml\n{dump_config(cfg)}```\n\n"
        f"## Inputs (sha256)\n\n| file | sha256 |\n|---|---|\n{rows}\n"
    )


def _hash_files(paths: list[Path], stop: threading.Event) -> dict[Path, str]:
    """sha256 of each file, read in 4 MB blocks into one reused buffer; gives up when `stop` is set."""
    out = {}
    buf = bytearray(4 << 20)
    view = memoryview(buf)
    for p in paths:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            while (n := fh.readinto(buf)) and not stop.is_set():
                h.update(view[:n])
        out[p] = h.hexdigest()
    return out


def _experts_identical(experts: list[Checkpoint]) -> bool:
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


def _open_inputs(cfg: MergeConfig) -> tuple[Path, Checkpoint, list[Checkpoint], Path]:
    if cfg.out is None:
        raise ConfigError("no output folder; pass --out DIR (or set out: in the config)")
    out = check_output(cfg.out, cfg.force)
    base = Checkpoint(cfg.base, "base")
    experts = [Checkpoint(e.path, f"expert '{e.name}'") for e in cfg.experts]
    check_compatible(base, experts)
    return out, base, experts, tokenizer_source(base, experts)


def merge_experts(cfg: MergeConfig) -> MergeResult:
    """Merge `cfg.base` and `cfg.experts` into a Mixtral checkpoint folder at `cfg.out`.

    Inputs: Llama-family safetensors folders with equal architecture, shapes and tokenizer.
    Writes (atomically) `cfg.out/`: config.json, model-XXXXX-of-YYYYY.safetensors +
    model.safetensors.index.json, tokenizer files, generation_config.json, README.md.
    Raises `MixnuError` (nothing written) for bad inputs, and refuses identical experts unless
    `cfg.allow_identical`.
    """
    t0 = time.perf_counter()
    out, base, experts, tok_src = _open_inputs(cfg)
    corpora = [e.corpus for e in cfg.experts] if cfg.router.init == "data" else []
    inputs = _inputs([base, *experts], corpora)
    # hash every input on a second core while the merge runs (hashlib releases the GIL)
    pool, stop = concurrent.futures.ThreadPoolExecutor(1), threading.Event()
    hashing = pool.submit(_hash_files, inputs, stop)
    try:
        identical = _experts_identical(experts)
        if identical and not cfg.allow_identical:
            raise CheckpointError("all experts have identical MLP weights, so the mixture would be one model "
                                  "repeated; pass --allow-identical to merge anyway")
        forward = None
        if cfg.router.init in ("prompts", "data"):
            texts = _router_init().sample_texts(cfg.experts, cfg.router.init, cfg.router.samples, cfg.router.seed)
            forward = _router_init().TextForward(base.config, tok_src, texts, cfg.router.max_tokens,
                                                 cfg.experts_per_token)
        producer = _Producer(cfg.dtype, cfg, base, forward)
        plan = _plan_moe(cfg, base, experts)
        with atomic_dir(out, force=cfg.force) as tmp:
            shards, total = _write_weights(tmp, plan, producer, cfg.max_shard_mb * 10**6, len(experts), cfg.quiet)
            write_json(tmp / "config.json", mixtral_config(base.config, len(experts), cfg.experts_per_token, cfg.dtype))
            _copy_side_files(tok_src, tmp, base.config)
            params = sum(math.prod(o.shape) for o in plan)
            summary = [f"{len(experts)} experts ({', '.join(e.name for e in cfg.experts)}), top-{cfg.experts_per_token} "
                       f"routing, {base.num_layers} layers, {params:,} parameters in {cfg.dtype}",
                       f"shared weights (attention, norms, embeddings, head): {cfg.shared}",
                       f"router init: {cfg.router.init} (seed {cfg.router.seed})"]
            write_text(tmp / "README.md", _model_card(cfg, "mixtral", hashing.result(), summary))
    finally:
        stop.set()  # an error must not wait for gigabytes of hashing
        pool.shutdown(wait=True, cancel_futures=True)
    return MergeResult(out, "mixtral", tuple(e.name for e in cfg.experts), base.num_layers, cfg.experts_per_token,
                       cfg.shared, cfg.router.init, cfg.dtype, tuple(shards), len(plan), params, total,
                       identical, producer.max_held, _peak_rss_mb(), round(time.perf_counter() - t0, 3))


def average_experts(cfg: MergeConfig, out: str | Path | None = None) -> MergeResult:
    """Write the plain weight average of `cfg.experts` as a dense Llama folder (a baseline for the MoE).

    Every tensor is the mean of the experts' tensors (summed in float64, cast to `cfg.dtype`); the
    config is the base's (dtype updated), the tokenizer the base's. `out` overrides `cfg.out`.
    Writes the same side files as `merge_experts`; `cfg.router` and `cfg.shared` are ignored.
    """
    t0 = time.perf_counter()
    if out is not None:
        cfg = cfg.model_copy(update={"out": Path(out)})
    out_path, base, experts, tok_src = _open_inputs(cfg)
    inputs = _inputs([base, *experts], [])
    plan = [_Out(n, base.tensors[n].shape, "mean", [(ck, n) for ck in experts])
            for n in arch.llama_tensor_names(base.num_layers, base.tied)]
    producer = _Producer(cfg.dtype, None, base, None)
    with atomic_dir(out_path, force=cfg.force) as tmp:
        shards, total = _write_weights(tmp, plan, producer, cfg.max_shard_mb * 10**6, len(experts), cfg.quiet)
        dense = {k: v for k, v in base.config.items() if k not in ("torch_dtype", "transformers_version")}
        write_json(tmp / "config.json", {**dense, "dtype": cfg.dtype})
        _copy_side_files(tok_src, tmp, base.config)
        params = sum(math.prod(o.shape) for o in plan)
        summary = [f"mean of {len(experts)} experts ({', '.join(e.name for e in cfg.experts)}), {params:,} "
                   f"parameters in {cfg.dtype}"]
        write_text(tmp / "README.md", _model_card(cfg, "dense-average", {p: sha256_file(p) for p in inputs}, summary))
    return MergeResult(out_path, "dense-average", tuple(e.name for e in cfg.experts), base.num_layers, 0, "average",
                       "none", cfg.dtype, tuple(shards), len(plan), params, total, False, producer.max_held,
                       _peak_rss_mb(), round(time.perf_counter() - t0, 3))


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def parse_expert_flag(value: str) -> dict[str, str]:
    """`NAME=PATH` (from `--expert`) -> {"name", "path"}; a bare PATH is named after its folder."""
    if "=" in value:
        name, path = value.split("=", 1)
    else:
        path = value
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(value).name) or "expert"
    return {"name": name, "path": path}
