"""`mixnu route`: not built yet (issue #6). Replace this file when the stage lands."""

from __future__ import annotations

import typer

from mixnu.cli._common import PLACEHOLDER_SETTINGS, not_available


def register(app: typer.Typer) -> None:
    """Add `mixnu route` to the root app."""

    @app.command("route", context_settings=PLACEHOLDER_SETTINGS, help="(not available yet) Train the router of a merged MoE (load-balancing loss); analyse routing.")
    def _placeholder(ctx: typer.Context) -> None:
        not_available("route", 6)
