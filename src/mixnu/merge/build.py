"""The merge's entry points: `merge_experts` (Mixtral MoE) and `average_experts` (dense mean).

Both open and check the inputs (`mixnu.merge.inputs`), plan the output (`mixnu.merge.layout`),
stream it into a temp folder beside the output (`mixnu.merge.produce`, `mixnu.io.atomic_dir`) and
rename it at the end, so nothing is half-written.
"""

from __future__ import annotations

import concurrent.futures
import math
import resource
import threading
import time
from pathlib import Path

from mixnu.arch.mixtral import mixtral_config
from mixnu.errors import CheckpointError
from mixnu.io import atomic_dir, sha256_file, write_json, write_text
from mixnu.merge import router_init
from mixnu.merge.config import MergeConfig, MergeResult
from mixnu.merge.inputs import experts_identical, input_files, open_inputs
from mixnu.merge.layout import average_layout, moe_layout
from mixnu.merge.produce import Producer, copy_side_files, hash_files, model_card, write_weights


def merge_experts(cfg: MergeConfig) -> MergeResult:
    """Merge `cfg.base` and `cfg.experts` into a Mixtral checkpoint folder at `cfg.out`.

    Inputs: Llama-family safetensors folders with equal architecture, shapes and tokenizer.
    Writes (atomically) `cfg.out/`: config.json, model-XXXXX-of-YYYYY.safetensors +
    model.safetensors.index.json, tokenizer files, generation_config.json, README.md.
    Raises `MixnuError` (nothing written) for bad inputs, and refuses identical experts unless
    `cfg.allow_identical`.
    """
    t0 = time.perf_counter()
    out, base, experts, tok_src = open_inputs(cfg)
    corpora = [e.corpus for e in cfg.experts] if cfg.router.init == "data" else []
    inputs = input_files([base, *experts], corpora)
    # hash every input on a second core while the merge runs (hashlib releases the GIL)
    pool, stop = concurrent.futures.ThreadPoolExecutor(1), threading.Event()
    hashing = pool.submit(hash_files, inputs, stop)
    try:
        identical = experts_identical(experts)
        if identical and not cfg.allow_identical:
            raise CheckpointError("all experts have identical MLP weights, so the mixture would be one model "
                                  "repeated; pass --allow-identical to merge anyway")
        forward = None
        if cfg.router.init in ("prompts", "data"):
            texts = router_init.sample_texts(cfg.experts, cfg.router.init, cfg.router.samples, cfg.router.seed)
            forward = router_init.TextForward(base.config, tok_src, texts, cfg.router.max_tokens,
                                                 cfg.num_experts_per_tok)
        producer = Producer(cfg.dtype, cfg, base, forward)
        plan = moe_layout(cfg, base, experts)
        with atomic_dir(out, force=cfg.force) as tmp:
            shards, total = write_weights(tmp, plan, producer, cfg.max_shard_mb * 10**6, len(experts), cfg.quiet)
            write_json(tmp / "config.json", mixtral_config(base.config, len(experts), cfg.num_experts_per_tok, cfg.dtype))
            copy_side_files(tok_src, tmp, base.config)
            params = sum(math.prod(o.shape) for o in plan)
            summary = [f"{len(experts)} experts ({', '.join(e.name for e in cfg.experts)}), top-{cfg.num_experts_per_tok} "
                       f"routing, {base.num_layers} layers, {params:,} parameters in {cfg.dtype}",
                       f"shared weights (attention, norms, embeddings, head): {cfg.shared}",
                       f"router init: {cfg.router.init} (seed {cfg.router.seed})"]
            write_text(tmp / "README.md", model_card(cfg, "mixtral", hashing.result(), summary))
    finally:
        stop.set()  # an error must not wait for gigabytes of hashing
        pool.shutdown(wait=True, cancel_futures=True)
    return MergeResult(out, "mixtral", tuple(e.name for e in cfg.experts), base.num_layers, cfg.num_experts_per_tok,
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
    out_path, base, experts, tok_src = open_inputs(cfg)
    inputs = input_files([base, *experts], [])
    plan = average_layout(base, experts)
    producer = Producer(cfg.dtype, None, base, None)
    with atomic_dir(out_path, force=cfg.force) as tmp:
        shards, total = write_weights(tmp, plan, producer, cfg.max_shard_mb * 10**6, len(experts), cfg.quiet)
        dense = {k: v for k, v in base.config.items() if k not in ("torch_dtype", "transformers_version")}
        write_json(tmp / "config.json", {**dense, "dtype": cfg.dtype})
        copy_side_files(tok_src, tmp, base.config)
        params = sum(math.prod(o.shape) for o in plan)
        summary = [f"mean of {len(experts)} experts ({', '.join(e.name for e in cfg.experts)}), {params:,} "
                   f"parameters in {cfg.dtype}"]
        write_text(tmp / "README.md", model_card(cfg, "dense-average", {p: sha256_file(p) for p in inputs}, summary))
    return MergeResult(out_path, "dense-average", tuple(e.name for e in cfg.experts), base.num_layers, 0, "average",
                       "none", cfg.dtype, tuple(shards), len(plan), params, total, False, producer.max_held,
                       _peak_rss_mb(), round(time.perf_counter() - t0, 3))


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
