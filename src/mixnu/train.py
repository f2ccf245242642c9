"""Continued pretraining of one model (one expert, or a MoE's routers): `mixnu train`.

One readable loop on Hugging Face Accelerate (nanoGPT's shape: config, setup, batches, eval, lr, loop).
The same code runs on one CPU, under `torchrun` / `accelerate launch` with DDP (gloo or NCCL), and on
GPUs with DeepSpeed ZeRO-3 or FSDP, which Accelerate sets up from its config file.

- Model: any `AutoModelForCausalLM` folder (Llama, Mixtral, ...). For a MoE (`mixnu.arch.is_moe`: the
  config names a number of experts) the router logits are returned, Mixtral's load-balancing loss times
  `router_aux_loss_coef` is part of the loss, and the share of tokens each expert receives per layer is logged.
- Data: corpus files pooled into fixed-length blocks (`mixnu.train_data`), read in a seeded order.
- What trains (`trainable`): all | embeddings | new_rows | lora | mlp | router | router_and_all.
- Written to disk: `out/` (a plain checkpoint folder: safetensors, config, tokenizer, `train_log.jsonl`,
  `train_config.yaml`, `train_result.json`), built in a temp folder and renamed at the end; while
  training, `<out>.ckpt/` holds the live `log.jsonl` and `step-NNNNNNN/` checkpoints (each written atomically).
"""

from __future__ import annotations

import hashlib
import json
import math
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, model_validator

from mixnu import arch
from mixnu.config import StageConfig, dump_config
from mixnu.errors import CheckpointError, ConfigError
from mixnu.hf import first_line, quiet_transformers
from mixnu.io import (
    append_jsonl,
    atomic_dir,
    check_output,
    read_corpus,
    read_jsonl,
    write_json,
    write_jsonl,
    write_text,
)
from mixnu.scoring import Window, bits_per_char, run_windows, tokenize_domain
from mixnu.text import body_ids
from mixnu.train_ckpt import latest_checkpoint, load_checkpoint, save_checkpoint, save_final
from mixnu.train_data import batch_indices, pack_blocks, split_docs, tokenize_docs
from mixnu.train_dist import make_accelerator

Trainable = Literal["all", "embeddings", "new_rows", "lora", "mlp", "router", "router_and_all"]
_NOT_IN_HASH = {"resume", "force", "quiet", "cache_dir", "checkpoint_dir"}


