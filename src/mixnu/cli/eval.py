"""`mixnu eval`: not built yet (issue #7). Replace this file when the stage lands."""

from __future__ import annotations

import typer

from mixnu.cli._common import PLACEHOLDER_SETTINGS, not_available


def register(app: typer.Typer) -> None:
    """Add `mixnu eval` to the root app."""

    @app.command("eval", context_settings=PLACEHOLDER_SETTINGS, help="(not available yet) Qualitative evaluation: LLM judge with the card's rubric, reports, human verification.")
    def _placeholder(ctx: typer.Context) -> None:
        not_available("eval", 7)
