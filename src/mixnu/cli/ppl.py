"""`mixnu ppl`: not built yet (issue #6). Replace this file when the stage lands."""

from __future__ import annotations

import typer

from mixnu.cli._common import PLACEHOLDER_SETTINGS, not_available


def register(app: typer.Typer) -> None:
    """Add `mixnu ppl` to the root app."""

    @app.command("ppl", context_settings=PLACEHOLDER_SETTINGS, help="(not available yet) Held-out bits per character and perplexity per domain.")
    def _placeholder(ctx: typer.Context) -> None:
        not_available("ppl", 6)
