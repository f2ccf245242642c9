"""`mixnu demo`: the recipe end to end at toy scale (parses options, calls `mixnu.demo.run_demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mixnu.cli._common import Force, JsonOut, Quiet, Sets, build_config

DEFAULT_RECIPE = Path(__file__).resolve().parents[3] / "recipes" / "toy" / "demo.yaml"


def register(app: typer.Typer) -> None:
    """Add `mixnu demo` to the root app."""

    @app.command("demo")
    def demo(
        ctx: typer.Context,
        out: Annotated[Path, typer.Option("--out", help="Results folder to write.")] = Path("demo-out"),
        data: Annotated[Path | None, typer.Option("--data", help="Folder with one corpus file per domain, or a data folder (corpus/, eval/) from `mixnu data prepare`; default: MIXNU_DATA or $MIXNU_SHARED/data, else built-in.")] = None,
        config: Annotated[Path | None, typer.Option("--config", help="YAML file of DemoConfig fields (default recipes/toy/demo.yaml if present).")] = None,
        fast: Annotated[bool, typer.Option("--fast", help="A few steps of everything: checks the pipeline, not the targets.")] = False,
        sets: Sets = None,
        force: Force = False,
        quiet: Quiet = False,
        json_out: JsonOut = None,
    ) -> None:
        """Run the whole recipe end to end at toy scale on a CPU and write a results folder."""
        from mixnu.cli._common import emit
        from mixnu.demo import DemoConfig, run_demo

        if config is None and DEFAULT_RECIPE.is_file():
            config = DEFAULT_RECIPE
        result = run_demo(build_config(ctx, DemoConfig, config, sets))
        emit(result, json_out, quiet, f"{result.table}\n\ntotal {result.wall_s / 60:.1f} min; "
                                      f"results in {result.out}/ (summary.md, results.json, PNGs)")
