"""`mixnu generate`: not built yet (issue #7). Replace this file when the stage lands."""

from __future__ import annotations

import typer

from mixnu.cli._common import PLACEHOLDER_SETTINGS, not_available


def register(app: typer.Typer) -> None:
    """Add `mixnu generate` to the root app."""

    @app.command("generate", context_settings=PLACEHOLDER_SETTINGS, help="(not available yet) Generate text from local checkpoints or an OpenAI-compatible server.")
    def _placeholder(ctx: typer.Context) -> None:
        not_available("generate", 7)
