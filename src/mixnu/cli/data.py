"""`mixnu data list|export|prepare`: parse options, call `mixnu.datasets` / `mixnu.data_prepare`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mixnu.cli._common import Force, JsonOut, Quiet, emit


def register(app: typer.Typer) -> None:
    """Add the `mixnu data` group to the root app."""
    group = typer.Typer(help="The built-in data (Korean corpora, eval sets, Llama-2 tokenizer) and your own.",
                        no_args_is_help=True)

    @group.command("list")
    def list_(json_out: JsonOut = None, quiet: Quiet = False) -> None:
        """Built-in files: dataset, domain, lines, characters, sizes and licence (see DATA_LICENSES.md)."""
        from mixnu.datasets import builtin_table, manifest

        rows = builtin_table()
        lines = [f"{r['file']:<36} {r['domain'] or '-':<10} "
                 + (f"{r['lines']:>7,} lines {r['chars']:>10,} chars " if r["lines"] else " " * 31)
                 + f"{r['bytes'] / 1e6:5.2f} MB ({r['xz_bytes'] / 1e6:.2f} xz)  {r['licence']}" for r in rows]
        total = sum(r["xz_bytes"] for r in rows) / 1e6
        m = manifest()
        emit({"name": m["name"], "version": m["version"], "files": rows}, json_out, quiet,
             "\n".join([*lines, f"{m['name']} v{m['version']}: {len(rows)} files, {total:.2f} MB in the package"]))

    @group.command("export")
    def export(
        out: Annotated[Path, typer.Argument(help="Folder to write (corpus/, eval/, tokenizers/llama-2/).")],
        force: Force = False, quiet: Quiet = False, json_out: JsonOut = None,
    ) -> None:
        """Write the built-in data as plain files, in the layout `mixnu demo --data` and MIXNU_DATA take."""
        from mixnu.datasets import export_builtin

        files = export_builtin(out, force=force)
        emit({"out": out, "files": files}, json_out, quiet, f"wrote {out}: {len(files)} files")

    @group.command("prepare")
    def prepare(
        out: Annotated[Path, typer.Argument(help="Data folder to write (corpus/, eval/, data.json).")],
        sources: Annotated[list[str], typer.Argument(
            help="DOMAIN=SOURCE, repeatable: a .txt/.jsonl[.gz] file, a datasets folder, or hf:NAME.")],
        text_field: Annotated[str, typer.Option(help="JSONL field / dataset column with the text.")] = "text",
        split: Annotated[str, typer.Option(help="Split of a Hugging Face dataset.")] = "train",
        heldout: Annotated[float, typer.Option(help="Fraction of each domain held out (its last lines).")] = 0.05,
        max_lines: Annotated[int | None, typer.Option(help="At most this many lines per domain.")] = None,
        force: Force = False, quiet: Quiet = False, json_out: JsonOut = None,
    ) -> None:
        """Turn your text into the data folder layout, with a deterministic held-out split."""
        from mixnu.config import validate_config
        from mixnu.data_prepare import PrepareConfig, parse_sources, prepare_data

        cfg = validate_config(PrepareConfig, {
            "out": str(out), "sources": parse_sources(sources), "text_field": text_field, "split": split,
            "heldout": heldout, "max_lines": max_lines, "force": force}, "mixnu data prepare")
        res = prepare_data(cfg)
        emit(res, json_out, quiet, f"wrote {res.out}: " + "; ".join(
            f"{d} {v['train_lines']:,} + {v['heldout_lines']:,} held-out lines" for d, v in res.domains.items()))

    app.add_typer(group, name="data")
