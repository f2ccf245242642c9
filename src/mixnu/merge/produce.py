"""Making and writing the planned tensors: `Producer` (chunked numpy arithmetic, router init),
`write_weights` (shards + index), and the side files (tokenizer, generation config, model card).

Arithmetic is numpy: means are summed in float64, then rounded to float32 and to the output dtype
(as torch's `.double().mean().to(dtype)` does), so the usual merge never imports torch; torch
comes in only for the text-based router init (`mixnu.merge.router_init`). Large tensors are made
in row chunks of `CHUNK_ELEMS` elements, written straight into the shard file.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np

from mixnu import arch
from mixnu.config import dump_config
from mixnu.console import progress
from mixnu.io import write_json
from mixnu.merge import router_init
from mixnu.merge.config import MergeConfig
from mixnu.merge.inputs import TOKENIZER_FILES, Checkpoint
from mixnu.merge.layout import Planned, shard_groups
from mixnu.merge.safetensors_stream import (
    OUT_TAGS,
    STORAGE,
    ShardWriter,
    from_f32,
    from_torch,
    to_f32,
    to_torch,
)

CHUNK_ELEMS = 1 << 22  # elements per row chunk of a large tensor (4M: 32 MB as float64)


class Producer:
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

    def chunks(self, o: Planned):
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

    def router(self, o: Planned) -> np.ndarray:
        init = self.cfg.router.init
        e, h = o.shape
        if init == "uniform":
            return from_f32(np.zeros((e, h), np.float32), self.dtype)
        if init == "random":
            std = float(self.base.config.get("initializer_range", 0.02))
            return from_f32(router_init.random_router(e, h, self.cfg.router.seed, o.layer, std), self.dtype)
        llama = arch.load("llama").checkpoint
        pre = llama["layer"].format(layer=o.layer)
        weights = {name[len(pre):]: self.layer[name] for name in (t.format(layer=o.layer) for t in llama["attention"])}
        xs = self.forward.router_inputs(o.layer, weights)
        return from_torch(self.forward.centroid_router(xs), self.dtype)

    def keep(self, o: Planned, chunks: list[np.ndarray]) -> None:
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


def write_weights(tmp: Path, plan: list[Planned], producer: Producer, max_bytes: int, num_experts: int,
                   quiet: bool) -> tuple[list[str], int]:
    """Stream every planned tensor into shard files under `tmp`; write the index. Returns (shards, bytes)."""
    itemsize = np.dtype(STORAGE[producer.tag]).itemsize
    groups = shard_groups(plan, itemsize, max_bytes)
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


def copy_side_files(src: Path, tmp: Path, base_cfg: dict[str, Any]) -> None:
    for f in TOKENIZER_FILES:
        if (src / f).is_file():
            shutil.copyfile(src / f, tmp / f)
    if (src / "generation_config.json").is_file():
        shutil.copyfile(src / "generation_config.json", tmp / "generation_config.json")
    else:
        write_json(tmp / "generation_config.json", {
            "bos_token_id": base_cfg.get("bos_token_id"), "eos_token_id": base_cfg.get("eos_token_id"),
            "pad_token_id": base_cfg.get("pad_token_id")})


def model_card(cfg: MergeConfig, kind: str, hashes: dict[Path, str], summary: list[str]) -> str:
    rows = "\n".join(f"| `{p}` | `{h}` |" for p, h in hashes.items())
    body = "\n".join(f"- {s}" for s in summary)
    title = "Mixtral mixture of experts" if kind == "mixtral" else "weight average of the experts"
    return (
        f"# {title}, built by `mixnu merge`\n\n{body}\n\n"
        "Load it with `AutoTokenizer.from_pretrained(path)` and `AutoModelForCausalLM.from_pretrained(path)`.\n\n"
        f"## Merge config\n\n```yaml\n{dump_config(cfg)}```\n\n"
        f"## Inputs (sha256)\n\n| file | sha256 |\n|---|---|\n{rows}\n"
    )


def hash_files(paths: list[Path], stop: threading.Event) -> dict[Path, str]:
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
