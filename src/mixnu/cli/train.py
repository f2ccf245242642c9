"""`mixnu train` (continued pretraining through Accelerate) and `mixnu plan` (resource plan of a recipe).

Only parses options and calls `mixnu.train.train` / `mixnu.plan.make_plan`. Multi-process runs use the
same command under a launcher: `accelerate launch [--config_file recipes/accelerate/…] -m mixnu train …`
or `torchrun --nproc_per_node N -m mixnu train … --cpu`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mixnu.cli._common import Force, JsonOut, Quiet, Sets, build_config

Data = Annotated[list[Path] | None, typer.Option(
    "--data", help="Training corpus files (pooled, shuffled): several after one flag, or repeat it.")]



def register(app: typer.Typer) -> None:
    """Add `mixnu train` and `mixnu plan` to the root app."""

    @app.command("train")
    def train(
        ctx: typer.Context,
        model: Annotated[Path | None, typer.Option("--model", help="Checkpoint folder to start from.")] = None,
        data: Data = None,
        out: Annotated[Path | None, typer.Option("--out", help="Output checkpoint folder.")] = None,
        eval_data: Annotated[list[Path] | None, typer.Option("--eval-data", help=(
            "Held-out files: several after one flag, or repeat it; default: tail of each --data file."))] = None,
        steps: Annotated[int | None, typer.Option("--steps", help="Optimizer steps.")] = None,
        lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate (warmup, then cosine).")] = None,
        batch_size: Annotated[int | None, typer.Option("--batch-size", help="Blocks per device per micro-step.")] = None,
        grad_accum: Annotated[int | None, typer.Option("--grad-accum", help="Micro-steps per optimizer step.")] = None,
        seq_len: Annotated[int | None, typer.Option("--seq-len", help="Tokens per block.")] = None,
        trainable: Annotated[str | None, typer.Option("--trainable", help="all | embeddings | new_rows | lora | mlp | router | router_and_all.")] = None,
        save_every: Annotated[int | None, typer.Option("--save-every", help="Checkpoint every N steps into <out>.ckpt/.")] = None,
        eval_every: Annotated[int | None, typer.Option("--eval-every", help="Evaluate every N steps (0: at the end).")] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue from the latest checkpoint in <out>.ckpt/.")] = False,
        gradient_checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing", help="Recompute activations to save memory.")] = False,
        cpu: Annotated[bool, typer.Option("--cpu", help="Train on CPU even if a GPU is present.")] = False,
        config: Annotated[Path | None, typer.Option("--config", help="YAML file of TrainConfig fields (a recipe).")] = None,
        sets: Sets = None,
        force: Force = False,
        quiet: Quiet = False,
        json_out: JsonOut = None,
    ) -> None:
        """Continue-pretrain a model (one expert, or a MoE's routers) through Hugging Face Accelerate.

        Other fields (warmup_steps, weight_decay, precision, new_rows_start, lora_r, router_aux_loss_coef,
        eval_tokens, max_lines, seed …) come from --config or --set; see docs/train.md. Multi-process:
        accelerate launch [--config_file recipes/accelerate/zero3-8gpu.yaml] -m mixnu train …, or
        torchrun --nproc_per_node N -m mixnu train --cpu … on CPU (add --set
        fsdp_config=recipes/accelerate/fsdp-8gpu.yaml for FSDP2 there).
        """
        from mixnu.cli._common import emit
        from mixnu.train import TrainConfig
        from mixnu.train import train as run

        r = run(build_config(ctx, TrainConfig, config, sets))
        if r.num_processes > 1 and not _is_main():
            return
        ev = r.eval["all"]
        emit(r, json_out, quiet, f"trained {r.steps} steps ({r.tokens:,} tokens, {r.tokens_per_s:,.0f} tok/s, "
                                 f"{r.num_processes} process(es)); eval loss {ev['loss']:.4f}, {ev['bpc']:.4f} bits/char "
                                 f"-> {r.out}/")

    @app.command("plan")
    def plan(
        recipe: Annotated[Path, typer.Argument(help="Plan YAML of a recipe, e.g. recipes/mixnu-19b/plan.yaml.")],
        sets: Sets = None,
        quiet: Quiet = False,
        json_out: JsonOut = None,
    ) -> None:
        """Print a recipe's resource plan: parameters, memory per GPU (ZeRO-3, FSDP), tokens, GPU-hours."""
        from mixnu.cli._common import emit
        from mixnu.plan import load_plan, make_plan, plan_markdown

        result = make_plan(load_plan(recipe, sets))
        if not quiet:
            typer.echo(plan_markdown(result))
        emit(result, json_out, True)


def _is_main() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"
