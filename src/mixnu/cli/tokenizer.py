"""`mixnu tokenizer`: not built yet (issue #3). Replace this file when the stage lands."""

from __future__ import annotations

import typer

from mixnu.cli._common import PLACEHOLDER_SETTINGS, not_available


def register(app: typer.Typer) -> None:
    """Add `mixnu tokenizer` to the root app."""

    @app.command("tokenizer", context_settings=PLACEHOLDER_SETTINGS, help="(not available yet) Extend a SentencePiece tokenizer with new-language pieces, and compare tokenizers.")
    def _placeholder(ctx: typer.Context) -> None:
        not_available("tokenizer", 3)
