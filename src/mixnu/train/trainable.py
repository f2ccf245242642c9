"""The model a run trains and what in it trains: loading (router logits on for a MoE), the `trainable`
modes (optimizer parameter groups, row-masked embeddings), LoRA wrapping. Names come from `mixnu.arch`."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mixnu import arch
from mixnu.errors import CheckpointError, ConfigError
from mixnu.hf import first_line, quiet_transformers
from mixnu.train.config import TrainConfig


def load_for_training(path: Path, cfg: TrainConfig | None = None):
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


def wrap_lora(model, cfg: TrainConfig):
    from peft import LoraConfig, get_peft_model

    names = arch.load("llama").module
    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.lora_targets, modules_to_save=[names["embed"], names["head"]],
                      task_type="CAUSAL_LM")
    return get_peft_model(model, lcfg)
