"""`mixnu expand`: not built yet (issue #4). Replace this file when the stage lands."""

from __future__ import annotations

import typer

from mixnu.cli._common import PLACEHOLDER_SETTINGS, not_available


def register(app: typer.Typer) -> None:
    """Add `mixnu expand` to the root app."""

    @app.command("expand", context_settings=PLACEHOLDER_SETTINGS, help="(not available yet) Resize a base model to an extended tokenizer and initialise the new rows.")
    def _placeholder(ctx: typer.Context) -> None:
        not_available("expand", 4)
