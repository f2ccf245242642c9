"""`mixnu demo`: the recipe end to end at toy scale (parses options, calls `mixnu.demo.run_demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mixnu.cli._common import Force, JsonOut, Quiet, Sets


def register(app: typer.Typer) -> None:
    """Add `mixnu demo` to the root app."""

    @app.command("demo")
    def demo(
        out: Annotated[Path, typer.Option("--out", help="Results folder to write.")] = Path("demo-out"),
        data: Annotated[Path | None, typer.Option("--data", help="Folder with one corpus file per domain.")] = None,
        config: Annotated[Path | None, typer.Option("--config", help="YAML file of DemoConfig fields.")] = None,
        sets: Sets = None,
        force: Force = False,
        quiet: Quiet = False,
        json_out: JsonOut = None,
    ) -> None:
        """Run the whole recipe end to end at toy scale on a CPU and write a results folder."""
        from mixnu.cli._common import emit
        from mixnu.config import load_config
        from mixnu.demo import DemoConfig, run_demo

        defaults = {"out": str(out), "data": str(data) if data else None, "force": force, "quiet": quiet}
        cfg = load_config(DemoConfig, config, sets, defaults=defaults)
        result = run_demo(cfg)
        emit(result, json_out, quiet, f"demo results in {result.out}/ (summary.md, results.json)")
