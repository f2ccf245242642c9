"""Checkpoints of `mixnu train`: save, find, load (for `--resume`), and the final plain checkpoint folder.

A checkpoint `step-NNNNNNN/` holds the model (safetensors), the optimizer (`torch.save`, read back with
`weights_only=True`), the CPU RNG state and `state.json` (step, data position, config fingerprint,
number of processes). It is built under a dot-name and renamed when complete, so a killed save never
leaves a folder that looks complete. Under DeepSpeed or FSDP the folder holds Accelerate's
`save_state` output (the engine's sharded format) instead of the model and optimizer files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from mixnu import arch
from mixnu.errors import CheckpointError
from mixnu.hf import first_line, quiet_transformers
from mixnu.io import copy_tokenizer_files, write_json


def save_checkpoint(path: Path, model, optimizer, step: int, consumed: int, cfg, accelerator, lr: float) -> None:
    """Write `path` atomically: model (safetensors), optimizer, RNG, and state.json (step, data position)."""
    from accelerate.utils import DistributedType
    from safetensors.torch import save_file, save_model

    sharded = accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)
    tmp = path.with_name(f".{path.name}.tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)  # before the barrier: under FSDP every process writes into it at once
    accelerator.wait_for_everyone()
    if sharded:  # the engine's own sharded format; every process writes its shard
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()  # each process writes its RNG file last: all done before the rename
    if accelerator.is_main_process:
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            if not sharded:
                save_model(accelerator.unwrap_model(model), str(tmp / "model.safetensors"))
                torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
                save_file({"cpu": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
            write_json(tmp / "state.json", {"step": step, "consumed_blocks": consumed, "config": cfg.fingerprint(),
                                            "num_processes": accelerator.num_processes, "format":
                                            "accelerate" if sharded else "mixnu", "lr": lr})
            old = path.with_name(f".{path.name}.old")
            if path.exists():
                shutil.rmtree(old, ignore_errors=True)
                path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    accelerator.wait_for_everyone()


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    """The highest `step-*` folder with a state.json (temp dot-folders are never candidates)."""
    if not ckpt_dir.is_dir():
        return None
    found = sorted(p for p in ckpt_dir.glob("step-*") if (p / "state.json").is_file())
    return found[-1] if found else None


def load_checkpoint(path: Path, model, optimizer, cfg, accelerator) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from safetensors.torch import load_model as load_safetensors_into

    try:
        state = json.loads((path / "state.json").read_text())
    except (OSError, json.JSONDecodeError):
        raise CheckpointError(f"{path}/state.json is unreadable; delete {path} to resume from an earlier one") from None
    if state.get("config") != cfg.fingerprint():
        raise CheckpointError(f"{path} was written with a different training config; resume with the same "
                              "settings, or start fresh without --resume (and another --out)")
    if state.get("num_processes") != accelerator.num_processes:
        raise CheckpointError(f"{path} was written by {state.get('num_processes')} processes, not "
                              f"{accelerator.num_processes}; resume with the same number of processes")
    try:
        if state.get("format") == "accelerate":
            accelerator.load_state(str(path))
        else:
            load_safetensors_into(accelerator.unwrap_model(model), str(path / "model.safetensors"))
            optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
            torch.set_rng_state(load_file(str(path / "rng.safetensors"))["cpu"])
    except (OSError, SafetensorError, RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint ({first_line(exc)}); delete it to resume from an earlier one") from None
    return state


def save_final(model, tokenizer, cfg, accelerator, tmp: Path, moe: bool) -> None:
    state_dict = accelerator.get_state_dict(model)
    if not accelerator.is_main_process:
        return
    unwrapped = accelerator.unwrap_model(model)
    if cfg.trainable == "lora":  # fold LoRA into the weights: a plain checkpoint transformers loads
        unwrapped = unwrapped.merge_and_unload()
        state_dict = None
    if moe:  # the saved config.json loads without router logits, as the input did
        setattr(unwrapped.config, arch.load("mixtral").config["output_router_logits"], False)
    with quiet_transformers():
        unwrapped.save_pretrained(tmp, state_dict=state_dict)
    tokenizer.save_pretrained(tmp)
    copy_tokenizer_files(cfg.model, tmp)  # the input's own files: same special-token settings (mixnu.text)
    for extra in ("tokenizer.model", "mixnu_expand.json"):
        if (Path(cfg.model) / extra).is_file():
            shutil.copy(Path(cfg.model) / extra, tmp / extra)