class TrainConfig(StageConfig):
    """Everything one training run needs (a recipe YAML holds these keys)."""

    model: Path = Field(description="checkpoint folder to start from (any AutoModelForCausalLM)")
    data: list[Path] = Field(min_length=1, description="training corpus files, pooled and shuffled")
    out: Path = Field(description="output checkpoint folder")
    eval_data: list[Path] | None = Field(None, description="held-out files; default: the tail of each data file")
    eval_fraction: float = Field(0.02, gt=0, lt=0.5, description="share of documents held out when no eval_data")
    eval_tokens: int = Field(32768, ge=16, description="at most this many eval tokens per eval file")
    max_lines: int | None = Field(None, ge=1, description="read at most this many documents per data file")
    seq_len: int = Field(256, ge=8, le=131072)
    batch_size: int = Field(8, ge=1, description="blocks per device per micro-step")
    grad_accum: int = Field(1, ge=1, le=4096)
    steps: int = Field(ge=1, le=10_000_000, description="optimizer steps")
    lr: float = Field(3e-4, gt=0, le=1.0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1.0, description="cosine decays to lr * min_lr_ratio")
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.1, ge=0, le=1.0)
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 = no clipping")
    trainable: Trainable = "all"
    new_rows_start: int | None = Field(None, ge=0, description="first new vocabulary row (default: from expand)")
    lora_r: int = Field(8, ge=1)
    lora_alpha: float = Field(16.0, gt=0)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_targets: list[str] | str = "all-linear"
    router_aux_loss_coef: float | None = Field(None, ge=0, description="MoE load-balancing loss weight")
    router_lr: float | None = Field(None, gt=0, le=1.0, description="router lr for router_and_all (default lr)")
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    gradient_checkpointing: bool = False
    eval_every: int = Field(0, ge=0, description="evaluate every N steps (0: only at the end)")
    eval_at_start: bool = False
    eval_batch_size: int = Field(8, ge=1)
    log_every: int = Field(10, ge=1)
    save_every: int = Field(0, ge=0, description="checkpoint every N steps (0: none)")
    checkpoint_dir: Path | None = Field(None, description="default: <out>.ckpt")
    cache_dir: Path | None = Field(None, description="tokenised-data cache (default ~/.cache/mixnu/tokenized)")
    seed: int = 0
    cpu: bool = False
    fsdp_config: Path | None = Field(None, description="Accelerate config file whose FSDP settings mixnu applies "
                                     "itself (CPU processes under torchrun); see mixnu.train_dist")
    resume: bool = False
    force: bool = False
    quiet: bool = False

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.warmup_steps >= self.steps and self.warmup_steps > 0:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be below steps ({self.steps})")
        return self

    def fingerprint(self) -> str:
        """Hash of every field that changes the loss curve (resume refuses a different one)."""
        data = {k: v for k, v in self.model_dump(mode="json").items() if k not in _NOT_IN_HASH}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def ckpt_dir(self) -> Path:
        return self.checkpoint_dir or self.out.with_name(self.out.name + ".ckpt")


@dataclass(frozen=True)
class TrainResult:
    """What a run did. `eval` holds loss/bpc per eval file and `"all"`; `initial_eval` the same at step 0."""

    out: Path
    steps: int
    tokens: int
    train_loss: float
    eval: dict[str, dict[str, float]]
    tokens_per_s: float
    wall_s: float
    peak_memory_mb: float
    num_processes: int
    trainable_params: int
    total_params: int
    log: Path
    resumed_from: int | None = None
    initial_eval: dict[str, dict[str, float]] | None = None
    expert_load: list[list[float]] | None = field(default=None)


def get_lr(step: int, cfg: TrainConfig) -> float:
    """Linear warmup over `warmup_steps`, then cosine from `lr` to `lr * min_lr_ratio` at `steps`."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    span = max(1, cfg.steps - cfg.warmup_steps)
    ratio = min(1.0, (step - cfg.warmup_steps) / span)
    min_lr = cfg.lr * cfg.min_lr_ratio
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - min_lr)


def load_model(path: Path, cfg: TrainConfig | None = None):
    """Model and tokenizer from a checkpoint folder; `CheckpointError` (one line) if missing or corrupt."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: not a checkpoint folder (no config.json); give a save_pretrained folder")
    try:
        config = AutoConfig.from_pretrained(path)
        kwargs = {}
        if arch.is_moe(config):
            keys = arch.load("mixtral").config
            kwargs[keys["output_router_logits"]] = True
            if cfg is not None and cfg.router_aux_loss_coef is not None:
                kwargs[keys["aux_loss_coef"]] = cfg.router_aux_loss_coef
        with quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path}: cannot load the checkpoint ({first_line(exc, 200)})") from None
    return model, tokenizer


