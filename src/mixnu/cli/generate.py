"""`mixnu generate`: responses to a prompt suite from local checkpoints, vLLM or an OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mixnu.cli._common import JsonOut, Quiet, Sets, build_config, emit


def register(app: typer.Typer) -> None:
    """Add `mixnu generate` to the root app."""

    @app.command("generate")
    def generate_cmd(
        ctx: typer.Context,
        config: Annotated[Path | None, typer.Argument(help="YAML config (keys: GenerateConfig fields, see docs/eval.md).")] = None,
        out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder: suite.yaml + responses.jsonl go here.")] = None,
        model: Annotated[list[str] | None, typer.Option(
            "--model", "-m", metavar="NAME=SPEC", help="NAME=PATH (local HF checkpoint), NAME=vllm:PATH, "
            "NAME=openai:MODEL@URL or NAME=openai-chat:MODEL@URL: several after one flag, or repeat it.")] = None,
        suite: Annotated[Path | None, typer.Option(help="Prompt suite YAML (default: the shipped Korean suite).")] = None,
        samples: Annotated[int | None, typer.Option(help="Responses per (prompt, model). (default: 1)")] = None,
        max_new_tokens: Annotated[int | None, typer.Option(help="New tokens per response. (default: 128)")] = None,
        temperature: Annotated[float | None, typer.Option(help="Sampling temperature; 0 = greedy. (default: 0.7)")] = None,
        top_p: Annotated[float | None, typer.Option(help="Nucleus sampling. (default: 0.9)")] = None,
        repetition_penalty: Annotated[float | None, typer.Option(help="1.0 = off. (default: 1.0)")] = None,
        seed: Annotated[int | None, typer.Option(help="Sampling seed. (default: 0)")] = None,
        batch_size: Annotated[int | None, typer.Option(help="Prompts per batch (hf, vllm). (default: 8)")] = None,
        concurrency: Annotated[int | None, typer.Option(help="Requests in flight (openai). (default: 8)")] = None,
        device: Annotated[str | None, typer.Option(help="hf: auto, cpu, cuda, cuda:1 … (default: auto)")] = None,
        sets: Sets = None,
        quiet: Quiet = False,
        json_out: JsonOut = None,
    ) -> None:
        """Generate responses to every suite prompt from each model into RUN/responses.jsonl (a rerun reuses them)."""
        from mixnu.eval.generate import GenerateConfig, ModelSpec, generate

        models = [ModelSpec.parse(m).model_dump(exclude_none=True) for m in model or []]
        cfg = build_config(ctx, GenerateConfig, config, sets, keys={"model": "models"}, values={"model": models},
                           source="command-line options (give --out and --model)")
        res = generate(cfg, quiet=quiet)
        emit(res, json_out, quiet, f"{res.generated} new and {res.reused} reused responses "
             f"({res.dropped_stale} stale dropped) in {res.responses_path} ({res.wall_s:.1f} s)")
