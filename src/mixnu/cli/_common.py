"""Options and output helpers shared by the stage commands (kept tiny on purpose)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mixnu.console import stderr
from mixnu.errors import MixnuError
from mixnu.io import to_jsonable, write_json

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summaries; errors only.")]
JsonOut = Annotated[
    Path | None,
    typer.Option("--json", help="Also write the machine-readable result as JSON to this path ('-' = stdout)."),
]
Force = Annotated[bool, typer.Option("--force", help="Replace an existing output (only once the new one is complete).")]
Sets = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config field, e.g. --set lr=3e-4 or --set router.init=data (repeatable)."),
]


def emit(result: Any, json_out: Path | None, quiet: bool, summary: str | None = None) -> None:
    """Print a human summary (unless quiet) and write the JSON result where asked."""
    data = to_jsonable(result)
    if json_out is not None:
        if str(json_out) == "-":
            typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        else:
            write_json(json_out, data)
    if not quiet and summary:
        stderr.print(summary, highlight=False, soft_wrap=True)


def not_available(stage: str, issue: int) -> None:
    """Raise the error of a stage that is not built yet (it must not pretend to work)."""
    raise MixnuError(f"'mixnu {stage}' is not available yet in this version (tracked in issue #{issue})")


PLACEHOLDER_SETTINGS = {"allow_extra_args": True, "ignore_unknown_options": True}
