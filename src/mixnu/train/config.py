"""What one `mixnu train` run takes and gives: `TrainConfig`, `TrainResult`, the lr schedule, token counts."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from mixnu.config import StageConfig

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
                                     "itself (CPU processes under torchrun); see mixnu.train.dist")
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


def step_tokens(step: int, resumed_from: int | None, per_step: int, seq_len: int) -> int:
    """Tokens trained in this process's run (since the resume point), all processes together."""
    return (step - (resumed_from or 0)) * per_step * seq_len
