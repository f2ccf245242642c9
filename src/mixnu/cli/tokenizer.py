"""`mixnu tokenizer extend|compare`: parse options, call `mixnu.tokenizer` (`extend_tokenizer`, `compare_tokenizers`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mixnu.cli._common import Force, JsonOut, Quiet, Sets, build_config, emit

Config = Annotated[Path | None, typer.Option(
    "--config", "-c", help="YAML file of ExtendConfig fields: over the defaults, under the options given; "
    "--set wins over both.")]


def register(app: typer.Typer) -> None:
    """Add the `mixnu tokenizer` group to the root app."""
    group = typer.Typer(help="Extend a SentencePiece tokenizer with Korean pieces, and compare tokenizers.",
                        no_args_is_help=True)

    @group.command("extend")
    def extend(
        ctx: typer.Context,
        out: Annotated[Path, typer.Option(help="Output tokenizer folder.")],
        base: Annotated[Path | None, typer.Option(help="Base: SentencePiece BPE folder or tokenizer.model; or a "
                                                  "byte-level BPE folder (tokenizer.json only) or .gguf vocab file. "
                                                  "Default: Llama-2's (MIXNU_DATA or $MIXNU_SHARED/data, else built-in).")] = None,
        corpus: Annotated[list[Path] | None, typer.Option(help="Training text files (.txt/.jsonl[.gz]): several after "
                                                          "one flag (a shell glob), or repeat it. Default: the four "
                                                          "corpora (MIXNU_DATA or $MIXNU_SHARED/data, else built-in).")] = None,
        vocab_size: Annotated[int, typer.Option(help="Total pieces in the result, base included.")] = 46262,
        config: Config = None, sets: Sets = None, force: Force = False, quiet: Quiet = False,
        json_out: JsonOut = None,
    ) -> None:
        """Train Korean BPE pieces on CORPUS and append them to BASE: exactly VOCAB_SIZE pieces.

        Writes OUT with tokenizer.model, tokenizer.json, configs and mixnu_tokenizer.json (provenance).
        Other settings (sample_lines, syllables, hanja_min_count, cross_words …) via --set or --config.
        """
        from mixnu import datasets
        from mixnu.tokenizer import ExtendConfig, extend_tokenizer

        values = {}
        if config is None:  # the one data rule: explicit path, else MIXNU_DATA / MIXNU_SHARED, else built-in
            values = {"base": base or datasets.llama2_tokenizer_model(),
                      "corpus": corpus or list(datasets.corpus_files().values())}
        res = extend_tokenizer(build_config(ctx, ExtendConfig, config, sets, values=values))
        emit(res, json_out, quiet, f"wrote {res.out}: {res.vocab_size:,} pieces ({res.added:,} added: "
             f"{res.added_by_kind}) in {res.seconds:.1f} s")

    @group.command("compare")
    def compare(
        ctx: typer.Context,
        tokenizer: Annotated[list[str], typer.Option(metavar="NAME=PATH", help=(
            "A SentencePiece .model, a tokenizer folder or a .gguf vocab file: several after one flag, or repeat it."))],
        text: Annotated[list[Path], typer.Option(help="Text files, one line each or domain<TAB>text: several after "
                                                 "one flag, or repeat it.")],
        out: Annotated[Path | None, typer.Option(help="Folder for table.md, table.csv, compare.json, PNG.")] = None,
        max_lines: Annotated[int | None, typer.Option(help="At most this many lines per text file.")] = None,
        force: Force = False, quiet: Quiet = False, json_out: JsonOut = None,
    ) -> None:
        """The card's table for any tokenizers: vocab, % byte-level tokens, tokens per line, and more.

        Several --text files are shown side by side, and per domain; the characters that fell back to
        bytes are listed by kind (syllable, Hanja, jamo, symbol).
        """
        from mixnu.tokenizer import CompareConfig, compare_tokenizers, parse_named

        cfg = build_config(ctx, CompareConfig, keys={"tokenizer": "tokenizers", "text": "texts"},
                           values={"tokenizer": {k: str(v) for k, v in parse_named(tokenizer).items()}})
        res = compare_tokenizers(cfg)
        if not quiet and str(json_out) != "-":
            typer.echo(res.report)
        emit(res, json_out, quiet, f"wrote {out}: {', '.join(res.files)}" if out else None)

    app.add_typer(group, name="tokenizer")
