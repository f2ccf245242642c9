"""The training loop of `mixnu train`, litgpt's split: `setup` -> `fit` -> `finish`, called by `train`.

- `setup(cfg)`: the Accelerator (precision, DeepSpeed sizes), the model and its trainable parameters,
  the packed training blocks, the eval windows and the optimizer, all prepared by Accelerate.
- `resume_or_start(run)`: the step to start from (the latest checkpoint with `resume`) and the live log.
- `fit(run, step, resumed_from)`: the optimizer steps (micro-batches, masked rows, clipping), the log
  records (loss, lr, throughput, MoE expert load), evals and checkpoints on their cadence.
- `finish(run, stats)`: the final eval, `TrainResult`, and the output folder written atomically.

Seeds are set in the same order as one function did it before the split: `torch.manual_seed(cfg.seed)`
before the model loads, and a per-step seed before each step's micro-batches.
"""

from __future__ import annotations

import resource
import shutil
import time
from dataclasses import dataclass
from typing import Any

import torch

from mixnu import arch
from mixnu.config import dump_config
from mixnu.errors import CheckpointError, ConfigError
from mixnu.io import append_jsonl, atomic_dir, check_output, read_jsonl, write_json, write_jsonl, write_text
from mixnu.seeds import seed_for
from mixnu.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, save_final
from mixnu.train.config import TrainConfig, TrainResult, get_lr, step_tokens
from mixnu.train.data import batch_indices, pack_blocks, tokenize_docs
from mixnu.train.dist import make_accelerator
from mixnu.train.experts import ExpertLoad, shares
from mixnu.train.heldout import EvalSet, evaluate, load_eval
from mixnu.train.trainable import load_for_training, select_trainable, wrap_lora


@dataclass
class TrainRun:
    """What `setup` builds and `fit` / `finish` use: the prepared model and optimizer, the data, the counts."""

    cfg: TrainConfig
    accelerator: Any
    model: Any
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    masked: list[torch.nn.Parameter]  # new_rows: parameters whose rows below n_old get no update
    n_old: int
    moe: bool
    n_exp: int  # experts per layer (MoE) else 0
    top_k: int  # experts per token (MoE) else 0
    blocks: torch.Tensor  # (N, L) int64, every data file's blocks pooled
    evals: dict[str, EvalSet]
    pad_id: int
    precision: str  # "bf16" | "fp32"
    trainable_params: int
    total_params: int
    t_start: float

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def ckpt_dir(self):
        return self.cfg.ckpt_dir()

    @property
    def log_path(self):
        return self.cfg.ckpt_dir() / "log.jsonl"

    @property
    def per_step(self) -> int:
        """Blocks per optimizer step, all processes."""
        return self.cfg.batch_size * self.accelerator.num_processes * self.cfg.grad_accum

    def log(self, record: dict) -> None:
        if self.main:
            append_jsonl(self.log_path, record)


@dataclass(frozen=True)
class FitStats:
    """What `fit` leaves for `finish`: the step reached, the last logged loss, seconds in steps, evals, load."""

    step: int
    resumed_from: int | None
    last_loss: float
    train_time: float
    initial_eval: dict | None
    last_load: torch.Tensor | None  # (layers, experts) tokens per expert in the last log interval


def _precision(cfg: TrainConfig) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() and not cfg.cpu else "fp32"


def _check_engine(accelerator, cfg: TrainConfig) -> None:
    """Refuse modes a sharding engine cannot run; tell DeepSpeed the sizes (no dataloader is prepared)."""
    from accelerate.utils import DistributedType

    sharded = accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)
    if sharded and cfg.trainable in ("lora", "new_rows"):
        raise ConfigError(f"trainable={cfg.trainable} runs on one device or DDP; use all/mlp/router with ZeRO-3 or FSDP")
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        ds.update(train_micro_batch_size_per_gpu=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
                  train_batch_size=cfg.batch_size * cfg.grad_accum * accelerator.num_processes,
                  gradient_clipping=cfg.grad_clip)


def _train_blocks(cfg: TrainConfig, tokenizer) -> torch.Tensor:
    """(N, L) int64: every data file tokenised (cached) and packed into `seq_len` blocks, pooled."""
    part = "train" if not cfg.eval_data else "all"
    return torch.cat([pack_blocks(tokenize_docs(f, tokenizer, part=part, eval_fraction=cfg.eval_fraction,
                                                max_lines=cfg.max_lines, cache_dir=cfg.cache_dir), cfg.seq_len, str(f))
                      for f in cfg.data])


