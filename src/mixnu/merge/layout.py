"""The merge's layout: every output tensor (name, shape, how it is made) and its shard, planned from
the input headers before any data is read.

`moe_layout` lists the Mixtral tensors in the order they are written (`mixnu.arch`'s
`mixtral_tensor_names` order: per layer the attention weights, the router, then w1 of every expert,
w2 of every expert, w3 of every expert); `average_layout` the dense Llama of `average_experts`
(every tensor the experts' mean, in `llama_tensor_names` order); `shard_groups` cuts either list into shards of at most `max_bytes`. ("Plan" alone means the
resource plan, `mixnu plan`.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from mixnu import arch
from mixnu.merge.config import MergeConfig
from mixnu.merge.inputs import Checkpoint


@dataclass
class Planned:
    """One planned output tensor: how to make it, and its layer (-1 outside layers)."""

    name: str
    shape: tuple[int, ...]
    kind: Literal["copy", "mean", "router"]
    sources: list[tuple[Checkpoint, str]]
    layer: int = -1
    role: str = ""  # "embed", "shared", "w1", "w2", "w3", "router"
    expert: int = -1


def moe_layout(cfg: MergeConfig, base: Checkpoint, experts: list[Checkpoint]) -> list[Planned]:
    shared_src = [base] if cfg.shared == "base" else experts

    def shared(name: str, role: str, layer: int = -1) -> Planned:
        kind = "copy" if len(shared_src) == 1 else "mean"
        return Planned(name, base.tensors[name].shape, kind, [(ck, name) for ck in shared_src], layer, role)

    llama, moe = arch.load("llama").checkpoint, arch.load("mixtral").checkpoint
    plan = [shared(llama["embed"], "embed")]
    hidden = base.config["hidden_size"]
    for i in range(base.num_layers):
        plan += [shared(t.format(layer=i), "shared", i) for t in llama["attention"]]
        plan.append(Planned(moe["router"].format(layer=i), (len(experts), hidden), "router", [], i, "router"))
        # same projection of every expert in a row, so identical experts are detected holding one tensor
        for w in moe["expert_from_mlp"]:
            name = llama["mlp"][arch.expert_source(w)].format(layer=i)
            for e, ck in enumerate(experts):
                plan.append(Planned(moe["expert"].format(layer=i, expert=e, w=w), base.tensors[name].shape,
                                 "copy", [(ck, name)], i, w, e))
    plan += [shared(name, "shared") for name in llama["final"]]
    if not base.tied:
        plan.append(shared(llama["head"], "shared"))
    return plan


def average_layout(base: Checkpoint, experts: list[Checkpoint]) -> list[Planned]:
    """Every Llama tensor as the mean of the experts' (the dense baseline `average_experts` writes)."""
    return [Planned(n, base.tensors[n].shape, "mean", [(ck, n) for ck in experts])
            for n in arch.llama_tensor_names(base.num_layers, base.tied)]


def shard_groups(plan: list[Planned], itemsize: int, max_bytes: int) -> list[list[Planned]]:
    shards: list[list[Planned]] = [[]]
    size = 0
    for o in plan:
        n = itemsize * math.prod(o.shape)
        if shards[-1] and size + n > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(o)
        size += n
    return shards
