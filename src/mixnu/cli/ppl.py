"""`mixnu ppl`: held-out bits per character and perplexity per token, per domain (parses, calls
`mixnu.perplexity.evaluate_perplexity`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mixnu.cli._common import Force, JsonOut, Quiet, Sets, build_config

DataOpt = Annotated[
    list[str] | None,
    typer.Option("--data", help="Domain text files as NAME=FILE (or FILE: named after the file): several after "
                 "one flag (a shell glob), or repeat it."),
]


def parse_data(items: list[str] | None) -> dict[str, str] | None:
    """`["law=a.txt", "b_heldout.txt"]` -> `{"law": "a.txt", "b": "b_heldout.txt"}`."""
    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        name, _, path = item.partition("=") if "=" in item else ("", "", item)
        if not name:
            name = Path(path).name.split(".")[0].removesuffix("_heldout")
        out[name] = path
    return out


def register(app: typer.Typer) -> None:
    """Add `mixnu ppl` to the root app."""

    @app.command("ppl")
    def ppl(
        ctx: typer.Context,
        model: Annotated[list[Path] | None, typer.Option("--model", help=(
            "Model folders to compare (one row each): several after one flag, or repeat it."))] = None,
        data: DataOpt = None,
        tokenizer: Annotated[Path | None, typer.Option("--tokenizer", help="Tokenizer folder (default: the model's).")] = None,
        max_length: Annotated[int | None, typer.Option("--max-length", help="Tokens per window (default 256).")] = None,
        stride: Annotated[int | None, typer.Option("--stride", help="Tokens between windows of a long line (default max-length/2).")] = None,
        batch_size: Annotated[int | None, typer.Option("--batch-size", help="Windows per forward pass (default 8).")] = None,
        max_chars: Annotated[int | None, typer.Option("--max-chars", help="Score only the first lines of each file, up to N characters.")] = None,
        device: Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:N or auto (default cpu).")] = None,
        out: Annotated[Path | None, typer.Option("--out", help="Folder to write ppl.json and ppl.md.")] = None,
        config: Annotated[Path | None, typer.Option("--config", help="YAML file of PplConfig fields.")] = None,
        sets: Sets = None,
        force: Force = False,
        quiet: Quiet = False,
        json_out: JsonOut = None,
    ) -> None:
        """Held-out bits per character (tokenizer-independent) and perplexity per token, per domain."""
        from mixnu.cli._common import emit
        from mixnu.perplexity import PplConfig, evaluate_perplexity

        result = evaluate_perplexity(build_config(ctx, PplConfig, config, sets, keys={"model": "models"},
                                                  values={"data": parse_data(data)}))
        emit(result, json_out, quiet, result.table)
