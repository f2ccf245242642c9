"""Router training after the merge (`mixnu route`): BTX's "MiX" stage.

It is not a second training loop: `RouteConfig` is a `mixnu.train.TrainConfig` with the router stage's
choices (trainable `router` or `router_and_all`, Mixtral's load-balancing loss with
`router_aux_loss_coef`, expert load logged per layer) and `train_router` calls `mixnu.train.train`
with it, so checkpointing, Accelerate and resuming are the expert stage's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from mixnu import arch
from mixnu.errors import CheckpointError
from mixnu.train.config import TrainConfig, TrainResult
from mixnu.train.loop import train


class RouteConfig(TrainConfig):
    """`TrainConfig` with the router stage's choices and defaults (every other field is the trainer's).

    `trainable`: `router` (routers only; experts and trunk frozen) or `router_and_all` (routers plus
    every parameter; `router_lr` sets the routers' own rate). `router_aux_loss_coef` weights
    Mixtral's load-balancing loss (Switch-Transformer form: E * sum_e f_e * P_e per layer).
    """

    trainable: Literal["router", "router_and_all"] = "router"
    router_aux_loss_coef: float | None = Field(0.02, ge=0, description="MoE load-balancing loss weight")
    steps: int = Field(100, ge=1, le=10_000_000, description="optimizer steps")
    lr: float = Field(1e-3, gt=0, le=1.0)
    weight_decay: float = Field(0.0, ge=0, le=1.0)


@dataclass(frozen=True)
class RouteResult:
    """The trainer's result plus the expert load per layer (top-k shares) over the last logged steps."""

    train: TrainResult
    expert_load: list[list[float]]
    min_load: float


def check_moe(path: str | Path) -> int:
    """Number of experts of the checkpoint at `path`; `CheckpointError` if it is dense or unreadable."""
    cfg_file = Path(path) / "config.json"
    if not cfg_file.is_file():
        raise CheckpointError(f"{path}: not a model folder (no config.json); give a save_pretrained checkpoint")
    config = json.loads(cfg_file.read_text(encoding="utf-8"))
    n = arch.num_experts(config)
    if not n:
        raise CheckpointError(f"{path} is a dense model ({config.get('model_type', '?')}, no experts); "
                              "router training needs a MoE checkpoint such as the output of 'mixnu merge'")
    return n


def train_router(cfg: RouteConfig) -> RouteResult:
    """Train the routers (or routers and everything) of a merged MoE with `mixnu.train.train`.

    Inputs: a MoE checkpoint (`cfg.model`) and mixed-domain corpus files. Writes what `train` writes:
    the checkpoint folder `cfg.out` (with `train_log.jsonl`, whose records carry `expert_load`
    [layer][expert] every `log_every` steps) and `<out>.ckpt/` while running.
    """
    check_moe(cfg.model)
    result = train(TrainConfig.model_validate(cfg.model_dump()))
    load = result.expert_load or []
    return RouteResult(train=result, expert_load=load, min_load=min((min(r) for r in load), default=0.0))


def expert_load_markdown(load: list[list[float]]) -> str:
    """Expert load per layer (share of top-k slots) as a Markdown table."""
    if not load:
        return "(no expert load logged)"
    E = len(load[0])
    lines = ["| layer | " + " | ".join(f"E{e}" for e in range(E)) + " |", "|---:|" + "---:|" * E]
    lines += [f"| {i} | " + " | ".join(f"{v:.1%}" for v in row) + " |" for i, row in enumerate(load)]
    return "\n".join(lines)
