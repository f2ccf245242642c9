"""The Mixtral `config.json` that `mixnu merge` writes, built from a Llama base's config.

Every key comes from the architecture files (`llama.json` `config`: the Llama fields that must
match across experts, their defaults, the model types with a sliding window; `mixtral.json`
`config`: the MoE keys and the router aux-loss default, Mixtral-8x7B's released 0.02). Pure
dict work: no torch, no transformers.
"""

from __future__ import annotations

from typing import Any

from mixnu.arch import load

__all__ = ["llama_fields", "mixtral_config", "normalized_rope"]


def normalized_rope(cfg: dict[str, Any]) -> dict[str, Any]:
    """`rope_parameters` as transformers 5 stores them, from either that key or legacy rope_theta/rope_scaling."""
    rp = cfg.get("rope_parameters")
    if isinstance(rp, dict) and "rope_theta" in rp:
        return dict(rp)
    scaling = dict(cfg.get("rope_scaling") or {})
    rope_type = scaling.pop("rope_type", None) or scaling.pop("type", None) or "default"
    scaling.pop("type", None)
    return {"rope_type": rope_type, **scaling, "rope_theta": float(cfg.get("rope_theta", 10000.0))}


def llama_fields(cfg: dict[str, Any]) -> dict[str, Any]:
    """The Llama config fields that define the architecture (`llama.json` `config.keys`), with their
    defaults filled in; missing keys are None."""
    c = load("llama").config
    return {k: cfg.get(k, c["defaults"].get(k)) for k in c["keys"]}


def mixtral_config(base: dict[str, Any], num_experts: int, top_k: int, dtype: str) -> dict[str, Any]:
    """config.json of the MoE: every Llama field set explicitly (Mixtral's defaults differ) + the experts.

    `base` is the Llama config.json dict; `num_experts` experts per layer, `top_k` routed per token,
    `dtype` the weights' dtype name. Rope is written as transformers 5 stores it (`rope_parameters`)
    and, for runtimes that read older configs (vLLM, llama.cpp's converter), also as `rope_theta` /
    `rope_scaling`.
    """
    llama, moe = load("llama"), load("mixtral")
    keys = moe.config
    rope = normalized_rope(base)
    scaling = {k: v for k, v in rope.items() if k != "rope_theta"} if rope["rope_type"] != "default" else None
    sliding = base.get("model_type") in llama.config["sliding_window_model_types"]
    cfg: dict[str, Any] = {
        "architectures": list(moe.architectures), "model_type": moe.model_types[0], **llama_fields(base),
        "num_key_value_heads": base.get("num_key_value_heads") or base["num_attention_heads"],
        "head_dim": base.get("head_dim") or base["hidden_size"] // base["num_attention_heads"],
        "hidden_act": base.get("hidden_act", "silu"),
        "initializer_range": base.get("initializer_range", 0.02),
        "bos_token_id": base.get("bos_token_id"), "eos_token_id": base.get("eos_token_id"),
        "pad_token_id": base.get("pad_token_id"), "attention_dropout": base.get("attention_dropout", 0.0),
        "rope_parameters": rope, "rope_theta": rope["rope_theta"], "rope_scaling": scaling,
        "sliding_window": base.get("sliding_window") if sliding else None,
        keys["num_experts"][0]: num_experts, keys["top_k"]: top_k,
        keys["aux_loss_coef"]: keys["aux_loss_default"], keys["jitter_noise"]: 0.0,
        keys["output_router_logits"]: False,
        "use_cache": True, "dtype": dtype,
    }
    return cfg
