"""`mixnu merge`: base + N experts -> one Mixtral MoE folder (parses options, calls `mixnu.merge`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from mixnu.cli._common import Force, JsonOut, Quiet, Sets, build_config


def register(app: typer.Typer) -> None:
    """Add `mixnu merge` to the root app."""

    @app.command("merge")
    def merge(
        ctx: typer.Context,
        config: Annotated[Path | None, typer.Argument(help="YAML MergeConfig (base, experts, dtype, shared, router …).")] = None,
        out: Annotated[Path | None, typer.Option("--out", help="Output folder for the merged checkpoint.")] = None,
        base: Annotated[Path | None, typer.Option("--base", help="Base checkpoint folder (instead of a config).")] = None,
        expert: Annotated[list[str] | None, typer.Option("--expert", metavar="NAME=PATH", help=(
            "Experts: several after one flag, or repeat it; they replace the config's experts."))] = None,
        num_experts_per_tok: Annotated[int | None, typer.Option(
            "--num-experts-per-tok", "--experts-per-token", "-k", help="Experts per token, top-k (default 2).")] = None,
        dtype: Annotated[Literal["float32", "float16", "bfloat16"] | None, typer.Option(
            "--dtype", help="Output dtype (default bfloat16).")] = None,
        shared: Annotated[Literal["average", "base"] | None, typer.Option(
            "--shared", help="Attention, norms, embeddings, head: experts' mean (default) or the base's.")] = None,
        router_init: Annotated[Literal["random", "uniform", "prompts", "data"] | None, typer.Option(
            "--router-init", help="Router init (default random; prompts/data need text per expert).")] = None,
        seed: Annotated[int | None, typer.Option("--seed", help="Router seed (default 0).")] = None,
        allow_identical: Annotated[bool, typer.Option(
            "--allow-identical", help="Merge even if every expert's MLP weights are identical.")] = False,
        average: Annotated[bool, typer.Option(
            "--average", help="Write the plain weight average of the experts as a dense Llama instead.")] = False,
        sets: Sets = None,
        force: Force = False,
        quiet: Quiet = False,
        json_out: JsonOut = None,
    ) -> None:
        """Merge a base and N Llama experts into one Mixtral MoE checkpoint (streaming, bounded memory).

        Either give a CONFIG file or --base and two or more --expert NAME=PATH (flags override the config, --set overrides both). The output folder holds config.json, sharded safetensors with an index, the tokenizer, generation_config.json and a README recording the merge config and the sha256 of every input. See docs/merge.md.
        """
        from mixnu.cli._common import emit
        from mixnu.merge import MergeConfig, average_experts, merge_experts, parse_expert_flag

        cfg = build_config(ctx, MergeConfig, config, sets,
                           keys={"expert": "experts", "router_init": "router.init", "seed": "router.seed"},
                           values={"expert": [parse_expert_flag(x) for x in expert or []]})
        result = (average_experts if average else merge_experts)(cfg)
        emit(result, json_out, quiet, f"{result.kind} checkpoint in {result.out}/: {len(result.experts)} experts, "
             f"{result.parameters:,} parameters, {len(result.shards)} shard(s), {result.wall_s:.1f} s")
