"""`mixnu generate`: responses to a prompt suite from local checkpoints, vLLM or an OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mixnu.cli._common import JsonOut, Quiet, Sets, emit
from mixnu.config import parse_overrides, read_yaml, validate_config


def build_config(cls: type, config: Path | None, cli: dict[str, Any], sets: list[str] | None, source: str) -> Any:
    """YAML file, then the options given on the command line, then `--set` overrides; validated."""
    data: dict[str, Any] = read_yaml(config) if config is not None else {}
    data.update({k: v for k, v in cli.items() if v is not None})
    for key, value in parse_overrides(sets).items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    return validate_config(cls, data, str(config) if config is not None else source)


def register(app: typer.Typer) -> None:
    """Add `mixnu generate` to the root app."""

    @app.command("generate")
    def generate_cmd(
        config: Annotated[Path | None, typer.Argument(help="YAML config (keys: GenerateConfig fields, see docs/eval.md).")] = None,
        out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder: suite.yaml + responses.jsonl go here.")] = None,
        model: Annotated[list[str] | None, typer.Option(
            "--model", "-m", help="NAME=PATH (local HF checkpoint), NAME=vllm:PATH, NAME=openai:MODEL@URL or "
            "NAME=openai-chat:MODEL@URL (repeatable).")] = None,
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
        from mixnu.generate import GenerateConfig, ModelSpec, generate

        models = [ModelSpec.parse(m).model_dump(exclude_none=True) for m in model] if model else None
        cli = {"out": out, "models": models, "suite": suite, "samples": samples, "max_new_tokens": max_new_tokens,
               "temperature": temperature, "top_p": top_p, "repetition_penalty": repetition_penalty, "seed": seed,
               "batch_size": batch_size, "concurrency": concurrency, "device": device}
        cfg = build_config(GenerateConfig, config, cli, sets, "command-line options (give --out and --model)")
        res = generate(cfg, quiet=quiet)
        emit(res, json_out, quiet, f"{res.generated} new and {res.reused} reused responses "
             f"({res.dropped_stale} stale dropped) in {res.responses_path} ({res.wall_s:.1f} s)")
