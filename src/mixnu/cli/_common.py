"""Options, the one override rule, list options and output helpers shared by the stage commands.

- `build_config`: every command builds its config the same way: the command's defaults < `--config`
  YAML < flags given on the command line < `--set KEY=VALUE` (later wins).
- `expand_list_options`: a list option takes several values after one flag (`--corpus a.txt b.txt`,
  what a shell glob gives) as well as a repeated flag; `main()` applies it to every command.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel

from mixnu.config import load_config
from mixnu.console import stderr
from mixnu.io import to_jsonable, write_json

C = TypeVar("C", bound=BaseModel)

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summaries; errors only.")]
JsonOut = Annotated[
    Path | None,
    typer.Option("--json", help="Also write the machine-readable result as JSON to this path ('-' = stdout)."),
]
Force = Annotated[bool, typer.Option("--force", help="Replace an existing output (only once the new one is complete).")]
Sets = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="KEY=VALUE", help="Override a field of this command's config (the names --config takes; dotted for nested "
                 "ones, e.g. merge's router.init=data); several after one flag, or repeat it; wins over "
                 "--config and the other flags."),
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


# ---- the one override rule --------------------------------------------------------------------------

# Parameter sources (click's `ParameterSource` names; typer vendors its own click, so compare names).
_GIVEN = ("COMMANDLINE", "ENVIRONMENT", "PROMPT")


def _plain(value: Any) -> Any:
    """Paths as strings (YAML and pydantic see the same values), recursively."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def build_config(ctx: typer.Context, cls: type[C], config: Path | None = None, sets: list[str] | None = None,
                 keys: dict[str, str] | None = None, values: dict[str, Any] | None = None,
                 source: str = "command-line options") -> C:
    """A command's config by the one rule: its defaults < `--config` YAML < flags given < `--set`.

    Every parameter of the command whose name (or `keys[name]`, a dotted config key) names a field of
    `cls` takes part: at its default it sits below the YAML; typed on the command line it wins over
    the YAML. `values[name]` replaces a parameter's parsed value (e.g. `NAME=PATH` strings made into a
    mapping). Parameters that are None or empty are left out.
    """
    keys, values = keys or {}, values or {}
    defaults: dict[str, Any] = {}
    given: dict[str, Any] = {}
    for name, value in ctx.params.items():
        key = keys.get(name, name)
        if key.split(".")[0] not in cls.model_fields:
            continue
        value = values.get(name, value)
        if value is None or (isinstance(value, list | tuple | dict) and not value):
            continue
        source_of = ctx.get_parameter_source(name)
        (given if getattr(source_of, "name", None) in _GIVEN else defaults)[key] = value
    return load_config(cls, config, sets, _plain(defaults), _plain(given), source)


# ---- several values after one list flag -------------------------------------------------------------

_NUMBER = re.compile(r"-\d+(\.\d*)?([eE][-+]?\d+)?")


def _leaf_command(root: Any, args: list[str]) -> tuple[Any, int]:
    """The (sub)command `args` invoke and the index where its own arguments start (click objects,
    duck-typed: typer builds them with its own vendored copy of click)."""
    cmd, i = root, 0
    while hasattr(cmd, "commands") and i < len(args):
        if args[i].startswith("-"):
            i += 1  # a group's own flags (--version, --help) take no value
            continue
        sub = cmd.commands.get(args[i])
        if sub is None:
            break
        cmd, i = sub, i + 1
    return cmd, i


def expand_list_options(root: Any, args: list[str]) -> list[str]:
    """`--corpus a b c` -> `--corpus a --corpus b --corpus c` for every list (`multiple`) option.

    Values after a list flag belong to it up to the next flag (or `--`). When the option's metavar
    holds `=` (`KEY=VALUE`, `NAME=PATH`), only values holding `=` continue it, so a positional
    argument may follow: `mixnu merge --expert a=x b=y merge.yaml`.
    """
    cmd, start = _leaf_command(root, args)
    lists = {o: "=" in (p.metavar or "") for p in cmd.params
             if getattr(p, "param_type_name", "") == "option" and getattr(p, "multiple", False)
             for o in (*p.opts, *p.secondary_opts)}
    if not lists:
        return list(args)
    out, current, keyed, needs_value = list(args[:start]), None, False, False
    for i, tok in enumerate(args[start:], start):
        if tok == "--":
            return out + list(args[i:])
        if tok.startswith("-") and len(tok) > 1 and not _NUMBER.fullmatch(tok):
            name = tok.split("=", 1)[0]
            current, keyed = (name, lists[name]) if name in lists else (None, False)
            needs_value = current is not None and "=" not in tok  # its first value is click's to parse
            out.append(tok)
        elif needs_value:
            needs_value = False
            out.append(tok)
        elif current is not None and (not keyed or "=" in tok):
            out += [current, tok]
        else:
            current = None
            out.append(tok)
    return out
