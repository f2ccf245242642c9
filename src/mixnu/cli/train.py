"""`mixnu train`: not built yet (issue #4). Replace this file when the stage lands."""

from __future__ import annotations

import typer

from mixnu.cli._common import PLACEHOLDER_SETTINGS, not_available


def register(app: typer.Typer) -> None:
    """Add `mixnu train` to the root app."""

    @app.command("train", context_settings=PLACEHOLDER_SETTINGS, help="(not available yet) Continue-pretrain a model (one expert) through Accelerate.")
    def _placeholder(ctx: typer.Context) -> None:
        not_available("train", 4)