def select_trainable(model, cfg: TrainConfig) -> tuple[list[dict], list[torch.nn.Parameter], int]:
    """Set `requires_grad` per `cfg.trainable`; return optimizer param groups, row-masked params, old rows.

    `new_rows` trains the input and output embeddings but zeroes the gradient of rows below
    `new_rows_start` (and disables weight decay there), so old rows stay bit-identical.
    """
    moe = arch.is_moe(model.config)
    if cfg.trainable in ("router", "router_and_all") and not moe:
        raise ConfigError(f"trainable={cfg.trainable} needs a MoE model (num_local_experts); {cfg.model} is dense")
    mlp = "." + arch.load("llama").module["mlp"] + "."  # a Llama mlp or a MoE block (router, experts)
    emb = {id(model.get_input_embeddings().weight)}
    head = model.get_output_embeddings()
    if head is not None:
        emb.add(id(head.weight))
    n_old = 0
    if cfg.trainable == "new_rows":
        n_old = cfg.new_rows_start if cfg.new_rows_start is not None else _expanded_from(cfg.model)
        if not 0 < n_old < model.get_input_embeddings().weight.shape[0]:
            raise ConfigError(f"new_rows_start={n_old} leaves no new rows to train in {cfg.model}")
    if cfg.trainable == "lora":
        return _lora_groups(model, cfg), [], 0
    decay, no_decay, router, masked = [], [], [], []
    for name, p in model.named_parameters():
        if cfg.trainable in ("all", "router_and_all"):
            on = True
        elif cfg.trainable in ("embeddings", "new_rows"):
            on = id(p) in emb
        elif cfg.trainable == "mlp":
            on = mlp in name and not arch.is_router_param(name)
        else:  # router
            on = arch.is_router_param(name)
        p.requires_grad_(on)
        if not on:
            continue
        if cfg.trainable == "router_and_all" and arch.is_router_param(name):
            router.append(p)
        elif cfg.trainable == "new_rows":
            masked.append(p)
            no_decay.append(p)
        elif p.ndim >= 2:
            decay.append(p)
        else:
            no_decay.append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay, "lr_scale": 1.0},
              {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0}]
    if router:
        groups.append({"params": router, "weight_decay": 0.0, "lr_scale": (cfg.router_lr or cfg.lr) / cfg.lr})
    return [g for g in groups if g["params"]], masked, n_old


def _expanded_from(model_dir: Path) -> int:
    info = Path(model_dir) / "mixnu_expand.json"
    if not info.is_file():
        raise ConfigError(f"{model_dir} has no mixnu_expand.json; pass new_rows_start (the base vocab size)")
    return int(json.loads(info.read_text())["base_vocab_size"])


def _lora_groups(model, cfg: TrainConfig) -> list[dict]:
    return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": 0.0, "lr_scale": 1.0}]


def _wrap_lora(model, cfg: TrainConfig):
    from peft import LoraConfig, get_peft_model

    names = arch.load("llama").module
    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.lora_targets, modules_to_save=[names["embed"], names["head"]],
                      task_type="CAUSAL_LM")
    return get_peft_model(model, lcfg)


@dataclass(frozen=True)
class EvalSet:
    """One held-out file as `mixnu.perplexity` scores it: its windows and its character count."""

    windows: list[Window]
    chars: int


def _leading_docs(tokenizer, docs: list[str], max_tokens: int) -> list[str]:
    """The leading documents whose scored tokens (text + BOS) add up to at most `max_tokens` (at least one)."""
    kept, n = [], 0
    for i in range(0, len(docs), 64):
        chunk = docs[i: i + 64]
        for text, ids in zip(chunk, body_ids(tokenizer, chunk), strict=True):
            n += len(ids) + 1
            if kept and n > max_tokens:
                return kept
            kept.append(text)
    return kept


