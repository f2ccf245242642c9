"""`mixnu expand`: resize a base model to an extended tokenizer (parses options, calls `mixnu.expand`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mixnu.cli._common import Force, JsonOut, Quiet, Sets, build_config


def register(app: typer.Typer) -> None:
    """Add `mixnu expand` to the root app."""

    @app.command("expand")
    def expand(
        ctx: typer.Context,
        model: Annotated[Path | None, typer.Option("--model", help="Base checkpoint folder (with its tokenizer).")] = None,
        tokenizer: Annotated[Path | None, typer.Option("--tokenizer", help="Extended tokenizer folder.")] = None,
        out: Annotated[Path | None, typer.Option("--out", help="Output checkpoint folder.")] = None,
        init: Annotated[str | None, typer.Option("--init", help="New input rows: subword-mean (EEVE), mean or random.")] = None,
        output_init: Annotated[str | None, typer.Option("--output-init", help="Untied head rows for subword-mean: mean (default) or first (EEVE).")] = None,
        pad_to_multiple_of: Annotated[int | None, typer.Option("--pad-to-multiple-of", help="Pad vocab rows to a multiple (e.g. 64).")] = None,
        config: Annotated[Path | None, typer.Option("--config", help="YAML file of ExpandConfig fields.")] = None,
        sets: Sets = None,
        force: Force = False,
        quiet: Quiet = False,
        json_out: JsonOut = None,
    ) -> None:
        """Resize a base model's embeddings and head to an extended tokenizer; old rows stay bit-identical."""
        from mixnu.cli._common import emit
        from mixnu.expand import ExpandConfig, expand_model

        r = expand_model(build_config(ctx, ExpandConfig, config, sets))
        emit(r, json_out, quiet, f"expanded {r.base_vocab_size} -> {r.new_vocab_size} pieces ({r.padded_vocab_size} rows, "
                                 f"init {r.init}) in {r.out}/")