def setup(cfg: TrainConfig) -> TrainRun:
    """Refuse an existing `cfg.out` (unless `force`), then build everything the loop needs (`TrainRun`)."""
    t_start = time.perf_counter()
    check_output(cfg.out, cfg.force)
    precision = _precision(cfg)
    accelerator = make_accelerator(cfg.cpu, "bf16" if precision == "bf16" else "no", cfg.grad_accum, cfg.fsdp_config)
    _check_engine(accelerator, cfg)
    torch.manual_seed(cfg.seed)
    model, tokenizer = load_for_training(cfg.model, cfg)
    moe = arch.is_moe(model.config)
    if cfg.trainable == "lora":
        model = wrap_lora(model, cfg)
    groups, masked, n_old = select_trainable(model, cfg)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    total_params = sum(p.numel() for p in model.parameters())
    trainable_params = sum(p.numel() for g in groups for p in g["params"])
    blocks = _train_blocks(cfg, tokenizer)
    evals = load_eval(cfg, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    fused = accelerator.device.type == "cpu" or accelerator.device.type == "cuda"
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=fused or None)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    mcfg = accelerator.unwrap_model(model).config
    n_exp, top_k = (arch.num_experts(mcfg), arch.top_k(mcfg)) if moe else (0, 0)
    return TrainRun(cfg=cfg, accelerator=accelerator, model=model, tokenizer=tokenizer, optimizer=optimizer,
                    masked=masked, n_old=n_old, moe=moe, n_exp=n_exp, top_k=top_k, blocks=blocks, evals=evals,
                    pad_id=pad_id, precision=precision, trainable_params=trainable_params,
                    total_params=total_params, t_start=t_start)


def resume_or_start(run: TrainRun) -> tuple[int, int | None]:
    """(first step, resumed-from step or None). With `resume`: load the latest checkpoint (`CheckpointError`
    if none) and cut the live log back to it; else start a fresh `<out>.ckpt/` with an empty log."""
    cfg = run.cfg
    if cfg.resume:
        ckpt = latest_checkpoint(run.ckpt_dir)
        if ckpt is None:
            raise CheckpointError(f"no checkpoint to resume in {run.ckpt_dir}; run without --resume to start fresh")
        step = int(load_checkpoint(ckpt, run.model, run.optimizer, cfg, run.accelerator)["step"])
        if run.main:
            kept = [r for r in read_jsonl(run.log_path) if r.get("step", 0) <= step] if run.log_path.exists() else []
            write_jsonl(run.log_path, kept)
        return step, step
    if run.main:
        run.ckpt_dir.mkdir(parents=True, exist_ok=True)
        write_jsonl(run.log_path, [])
        write_text(run.ckpt_dir / "train_config.yaml", dump_config(cfg))
    return 0, None


def _train_step(run: TrainRun, step: int, lr: float, load: ExpertLoad | None) -> list[float]:
    """One optimizer step over `grad_accum` micro-batches of `batch_size` blocks per process; their losses."""
    cfg, acc = run.cfg, run.accelerator
    P, B = acc.num_processes, cfg.batch_size
    for g in run.optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
    torch.manual_seed(seed_for(cfg.seed, step * P + acc.process_index))  # dropout etc.
    idx = batch_indices(step * run.per_step, run.per_step, run.blocks.shape[0], cfg.seed)
    losses = []
    for micro in range(cfg.grad_accum):
        mine = idx[(micro * P + acc.process_index) * B:][:B]
        x = run.blocks[mine].to(acc.device)  # (B, L)
        with acc.accumulate(run.model):
            out = run.model(input_ids=x, labels=x, use_cache=False)
            acc.backward(out.loss)
            if acc.sync_gradients:
                for p in run.masked:  # new_rows: old vocabulary rows get no update
                    p.grad[:run.n_old] = 0
                if cfg.grad_clip > 0:
                    acc.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
            run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)
        losses.append(float(out.loss.detach()))
        if load is not None:
            load.add(out)
    return losses


def _log_step(run: TrainRun, step: int, lr: float, loss_sum: float, n_micro: int, load: ExpertLoad | None,
              resumed_from: int | None, train_time: float) -> float:
    """Write one log record (mean loss over processes, lr, tokens, throughput, expert load); the mean loss."""
    acc, L = run.accelerator, run.cfg.seq_len
    loss = float(acc.reduce(torch.tensor(loss_sum / n_micro, device=acc.device), "mean"))
    rec = {"step": step, "loss": loss, "lr": lr, "tokens": step * run.per_step * L,
           "tokens_per_s": round(step_tokens(step, resumed_from, run.per_step, L) / max(train_time, 1e-9), 1)}
    if load is not None:  # tokens per expert summed over processes, as shares per layer
        rec.update(load.flush(acc, n_micro))
    run.log(rec)
    return loss


