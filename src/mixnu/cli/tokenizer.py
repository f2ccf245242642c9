"""`mixnu tokenizer extend|compare`: parse options, call `mixnu.tokenizer` / `mixnu.tokenizer_compare`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mixnu.cli._common import Force, JsonOut, Quiet, Sets, emit
from mixnu.config import load_config

Config = Annotated[Path | None, typer.Option(
    "--config", "-c", help="YAML file of ExtendConfig fields; they override the options above, --set overrides both.")]


def register(app: typer.Typer) -> None:
    """Add the `mixnu tokenizer` group to the root app."""
    group = typer.Typer(help="Extend a SentencePiece tokenizer with Korean pieces, and compare tokenizers.",
                        no_args_is_help=True)

    @group.command("extend")
    def extend(
        base: Annotated[Path, typer.Option(help="Base: SentencePiece BPE folder or tokenizer.model; or a byte-level "
                                           "BPE folder (tokenizer.json only) or .gguf vocab file.")],
        corpus: Annotated[list[Path], typer.Option(help="Training text file (.txt/.jsonl[.gz]); repeatable.")],
        out: Annotated[Path, typer.Option(help="Output tokenizer folder.")],
        vocab_size: Annotated[int, typer.Option(help="Total pieces in the result, base included.")] = 46262,
        config: Config = None, sets: Sets = None, force: Force = False, quiet: Quiet = False,
        json_out: JsonOut = None,
    ) -> None:
        """Train Korean BPE pieces on CORPUS and append them to BASE: exactly VOCAB_SIZE pieces.

        Writes OUT with tokenizer.model, tokenizer.json, configs and mixnu_tokenizer.json (provenance).
        Other settings (sample_lines, syllables, hanja_min_count, cross_words …) via --set or --config.
        """
        from mixnu.tokenizer import ExtendConfig, extend_tokenizer

        cfg = load_config(ExtendConfig, config, sets, defaults={
            "base": str(base), "corpus": [str(p) for p in corpus], "out": str(out), "vocab_size": vocab_size,
            "force": force, "quiet": quiet})
        res = extend_tokenizer(cfg)
        emit(res, json_out, quiet, f"wrote {res.out}: {res.vocab_size:,} pieces ({res.added:,} added: "
             f"{res.added_by_kind}) in {res.seconds:.1f} s")

    @group.command("compare")
    def compare(
        tokenizer: Annotated[list[str], typer.Option(
            help="NAME=PATH: a SentencePiece .model, a tokenizer folder or a .gguf vocab file; repeatable.")],
        text: Annotated[list[Path], typer.Option(help="Text file, one line each or domain<TAB>text; repeatable.")],
        out: Annotated[Path | None, typer.Option(help="Folder for table.md, table.csv, compare.json, PNG.")] = None,
        max_lines: Annotated[int | None, typer.Option(help="At most this many lines per text file.")] = None,
        force: Force = False, quiet: Quiet = False, json_out: JsonOut = None,
    ) -> None:
        """The card's table for any tokenizers: vocab, % byte-level tokens, tokens per line, and more."""
        from mixnu.tokenizer_compare import CompareConfig, compare_tokenizers, parse_named

        cfg = load_config(CompareConfig, None, None, defaults={
            "tokenizers": {k: str(v) for k, v in parse_named(tokenizer).items()},
            "texts": [str(p) for p in text], "out": str(out) if out else None, "max_lines": max_lines,
            "force": force, "quiet": quiet})
        res = compare_tokenizers(cfg)
        if not quiet and str(json_out) != "-":
            typer.echo(res.markdown)
        emit(res, json_out, quiet, f"wrote {out}: {', '.join(res.files)}" if out else None)

    app.add_typer(group, name="tokenizer")
