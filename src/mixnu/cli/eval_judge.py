"""`mixnu eval judge`: not built yet (issue #7). Replace this file when it lands."""

from __future__ import annotations

import typer

from mixnu.cli._common import PLACEHOLDER_SETTINGS, not_available


def register(group: typer.Typer) -> None:
    """Add the commands of this part to the `mixnu eval` group."""

    @group.command("judge", context_settings=PLACEHOLDER_SETTINGS, help="(not available yet) Judge responses with an LLM using the card's rubric.")
    def _placeholder(ctx: typer.Context) -> None:
        not_available("eval judge", 7)
