"""`mixnu eval annotate`: not built yet (issue #8). Replace this file when it lands."""

from __future__ import annotations

import typer

from mixnu.cli._common import PLACEHOLDER_SETTINGS, not_available


def register(group: typer.Typer) -> None:
    """Add the commands of this part to the `mixnu eval` group."""

    @group.command("annotate", context_settings=PLACEHOLDER_SETTINGS, help="(not available yet) Human verification of the judge's scores in a local web page.")
    def _placeholder(ctx: typer.Context) -> None:
        not_available("eval annotate", 8)
