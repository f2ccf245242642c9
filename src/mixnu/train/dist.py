"""The Accelerator of `mixnu train`: plain, or with an Accelerate config file's FSDP settings.

`accelerate launch --config_file recipes/accelerate/fsdp-8gpu.yaml` sets FSDP up on GPUs by itself.
On CPU processes that launcher does not help (accelerate 1.15 started one process with `--cpu`, see
NOTES.md), so `mixnu train` can take the same file as `fsdp_config` under `torchrun`: its
`fsdp_config` keys become Accelerate's `FullyShardedDataParallelPlugin` (the same mapping as
`accelerate launch`'s `FSDP_*` variables), and Accelerate's own FSDP2 code (`fully_shard`, sharded
`save_state`/`load_state`, full-state gathering) runs the model.

One shim: Accelerate 1.15 turns a plugin into `DistributedType.FSDP` only for GPU-like backends and
leaves a CPU run at `MULTI_CPU` (`AcceleratorState.__init__`), although its FSDP2 path works over
gloo. `make_accelerator` then sets the distributed type to FSDP itself, in both the
`AcceleratorState` and the `PartialState` it shares fields with. FSDP1 (`fsdp_version: 1`) does not
run on CPU at all (Accelerate asks for a CUDA/XPU/... device), so on CPU only version 2 is accepted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mixnu.errors import ConfigError

# accelerate config file key -> FullyShardedDataParallelPlugin field (`accelerate launch`'s own mapping)
_PLUGIN_FIELDS = {
    "fsdp_version": "fsdp_version", "fsdp_sharding_strategy": "sharding_strategy",
    "fsdp_reshard_after_forward": "reshard_after_forward", "fsdp_auto_wrap_policy": "auto_wrap_policy",
    "fsdp_transformer_layer_cls_to_wrap": "transformer_cls_names_to_wrap", "fsdp_min_num_params": "min_num_params",
    "fsdp_backward_prefetch": "backward_prefetch", "fsdp_forward_prefetch": "forward_prefetch",
    "fsdp_state_dict_type": "state_dict_type", "fsdp_use_orig_params": "use_orig_params",
    "fsdp_cpu_ram_efficient_loading": "cpu_ram_efficient_loading", "fsdp_sync_module_states": "sync_module_states",
    "fsdp_offload_params": "cpu_offload", "fsdp_activation_checkpointing": "activation_checkpointing",
}


def fsdp_plugin_kwargs(path: Path) -> dict[str, Any]:
    """`FullyShardedDataParallelPlugin` keyword arguments from an Accelerate config file's `fsdp_config`.

    Reads the file with Accelerate's own loader (`ClusterConfig.from_yaml_file`). Raises `ConfigError`
    if it is unreadable, not `distributed_type: FSDP`, or holds an FSDP key this mapping does not know.
    """
    from accelerate.commands.config.config_args import ClusterConfig

    try:
        cfg = ClusterConfig.from_yaml_file(str(path))
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"fsdp_config {path}: not a readable Accelerate config file ({str(exc)[:160]})") from None
    if str(cfg.distributed_type) not in ("FSDP", "DistributedType.FSDP") or not cfg.fsdp_config:
        raise ConfigError(f"fsdp_config {path}: needs distributed_type: FSDP and an fsdp_config section "
                          "(e.g. recipes/accelerate/fsdp-8gpu.yaml)")
    unknown = sorted(set(cfg.fsdp_config) - set(_PLUGIN_FIELDS))
    if unknown:
        raise ConfigError(f"fsdp_config {path}: unsupported key(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(_PLUGIN_FIELDS))}")
    kwargs = {_PLUGIN_FIELDS[k]: v for k, v in cfg.fsdp_config.items()}
    if isinstance(kwargs.get("auto_wrap_policy"), str):
        kwargs["auto_wrap_policy"] = kwargs["auto_wrap_policy"].lower()
    return kwargs


def make_accelerator(cpu: bool, mixed_precision: str, grad_accum: int, fsdp_config: Path | None):
    """An `Accelerator` for `mixnu train`; with `fsdp_config`, FSDP from that file, on GPUs or CPU processes.

    Raises `ConfigError` when `fsdp_config` is given to a single process (FSDP needs a launcher
    starting 2 or more, e.g. `torchrun --nproc_per_node 2`) or asks for FSDP1 on CPU.
    """
    from accelerate import Accelerator, FullyShardedDataParallelPlugin
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    AcceleratorState._reset_state()  # several runs in one process (the demo) may use different settings
    if fsdp_config is None:
        return Accelerator(cpu=cpu, mixed_precision=mixed_precision, gradient_accumulation_steps=grad_accum)
    kwargs = fsdp_plugin_kwargs(fsdp_config)
    # checked before any Accelerator exists: one built with a plugin sets ACCELERATE_USE_FSDP in os.environ,
    # which would turn every later Accelerator of this process (and its child processes) into FSDP
    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        raise ConfigError(f"fsdp_config {fsdp_config} needs 2 or more processes; start mixnu train under "
                          "torchrun --nproc_per_node N (CPU) or accelerate launch --config_file (GPUs)")
    plugin = FullyShardedDataParallelPlugin(**kwargs)
    accelerator = Accelerator(cpu=cpu, mixed_precision=mixed_precision, gradient_accumulation_steps=grad_accum,
                              fsdp_plugin=plugin)
    if accelerator.distributed_type == DistributedType.MULTI_CPU:
        if plugin.fsdp_version != 2:
            raise ConfigError(f"fsdp_config {fsdp_config}: fsdp_version {plugin.fsdp_version} runs only on GPUs "
                              "in Accelerate; use fsdp_version: 2 on CPU processes")
        # the shim (module docstring): Accelerate's FSDP2 path, which it does not select on CPU by itself
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        accelerator.state.distributed_type = DistributedType.FSDP
        accelerator.state.fsdp_plugin = plugin
    return accelerator
