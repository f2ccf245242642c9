"""`mixnu merge`: not built yet (issue #5). Replace this file when the stage lands."""

from __future__ import annotations

import typer

from mixnu.cli._common import PLACEHOLDER_SETTINGS, not_available


def register(app: typer.Typer) -> None:
    """Add `mixnu merge` to the root app."""

    @app.command("merge", context_settings=PLACEHOLDER_SETTINGS, help="(not available yet) Merge expert checkpoints into one Mixtral MoE checkpoint.")
    def _placeholder(ctx: typer.Context) -> None:
        not_available("merge", 5)