def _load_eval(cfg: TrainConfig, tokenizer) -> dict[str, EvalSet]:
    """Held-out documents per eval file (`eval_data`, else the tail of each data file), cut into windows of
    `seq_len` tokens with stride `seq_len // 2` exactly as `mixnu ppl --max-length seq_len` cuts them."""
    out = {}
    for f in cfg.eval_data or cfg.data:
        docs = read_corpus(f, max_lines=None if cfg.eval_data else cfg.max_lines)
        if not cfg.eval_data:
            docs = split_docs(docs, "eval", cfg.eval_fraction)
        docs = _leading_docs(tokenizer, docs, cfg.eval_tokens)
        name = Path(f).name
        out[name] = EvalSet(tokenize_domain(tokenizer, name, docs, cfg.seq_len, cfg.seq_len // 2),
                            sum(len(d) for d in docs))
    return out


def evaluate(model, evals: dict[str, EvalSet], cfg: TrainConfig, pad_id: int, accelerator) -> dict:
    """Loss (nats per scored token) and bits/char per eval file and overall.

    Bits/char is `mixnu.perplexity`'s one definition (each document scored as BOS + text, EOS not
    scored, characters without newlines), computed by the same `run_windows`, so the final figure
    equals `mixnu ppl --max-length <seq_len>` on the same text. Windows are sharded over processes
    and the sums reduced.
    """
    model.eval()
    out, tot_nats, tot_tok, tot_chars = {}, 0.0, 0, 0
    r, p = accelerator.process_index, accelerator.num_processes
    for name, ev in evals.items():
        per = -(-len(ev.windows) // p)
        mine = ev.windows[r * per: (r + 1) * per]
        # every process runs the same number of batches (FSDP/ZeRO-3 gather weights in each forward):
        # fill up with windows that score nothing
        mine += [Window(name, [pad_id, pad_id], [-100, -100])] * (per - len(mine))
        nats, count = run_windows(model, mine, cfg.eval_batch_size).get(name, (0.0, 0))
        sums = accelerator.reduce(torch.tensor([nats, float(count)], dtype=torch.float64,
                                               device=accelerator.device), reduction="sum")
        nats, count = float(sums[0]), int(sums[1])
        out[name] = {"loss": nats / max(count, 1), "bpc": bits_per_char(nats, ev.chars)}
        tot_nats, tot_tok, tot_chars = tot_nats + nats, tot_tok + count, tot_chars + ev.chars
    out["all"] = {"loss": tot_nats / max(tot_tok, 1), "bpc": bits_per_char(tot_nats, tot_chars)}
    model.train()
    return out


def _expert_counts(router_logits, top_k: int, n_exp: int) -> torch.Tensor:
    """(layers, experts) count of tokens routed to each expert (top-k) in one forward pass."""
    rows = [torch.bincount(r.detach().topk(top_k, dim=-1).indices.flatten(), minlength=n_exp) for r in router_logits]
    return torch.stack(rows).cpu()


def train(cfg: TrainConfig) -> TrainResult:
    """Continue-pretrain `cfg.model` on `cfg.data`; write the trained checkpoint folder `cfg.out`.

    Reads: the model folder, data files (tokenised once, cached under `cache_dir`). Writes: `cfg.out`
    (atomically, at the end) and `<out>.ckpt/` (live log, checkpoints; removed at the end when
    `save_every` is 0). With `resume`, continues from the latest checkpoint there, refusing one
    written with a different config. Returns a `TrainResult`.
    """
    from accelerate.utils import DistributedType

    t_start = time.perf_counter()
    check_output(cfg.out, cfg.force)
    mp = cfg.precision
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() and not cfg.cpu else "fp32"
    accelerator = make_accelerator(cfg.cpu, "bf16" if mp == "bf16" else "no", cfg.grad_accum, cfg.fsdp_config)
    main = accelerator.is_main_process
    sharded = accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)
    if sharded and cfg.trainable in ("lora", "new_rows"):
        raise ConfigError(f"trainable={cfg.trainable} runs on one device or DDP; use all/mlp/router with ZeRO-3 or FSDP")
    if accelerator.distributed_type == DistributedType.DEEPSPEED:  # no dataloader is prepared: say the sizes
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        ds.update(train_micro_batch_size_per_gpu=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
                  train_batch_size=cfg.batch_size * cfg.grad_accum * accelerator.num_processes,
                  gradient_clipping=cfg.grad_clip)
    ckpt_dir = cfg.ckpt_dir()
    log_path = ckpt_dir / "log.jsonl"

    # ---- model, trainable parameters, data ----
    torch.manual_seed(cfg.seed)
    model, tokenizer = load_model(cfg.model, cfg)
    moe = arch.is_moe(model.config)
    if cfg.trainable == "lora":
        model = _wrap_lora(model, cfg)
    groups, masked, n_old = select_trainable(model, cfg)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    total_params = sum(p.numel() for p in model.parameters())
    trainable_params = sum(p.numel() for g in groups for p in g["params"])
    blocks = torch.cat([pack_blocks(tokenize_docs(f, tokenizer, part="train" if not cfg.eval_data else "all",
                                                  eval_fraction=cfg.eval_fraction, max_lines=cfg.max_lines,
                                                  cache_dir=cfg.cache_dir), cfg.seq_len, str(f))
                        for f in cfg.data])  # (N, L) int64, every file's blocks pooled
    evals = _load_eval(cfg, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)

    fused = accelerator.device.type == "cpu" or accelerator.device.type == "cuda"
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=fused or None)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()

    # ---- resume ----
    step, resumed_from = 0, None
    if cfg.resume:
        ckpt = latest_checkpoint(ckpt_dir)
        if ckpt is None:
            raise CheckpointError(f"no checkpoint to resume in {ckpt_dir}; run without --resume to start fresh")
        step = resumed_from = int(load_checkpoint(ckpt, model, optimizer, cfg, accelerator)["step"])
        if main:
            kept = [r for r in read_jsonl(log_path) if r.get("step", 0) <= step] if log_path.exists() else []
            write_jsonl(log_path, kept)
    elif main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        write_jsonl(log_path, [])
        write_text(ckpt_dir / "train_config.yaml", dump_config(cfg))

    def log(record: dict) -> None:
        if main:
            append_jsonl(log_path, record)

    P, B, A, L = accelerator.num_processes, cfg.batch_size, cfg.grad_accum, cfg.seq_len
    per_step = B * P * A  # blocks per optimizer step, all processes
    initial_eval = None
    if cfg.eval_at_start and resumed_from is None:
        initial_eval = evaluate(model, evals, cfg, pad_id, accelerator)
        log({"step": 0, "eval": initial_eval})
    log({"event": "start", "step": step, "num_processes": P, "device": str(accelerator.device),
         "precision": mp, "trainable": cfg.trainable, "trainable_params": trainable_params,
         "total_params": total_params, "train_blocks": int(blocks.shape[0]), "tokens_per_step": per_step * L})

    # ---- the loop ----
    from mixnu.console import progress

    mcfg = accelerator.unwrap_model(model).config
    n_exp, top_k = (arch.num_experts(mcfg), arch.top_k(mcfg)) if moe else (0, 0)
    load, last_load = torch.zeros(0), None
    loss_acc, aux_acc, n_acc, last_loss, train_time = 0.0, 0.0, 0, float("nan"), 0.0
    with progress(cfg.quiet or not main, "tok") as bar:
        task = bar.add_task("train", total=cfg.steps * per_step * L, completed=step * per_step * L)
        while step < cfg.steps:
            t0 = time.perf_counter()
            lr = get_lr(step, cfg)
            for g in optimizer.param_groups:
                g["lr"] = lr * g.get("lr_scale", 1.0)
            torch.manual_seed(cfg.seed * 1_000_003 + step * P + accelerator.process_index)  # dropout etc.
            idx = batch_indices(step * per_step, per_step, blocks.shape[0], cfg.seed)
            for micro in range(A):
                mine = idx[(micro * P + accelerator.process_index) * B:][:B]
                x = blocks[mine].to(accelerator.device)  # (B, L)
                with accelerator.accumulate(model):
                    out = model(input_ids=x, labels=x, use_cache=False)
                    accelerator.backward(out.loss)
                    if accelerator.sync_gradients:
                        for p in masked:  # new_rows: old vocabulary rows get no update
                            p.grad[:n_old] = 0
                        if cfg.grad_clip > 0:
                            accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                loss_acc += float(out.loss.detach())
                n_acc += 1
                if moe and out.router_logits is not None:
                    counts = _expert_counts(out.router_logits, top_k, n_exp)
                    load = counts if load.numel() == 0 else load + counts
                    aux_acc += float(out.aux_loss.detach()) if out.aux_loss is not None else 0.0
            step += 1
            train_time += time.perf_counter() - t0
            bar.advance(task, per_step * L)
            if step % cfg.log_every == 0 or step == cfg.steps:
                mean = accelerator.reduce(torch.tensor(loss_acc / n_acc, device=accelerator.device), "mean")
                last_loss = float(mean)
                rec = {"step": step, "loss": last_loss, "lr": lr, "tokens": step * per_step * L,
                       "tokens_per_s": round(step_tokens(step, resumed_from, per_step, L) / max(train_time, 1e-9), 1)}
                if moe and load.numel():  # tokens per expert summed over processes, as shares per layer
                    load = accelerator.reduce(load.to(accelerator.device), "sum").cpu()
                    rec["expert_load"] = (load / load.sum(1, keepdim=True)).round(decimals=4).tolist()
                    rec["aux_loss"] = aux_acc / n_acc  # load-balancing loss before router_aux_loss_coef
                log(rec)
                bar.update(task, description=f"train loss {last_loss:.3f}")
                loss_acc, n_acc, aux_acc = 0.0, 0, 0.0
                last_load, load = (load.clone(), torch.zeros(0)) if moe else (None, load)
            if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
                log({"step": step, "eval": evaluate(model, evals, cfg, pad_id, accelerator)})
            if cfg.save_every and step % cfg.save_every == 0:
                save_checkpoint(ckpt_dir / f"step-{step:07d}", model, optimizer, step, step * per_step, cfg,
                                accelerator, lr)

    eval_res = evaluate(model, evals, cfg, pad_id, accelerator)
    log({"step": step, "eval": eval_res})
    tokens_per_s = step_tokens(step, resumed_from, per_step, L) / max(train_time, 1e-9)
    if torch.cuda.is_available() and accelerator.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    expert_load = None
    if last_load is not None and last_load.numel():
        expert_load = (last_load / last_load.sum(1, keepdim=True)).round(decimals=4).tolist()
    result = TrainResult(out=cfg.out, steps=step, tokens=step * per_step * L, train_loss=last_loss, eval=eval_res,
                         tokens_per_s=round(tokens_per_s, 1), wall_s=round(time.perf_counter() - t_start, 2),
                         peak_memory_mb=round(peak, 1), num_processes=P, trainable_params=trainable_params,
                         total_params=total_params, log=cfg.out / "train_log.jsonl", resumed_from=resumed_from,
                         initial_eval=initial_eval, expert_load=expert_load)
    if main:
        log({"event": "end", "step": step, "tokens_per_s": result.tokens_per_s, "peak_memory_mb": result.peak_memory_mb})
    accelerator.wait_for_everyone()
    if main:
        with atomic_dir(cfg.out, force=cfg.force) as tmp:
            save_final(model, tokenizer, cfg, accelerator, tmp, moe)
            shutil.copy(log_path, tmp / "train_log.jsonl")
            write_text(tmp / "train_config.yaml", dump_config(cfg))
            write_json(tmp / "train_result.json", result)
        if not cfg.save_every:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
    else:
        save_final(model, tokenizer, cfg, accelerator, cfg.out, moe)  # joins the gather; writes nothing
    accelerator.wait_for_everyone()
    return result


def step_tokens(step: int, resumed_from: int | None, per_step: int, seq_len: int) -> int:
    """Tokens trained in this process's run (since the resume point), all processes together."""
    return (step - (resumed_from or 0)) * per_step * seq_len
