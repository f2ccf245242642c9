"""Continued pretraining of one model (one expert, or a MoE's routers): `mixnu train`.

One readable loop on Hugging Face Accelerate (nanoGPT's shape: config, setup, batches, eval, lr, loop).
The same code runs on one CPU, under `torchrun` / `accelerate launch` with DDP (gloo or NCCL), and on
GPUs with DeepSpeed ZeRO-3 or FSDP, which Accelerate sets up from its config file.

- Model: any `AutoModelForCausalLM` folder (Llama, Mixtral, ...). For a MoE (`mixnu.arch.is_moe`: the
  config names a number of experts) the router logits are returned, Mixtral's load-balancing loss times
  `router_aux_loss_coef` is part of the loss, and the share of tokens each expert receives per layer is logged.
- Data: corpus files pooled into fixed-length blocks (`mixnu.train.data`), read in a seeded order.
- What trains (`trainable`): all | embeddings | new_rows | lora | mlp | router | router_and_all.
- Written to disk: `out/` (a plain checkpoint folder: safetensors, config, tokenizer, `train_log.jsonl`,
  `train_config.yaml`, `train_result.json`), built in a temp folder and renamed at the end; while
  training, `<out>.ckpt/` holds the live `log.jsonl` and `step-NNNNNNN/` checkpoints (each written atomically).

The package's modules, top down: `router` (router training after the merge, `mixnu route`:
a `TrainConfig` for `train`), `loop` (`train` = `setup` -> `fit` -> `finish`), `heldout` (eval
windows, `evaluate`), `trainable` (loading, the trainable modes, LoRA), `checkpoint` (save / resume /
the final folder), `dist` (the Accelerator, FSDP from an Accelerate config file), `experts` (MoE expert load), `data` (tokenise,
cache, pack, data order), `config` (`TrainConfig`, `TrainResult`, the lr schedule).
"""

from mixnu.train.config import Trainable, TrainConfig, TrainResult, get_lr, step_tokens
from mixnu.train.heldout import EvalSet, evaluate, load_eval
from mixnu.train.loop import FitStats, TrainRun, finish, fit, resume_or_start, setup, train
from mixnu.train.router import RouteConfig, RouteResult, check_moe, expert_load_markdown, train_router
from mixnu.train.trainable import load_for_training, select_trainable

__all__ = [
    "Trainable", "TrainConfig", "TrainResult", "get_lr", "step_tokens", "EvalSet", "evaluate", "load_eval",
    "FitStats", "TrainRun", "setup", "resume_or_start", "fit", "finish", "train", "load_for_training",
    "select_trainable", "RouteConfig", "RouteResult", "check_moe", "expert_load_markdown", "train_router",
]
