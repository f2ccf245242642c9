"""The `mixnu` command line: one sub-command (group) per stage of the recipe.

This package only parses arguments and calls the library. Each stage's commands live in
`mixnu/cli/<stage>.py` and expose `register(app)`; `main()` catches `MixnuError` (and a pydantic
`ValidationError` of an option value a command passed straight into its config) once, prints
one line (`mixnu: error: ...`) and exits 1. Other exceptions keep their traceback (they are bugs).
"""

from __future__ import annotations

import typer
from pydantic import ValidationError

from mixnu import __version__
from mixnu.cli import data, demo, expand, generate, merge, model, ppl, route, tokenizer, train
from mixnu.cli import eval as eval_cli
from mixnu.cli._common import expand_list_options
from mixnu.config import format_validation_error
from mixnu.console import stderr
from mixnu.errors import MixnuError

app = typer.Typer(
    name="mixnu",
    help=(
        "Build and evaluate Mixnu-style models: extend a tokenizer, expand a Llama base, train "
        "domain experts, merge them into a Mixtral MoE, train its router, and judge the result."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _stage in (model, tokenizer, expand, train, merge, route, ppl, generate, eval_cli, demo, data):
    _stage.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mixnu {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Root options."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mixnu` console script (list options take several values: `expand_list_options`)."""
    import sys

    command = typer.main.get_command(app)  # what `app(...)` builds and calls, built once here
    args = expand_list_options(command, list(sys.argv[1:] if argv is None else argv))
    try:
        rc = command(args=args, standalone_mode=False)
    except MixnuError as exc:
        stderr.print(f"[red]mixnu: error:[/red] {exc}", highlight=False, soft_wrap=True)
        return 1
    except ValidationError as exc:  # an option value a command passed straight into its config
        stderr.print(f"[red]mixnu: error:[/red] {format_validation_error(exc, 'option')}", highlight=False,
                     soft_wrap=True)
        return 1
    except typer.Abort:
        stderr.print("mixnu: aborted")
        return 130
    except KeyboardInterrupt:
        stderr.print("mixnu: interrupted")
        return 130
    except SystemExit as exc:  # click's own usage errors and --help
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except typer.TyperException as exc:  # usage errors (unknown option, bad value): click prints them
        show = getattr(exc, "show", None)
        if show is None:
            raise
        show()
        return int(getattr(exc, "exit_code", 2))
    return rc if isinstance(rc, int) else 0

