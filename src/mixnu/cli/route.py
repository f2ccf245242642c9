"""`mixnu route` (train the routers of a merged MoE) and `mixnu routing` (which expert each domain
uses). Both only parse options and call `mixnu.train.router` and `mixnu.routing`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mixnu.cli._common import Force, JsonOut, Quiet, Sets, build_config
from mixnu.cli.ppl import DataOpt, parse_data
from mixnu.cli.train import Data


def register(app: typer.Typer) -> None:
    """Add `mixnu route` and `mixnu routing` to the root app."""

    @app.command("route")
    def route(
        ctx: typer.Context,
        model: Annotated[Path | None, typer.Option("--model", help="Merged MoE folder (output of mixnu merge).")] = None,
        data: Data = None,
        out: Annotated[Path | None, typer.Option("--out", help="Output checkpoint folder.")] = None,
        trainable: Annotated[str | None, typer.Option("--trainable", help="router (default) | router_and_all.")] = None,
        router_aux_loss_coef: Annotated[float | None, typer.Option("--aux-loss-coef", help="Load-balancing loss weight (default 0.02).")] = None,
        steps: Annotated[int | None, typer.Option("--steps", help="Optimizer steps (default 100).")] = None,
        lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate (default 1e-3).")] = None,
        router_lr: Annotated[float | None, typer.Option("--router-lr", help="Routers' rate with router_and_all (default --lr).")] = None,
        batch_size: Annotated[int | None, typer.Option("--batch-size", help="Blocks per device per micro-step.")] = None,
        seq_len: Annotated[int | None, typer.Option("--seq-len", help="Tokens per block.")] = None,
        log_every: Annotated[int | None, typer.Option("--log-every", help="Log loss and expert load every N steps.")] = None,
        save_every: Annotated[int | None, typer.Option("--save-every", help="Checkpoint every N steps into <out>.ckpt/.")] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue from the latest checkpoint in <out>.ckpt/.")] = False,
        cpu: Annotated[bool, typer.Option("--cpu", help="Train on CPU even if a GPU is present.")] = False,
        config: Annotated[Path | None, typer.Option("--config", help="YAML file of RouteConfig (= TrainConfig) fields.")] = None,
        sets: Sets = None,
        force: Force = False,
        quiet: Quiet = False,
        json_out: JsonOut = None,
    ) -> None:
        """Train a merged MoE's routers (or routers + everything) with the load-balancing loss (BTX MiX stage)."""
        from mixnu.cli._common import emit
        from mixnu.train import RouteConfig, expert_load_markdown, train_router

        cfg = build_config(ctx, RouteConfig, config, sets)
        r = train_router(cfg)
        emit(r, json_out, quiet, f"trained {cfg.trainable} for {r.train.steps} steps -> {r.train.out}/\n"
                                 f"expert load per layer (share of top-k slots, last logged steps):\n"
                                 f"{expert_load_markdown(r.expert_load)}")

    @app.command("routing")
    def routing(
        ctx: typer.Context,
        model: Annotated[Path | None, typer.Option("--model", help="MoE model folder (e.g. the output of mixnu merge/route).")] = None,
        data: DataOpt = None,
        out: Annotated[Path | None, typer.Option("--out", help="Folder for routing.json, routing.md and PNGs (default routing-out).")] = None,
        tokenizer: Annotated[Path | None, typer.Option("--tokenizer", help="Tokenizer folder (default: the model's).")] = None,
        max_chars: Annotated[int | None, typer.Option("--max-chars", help="Use only the first lines of each file, up to N characters.")] = None,
        batch_size: Annotated[int | None, typer.Option("--batch-size", help="Windows per forward pass (default 8).")] = None,
        device: Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:N or auto (default cpu).")] = None,
        config: Annotated[Path | None, typer.Option("--config", help="YAML file of RoutingConfig fields.")] = None,
        sets: Sets = None,
        force: Force = False,
        quiet: Quiet = False,
        json_out: JsonOut = None,
    ) -> None:
        """Share of tokens routed to each expert, per domain and layer (top-1 and top-k): heatmap PNG + JSON."""
        from mixnu.cli._common import emit
        from mixnu.routing import RoutingConfig, routing_report

        result = routing_report(build_config(ctx, RoutingConfig, config, sets, values={"data": parse_data(data)}))
        emit(result, json_out, quiet, f"{result.table}\n\nrouting written to {result.out}/")