def fit(run: TrainRun, step: int, resumed_from: int | None) -> FitStats:
    """Train from `step` to `cfg.steps`: log every `log_every`, eval every `eval_every`, save every `save_every`."""
    from mixnu.console import progress

    cfg, acc = run.cfg, run.accelerator
    tokens = run.per_step * cfg.seq_len  # per optimizer step, all processes
    initial_eval = None
    if cfg.eval_at_start and resumed_from is None:
        initial_eval = evaluate(run.model, run.evals, cfg, run.pad_id, acc)
        run.log({"step": 0, "eval": initial_eval})
    run.log({"event": "start", "step": step, "num_processes": acc.num_processes, "device": str(acc.device),
             "precision": run.precision, "trainable": cfg.trainable, "trainable_params": run.trainable_params,
             "total_params": run.total_params, "train_blocks": int(run.blocks.shape[0]), "tokens_per_step": tokens})
    load = ExpertLoad(run.top_k, run.n_exp) if run.moe else None
    loss_sum, n_micro, last_loss, train_time = 0.0, 0, float("nan"), 0.0
    with progress(cfg.quiet or not run.main, "tok") as bar:
        task = bar.add_task("train", total=cfg.steps * tokens, completed=step * tokens)
        while step < cfg.steps:
            t0 = time.perf_counter()
            lr = get_lr(step, cfg)
            for loss in _train_step(run, step, lr, load):
                loss_sum += loss
                n_micro += 1
            step += 1
            train_time += time.perf_counter() - t0
            bar.advance(task, tokens)
            if step % cfg.log_every == 0 or step == cfg.steps:
                last_loss = _log_step(run, step, lr, loss_sum, n_micro, load, resumed_from, train_time)
                bar.update(task, description=f"train loss {last_loss:.3f}")
                loss_sum, n_micro = 0.0, 0
            if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
                run.log({"step": step, "eval": evaluate(run.model, run.evals, cfg, run.pad_id, acc)})
            if cfg.save_every and step % cfg.save_every == 0:
                save_checkpoint(run.ckpt_dir / f"step-{step:07d}", run.model, run.optimizer, step,
                                step * run.per_step, cfg, acc, lr)
    return FitStats(step=step, resumed_from=resumed_from, last_loss=last_loss, train_time=train_time,
                    initial_eval=initial_eval, last_load=load.last if load is not None else None)


def _peak_memory_mb(device) -> float:
    """Peak CUDA memory allocated, else this process's peak resident set size (Linux: KiB), in MiB."""
    if torch.cuda.is_available() and device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _write_output(run: TrainRun, result: TrainResult) -> None:
    """The output folder (model, tokenizer, log, config, result), atomically; every process joins the gather."""
    cfg, acc = run.cfg, run.accelerator
    if not run.main:
        save_final(run.model, run.tokenizer, cfg, acc, cfg.out, run.moe)  # joins the gather; writes nothing
        return
    with atomic_dir(cfg.out, force=cfg.force) as tmp:
        save_final(run.model, run.tokenizer, cfg, acc, tmp, run.moe)
        shutil.copy(run.log_path, tmp / "train_log.jsonl")
        write_text(tmp / "train_config.yaml", dump_config(cfg))
        write_json(tmp / "train_result.json", result)
    if not cfg.save_every:
        shutil.rmtree(run.ckpt_dir, ignore_errors=True)


def finish(run: TrainRun, stats: FitStats) -> TrainResult:
    """Final eval, the `TrainResult`, and `cfg.out` written (then the live `<out>.ckpt/` removed unless
    `save_every`)."""
    cfg, acc, step = run.cfg, run.accelerator, stats.step
    eval_res = evaluate(run.model, run.evals, cfg, run.pad_id, acc)
    run.log({"step": step, "eval": eval_res})
    tokens_per_s = step_tokens(step, stats.resumed_from, run.per_step, cfg.seq_len) / max(stats.train_time, 1e-9)
    last = stats.last_load
    result = TrainResult(out=cfg.out, steps=step, tokens=step * run.per_step * cfg.seq_len, train_loss=stats.last_loss,
                         eval=eval_res, tokens_per_s=round(tokens_per_s, 1),
                         wall_s=round(time.perf_counter() - run.t_start, 2),
                         peak_memory_mb=round(_peak_memory_mb(acc.device), 1), num_processes=acc.num_processes,
                         trainable_params=run.trainable_params, total_params=run.total_params,
                         log=cfg.out / "train_log.jsonl", resumed_from=stats.resumed_from,
                         initial_eval=stats.initial_eval,
                         expert_load=shares(last) if last is not None and last.numel() else None)
    run.log({"event": "end", "step": step, "tokens_per_s": result.tokens_per_s, "peak_memory_mb": result.peak_memory_mb})
    acc.wait_for_everyone()
    _write_output(run, result)
    acc.wait_for_everyone()
    return result


def train(cfg: TrainConfig) -> TrainResult:
    """Continue-pretrain `cfg.model` on `cfg.data`; write the trained checkpoint folder `cfg.out`.

    Reads: the model folder, data files (tokenised once, cached under `cache_dir`). Writes: `cfg.out`
    (atomically, at the end) and `<out>.ckpt/` (live log, checkpoints; removed at the end when
    `save_every` is 0). With `resume`, continues from the latest checkpoint there, refusing one
    written with a different config (`CheckpointError`). Returns a `TrainResult`.
    """
    run = setup(cfg)
    step, resumed_from = resume_or_start(run)
    return finish(run, fit(run, step, resumed_from))
