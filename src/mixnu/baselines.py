"""The baselines a skeptic puts beside a BTX MoE, each trained with `mixnu.train.train`: `train_baselines`.

BTX (Sukhbaatar et al. 2024, "Branch-Train-MiX") is judged against dense training with matched
compute and against sparse upcycling, not only against its own base. Given the BTX run's budget,
this module trains, from the same base checkpoint and on the same data as the router stage:

- `dense (same steps)`: the base, all parameters, for `expert_steps + route.steps` optimizer steps,
  i.e. as many sequential steps as the BTX pipeline takes when the experts train in parallel;
- `dense (same tokens)`: the base for as many tokens as the experts (all of them together) and the
  router stage saw, i.e. `ceil((E * expert_steps * expert_batch + route.steps * route_batch) /
  route_batch)` steps at the router stage's batch;
- `sparse upcycling` (Komatsuzaki et al. 2023, "Sparse Upcycling: Training Mixture-of-Experts from
  Dense Checkpoints"): a Mixtral made of E copies of the base's MLP (`merge_experts` with the base as
  every expert, random routers), trained with the router stage's config and budget, all parameters
  (`router_and_all`) even when the router stage trains only routers (identical experts would stay so).

Every run uses the router stage's settings (`route`: data, batch, sequence length, lr, warmup,
weight decay, seed); the dense runs train all parameters without the load-balancing loss.
`model_cost` gives each model's parameters, active parameters and forward FLOPs per token.

Written to disk: `out/dense-same-steps/`, `out/dense-same-tokens/`, `out/upcycled-init/` (the
untrained upcycled MoE) and `out/upcycled/`, each a checkpoint folder written by `train` / `merge`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from mixnu import arch
from mixnu.config import StageConfig
from mixnu.train import RouteConfig, TrainConfig, TrainResult, train, train_router

Baseline = Literal["dense_same_steps", "dense_same_tokens", "sparse_upcycling"]
LABELS: dict[str, str] = {"dense_same_steps": "dense (same steps)", "dense_same_tokens": "dense (same tokens)",
                          "sparse_upcycling": "sparse upcycling"}
FOLDERS = {"dense_same_steps": "dense-same-steps", "dense_same_tokens": "dense-same-tokens",
            "sparse_upcycling": "upcycled"}


class BaselinesConfig(StageConfig):
    """The BTX run's budget, and which baselines to train against it."""

    base: Path = Field(description="the dense checkpoint the experts branched from")
    route: RouteConfig = Field(description="the BTX router stage's config (its model and out are not used)")
    out: Path = Field(description="folder for the baselines' checkpoints")
    experts: int = Field(ge=2, description="number of experts E of the BTX MoE")
    num_experts_per_tok: int = Field(2, ge=1)
    expert_steps: int = Field(ge=0, description="optimizer steps of each expert (they train in parallel)")
    expert_batch_size: int = Field(ge=1, description="blocks per expert step (batch size x grad_accum)")
    which: list[Baseline] = Field(["dense_same_steps", "dense_same_tokens", "sparse_upcycling"], min_length=1)


@dataclass(frozen=True)
class BaselinesResult:
    """Label (`LABELS`) -> checkpoint folder, training result and optimizer steps."""

    models: dict[str, Path]
    train: dict[str, TrainResult]
    steps: dict[str, int]


def budget_steps(cfg: BaselinesConfig) -> dict[str, int]:
    """Optimizer steps of each baseline at the router stage's batch (see the module docstring)."""
    route_batch = cfg.route.batch_size * cfg.route.grad_accum
    tokens_blocks = cfg.experts * cfg.expert_steps * cfg.expert_batch_size + cfg.route.steps * route_batch
    return {"dense_same_steps": cfg.expert_steps + cfg.route.steps,
            "dense_same_tokens": math.ceil(tokens_blocks / route_batch),
            "sparse_upcycling": cfg.route.steps}


def upcycle(base: Path, experts: int, num_experts_per_tok: int, out: Path, seed: int = 0) -> Path:
    """A Mixtral whose every expert is the base's MLP (random routers): sparse upcycling's start."""
    from mixnu.merge import ExpertSpec, MergeConfig, RouterConfig, merge_experts

    merge_experts(MergeConfig(base=base, experts=[ExpertSpec(name=f"copy{i}", path=base) for i in range(experts)],
                              num_experts_per_tok=num_experts_per_tok, dtype="float32", shared="base",
                              router=RouterConfig(init="random", seed=seed), allow_identical=True, out=out,
                              force=True, quiet=True))
    return out


def train_baselines(cfg: BaselinesConfig) -> BaselinesResult:
    """Train `cfg.which` from `cfg.base` with the router stage's settings; see the module docstring.

    Raises what `train`, `train_router` and `merge_experts` raise (one-line `MixnuError`s for bad input).
    """
    steps = budget_steps(cfg)
    models, results = {}, {}
    for kind in cfg.which:
        out = cfg.out / FOLDERS[kind]
        common = {"out": out, "steps": steps[kind], "force": True}
        if kind == "sparse_upcycling":
            start = upcycle(cfg.base, cfg.experts, cfg.num_experts_per_tok, cfg.out / "upcycled-init", cfg.route.seed)
            res = train_router(cfg.route.model_copy(update={"model": start, "trainable": "router_and_all",
                                                            **common})).train
        else:
            fields = cfg.route.model_dump() | {"model": cfg.base, "trainable": "all", "router_aux_loss_coef": None,
                                               "router_lr": None, **common}
            res = train(TrainConfig.model_validate(fields))
        models[LABELS[kind]], results[LABELS[kind]] = out, res
    return BaselinesResult(models=models, train=results, steps={LABELS[k]: steps[k] for k in cfg.which})


def model_cost(config: Any, seq_len: int) -> dict[str, int]:
    """Parameters, active parameters per token and forward FLOPs per token of a Llama/Mixtral config.

    Uses `mixnu.plan`'s formulas: active = the parameters with only `num_experts_per_tok` MLPs per
    layer; forward FLOPs per token = 2 * (active parameters doing matmuls, i.e. all but an untied
    input embedding) + 4 * layers * hidden * seq_len (attention scores and values over a context of
    `seq_len`; PaLM's training count 12 * L * h * s is three forward passes).
    """
    from mixnu.plan import Architecture, param_counts

    a = Architecture(hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
                     num_hidden_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
                     num_key_value_heads=getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
                     vocab_size=config.vocab_size, tie_word_embeddings=bool(config.tie_word_embeddings))
    experts = arch.num_experts(config) or 1
    top_k = (arch.top_k(config) or 1) if experts > 1 else None
    total = param_counts(a, a.vocab_size, experts)
    active = param_counts(a, a.vocab_size, experts, top_k)
    matmul = active - (0 if a.tie_word_embeddings else a.vocab_size * a.hidden_size)
    flops = 2 * matmul + 4 * a.num_hidden_layers * a.hidden_size * seq_len
    return {"params": total, "active_params": active, "forward_flops_per_token": flops}
