"""Architecture facts in one place: Llama / Mixtral tensor and module names, and MoE detection.

The names are data, mergekit's way (`mixnu/_data/architectures/<name>.json`), so another
architecture (Qwen2-MoE, DeepSeek-MoE) is a new file rather than edits in several modules. Each
file holds two name sets, because transformers 5 renames on load:

- `checkpoint`: the tensor names in a safetensors checkpoint on disk (what `mixnu merge` writes and
  reads). A Mixtral router is `model.layers.L.block_sparse_moe.gate.weight` and its experts are
  `…block_sparse_moe.experts.E.w1/w2/w3.weight` (w1 = the Llama `gate_proj`, w2 = `down_proj`,
  w3 = `up_proj`).
- `module`: the names on a model loaded by transformers 5 (what training and routing hooks see).
  The router module is `model.layers.L.mlp.gate` and the experts are fused into
  `mlp.experts.gate_up_proj` (E, 2I, H) and `mlp.experts.down_proj` (E, H, I).

Templates use `{layer}`, `{expert}` and `{w}`. MoE detection reads the config keys the Mixtral
file names (`num_local_experts`, else `num_experts` as Qwen2-MoE spells it; `num_experts_per_tok`)
from a `config.json` dict or a transformers config object alike. Nothing here imports torch or
transformers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from mixnu.errors import ConfigError

__all__ = [
    "Arch", "load", "is_moe", "num_experts", "top_k", "router_modules", "is_router_param",
    "llama_tensor_names", "mixtral_tensor_names", "mixtral_module_names", "expert_source", "known",
]


@dataclass(frozen=True)
class Arch:
    """One architecture file: `name`, accepted `model_types`, `architectures` (transformers class
    names) and the raw `checkpoint`, `module` and `config` sections (see the module doc)."""

    name: str
    model_types: tuple[str, ...]
    architectures: tuple[str, ...]
    checkpoint: dict[str, Any]
    module: dict[str, Any]
    config: dict[str, Any]
    ignore_suffixes: tuple[str, ...] = ()


@cache
def load(name: str) -> Arch:
    """The architecture `name` (`llama`, `mixtral`) from `mixnu/_data/architectures/<name>.json`.

    Raises `ConfigError` for a name without a file.
    """
    path = resources.files("mixnu") / "_data" / "architectures" / f"{name}.json"
    if not path.is_file():
        raise ConfigError(f"unknown architecture '{name}'; mixnu knows {', '.join(known())}")
    d = json.loads(path.read_text(encoding="utf-8"))
    return Arch(name=d["name"], model_types=tuple(d["model_types"]), architectures=tuple(d["architectures"]),
                checkpoint=d.get("checkpoint", {}), module=d.get("module", {}), config=d.get("config", {}),
                ignore_suffixes=tuple(d.get("ignore_suffixes", ())))


def known() -> list[str]:
    """Names of the architecture files shipped with mixnu, sorted."""
    folder = resources.files("mixnu") / "_data" / "architectures"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def _get(config: Any, key: str) -> Any:
    return config.get(key) if isinstance(config, dict) else getattr(config, key, None)


def num_experts(config: Any) -> int | None:
    """Experts per MoE layer from a `config.json` dict or a transformers config; None for a dense model."""
    for key in load("mixtral").config["num_experts"]:
        n = _get(config, key)
        if n:
            return int(n)
    return None


def is_moe(config: Any) -> bool:
    """True when `config` (dict or transformers config) describes a MoE (it names a number of experts)."""
    return num_experts(config) is not None


def top_k(config: Any) -> int | None:
    """Experts each token is routed to (`num_experts_per_tok`); None when the config has none."""
    k = _get(config, load("mixtral").config["top_k"])
    return int(k) if k else None


def _template_regex(template: str) -> re.Pattern[str]:
    """`model.layers.{layer}.mlp.gate` -> a regex that finds it at the end of a (possibly wrapped) name."""
    pattern = re.escape(template).replace(re.escape("{layer}"), r"(\d+)")
    return re.compile(r"(?:^|\.)" + pattern + "$")


def router_modules(model: Any) -> list[tuple[int, Any]]:
    """(layer index, router module) of a loaded transformers MoE, sorted by layer; [] for a dense model.

    Matches the `module.router` template (`model.layers.{layer}.mlp.gate`) at the end of each
    `named_modules()` name, so a wrapped model (PEFT's `base_model.model.…`) is found too.
    """
    rx = _template_regex(load("mixtral").module["router"])
    found = []
    for name, module in model.named_modules():
        m = rx.search(name)
        if m:
            found.append((int(m.group(1)), module))
    return sorted(found, key=lambda x: x[0])


@cache
def _router_segments() -> tuple[str, ...]:
    arch = load("mixtral")
    module_path = arch.module["router"]
    checkpoint_path = arch.checkpoint["router"].removesuffix(".weight")
    return tuple(p.split("{layer}.", 1)[1] for p in (module_path, checkpoint_path))


def is_router_param(name: str) -> bool:
    """True for a router parameter, spelled either way (`…mlp.gate.weight` loaded,
    `…block_sparse_moe.gate.weight` on disk): the parameter's module path ends with a router's."""
    module_path = name.rsplit(".", 1)[0]
    return any(module_path == s or module_path.endswith("." + s) for s in _router_segments())


def _fill(templates: list[str], **kw: Any) -> list[str]:
    return [t.format(**kw) for t in templates]


def llama_tensor_names(num_layers: int, tied: bool) -> list[str]:
    """Every weight of a Llama checkpoint, in the order mixnu writes them (embed, per layer attention
    then mlp gate/up/down, final norm, `lm_head` unless the embeddings are tied)."""
    ck = load("llama").checkpoint
    names = [ck["embed"]]
    for layer in range(num_layers):
        names += _fill(ck["attention"], layer=layer) + _fill(list(ck["mlp"].values()), layer=layer)
    names += ck["final"]
    return names if tied else names + [ck["head"]]


def mixtral_tensor_names(num_layers: int, num_experts: int, tied: bool) -> list[str]:
    """Every weight of a Mixtral checkpoint on disk, in the order `mixnu merge` writes them: per
    layer the attention weights, the router, then w1 of every expert, w2 of every expert, w3 of
    every expert."""
    base, moe = load("llama").checkpoint, load("mixtral").checkpoint
    names = [base["embed"]]
    for layer in range(num_layers):
        names += _fill(base["attention"], layer=layer) + [moe["router"].format(layer=layer)]
        names += [moe["expert"].format(layer=layer, expert=e, w=w)
                  for w in moe["expert_from_mlp"] for e in range(num_experts)]
    names += base["final"]
    return names if tied else names + [base["head"]]


def mixtral_module_names(num_layers: int, tied: bool) -> list[str]:
    """The parameter names of a Mixtral loaded by transformers 5 (router `mlp.gate.weight`, experts
    fused into `mlp.experts.gate_up_proj` and `mlp.experts.down_proj`)."""
    base, moe = load("llama").checkpoint, load("mixtral").module
    names = [base["embed"]]
    for layer in range(num_layers):
        names += _fill(base["attention"], layer=layer) + [moe["router"].format(layer=layer) + ".weight"]
        names += _fill(moe["experts"], layer=layer)
    names += base["final"]
    return names if tied else names + [base["head"]]


def expert_source(w: str) -> str:
    """The Llama mlp projection (`gate`, `up`, `down`) a Mixtral expert weight `w1`/`w2`/`w3` comes from."""
    return load("mixtral").checkpoint["expert_from_mlp"][w]
