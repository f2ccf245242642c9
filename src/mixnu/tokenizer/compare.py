"""Compare tokenizers on text: the model card's table (vocab, % byte-level tokens, tokens per line), and more.

Entry point: `compare_tokenizers(CompareConfig) -> CompareResult` (`mixnu tokenizer compare`).

A tokenizer is given as NAME=PATH, where PATH is
- a SentencePiece model file (`*.model`): encoded with the `sentencepiece` library itself;
- a Hugging Face tokenizer folder: encoded with its fast tokenizer (`tokenizers`);
- a GGUF vocab file (`*.gguf`, e.g. llama.cpp's `ggml-vocab-*.gguf`): loaded by transformers.

"Byte-level" tokens (the card's "% UNK"):
- byte-fallback tokenizers (SentencePiece, Llama-2): the `<0xNN>` byte pieces;
- byte-level BPE (GPT-2 style: Llama-3, Qwen2): a token whose bytes are not valid UTF-8 on their
  own, i.e. it does not decode to whole characters (a piece of a character split across tokens).
Texts are NFC-normalised and encoded without special tokens (no BOS); text that spells a special token
(`<s>`) is encoded as text (`mixnu.text.body_ids`). Words are space-separated (Korean eojeol).
Several text files (e.g. a dev set and an out-of-domain set) are reported side by side, each overall
and per domain; the characters that fell back to bytes are listed by kind (syllable, Hanja, jamo,
symbol) for every tokenizer, text file and domain.

Loading: `mixnu.tokenizer.compare_load`; statistics, tables and the plot: `mixnu.tokenizer.compare_tables`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from mixnu.config import StageConfig
from mixnu.console import progress
from mixnu.errors import ConfigError, DataError
from mixnu.io import atomic_dir, check_output, iter_corpus, write_json, write_text
from mixnu.tokenizer.compare_load import open_for_compare
from mixnu.tokenizer.compare_tables import (
    fallback_chars,
    fallback_markdown,
    markdown,
    plot_vocab_tokens,
    side_by_side,
    table_csv,
    token_stats,
    with_relative,
)


class CompareConfig(StageConfig):
    """Settings of `compare_tokenizers` (CLI: `mixnu tokenizer compare`)."""

    tokenizers: dict[str, Path] = Field(min_length=1, description="NAME -> model file, folder or GGUF file.")
    texts: list[Path] = Field(min_length=1, description="Text files: one line each, or domain<TAB>text.")
    out: Path | None = Field(None, description="Folder for table.md, table.csv, compare.json, vocab_tokens.png.")
    force: bool = False
    max_lines: int | None = Field(None, gt=0, description="Use at most this many lines per text file.")
    quiet: bool = True

    @field_validator("tokenizers")
    @classmethod
    def _names(cls, v: dict[str, Path]) -> dict[str, Path]:
        for name in v:
            if not name or "," in name or "\n" in name:
                raise ValueError(f"bad tokenizer name {name!r}")
        return v



@dataclass(frozen=True)
class CompareResult:
    """Rows of the comparison (all text, per text file, per domain), the Markdown table, files written.

    With several text files, `domains` is keyed `FILE/DOMAIN` (FILE: the file's stem). `fallback` maps
    tokenizer -> FILE/DOMAIN (or DOMAIN) -> kind -> {character: occurrences that fell back to bytes}.
    """

    rows: list[dict[str, Any]]
    domains: dict[str, list[dict[str, Any]]]
    lines: int
    markdown: str
    files: list[str]
    sets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    fallback: dict[str, dict[str, dict[str, dict[str, int]]]] = field(default_factory=dict)
    report: str = ""  # everything table.md holds: overall, side by side, per file and domain, fallback



# ----------------------------------------------------------------------------------------- text
def read_texts(paths: list[Path], max_lines: int | None = None) -> list[tuple[str, str]]:
    """(domain, line) pairs. A file whose every line is `domain<TAB>text` keeps its domains
    (a `domain<TAB>text` header is skipped); any other file's lines get the file's stem as domain."""
    out: list[tuple[str, str]] = []
    for path in paths:
        if not Path(path).is_file():
            raise DataError(f"{path}: text file not found; check the --text path")
        lines = []
        for line in iter_corpus(path):
            lines.append(line)
            if max_lines is not None and len(lines) > max_lines:
                break
        tsv = all("\t" in ln and 0 < len(ln.split("\t", 1)[0]) <= 40 and " " not in ln.split("\t", 1)[0]
                  for ln in lines)
        if tsv and lines[0].strip().lower() == "domain\ttext":
            lines = lines[1:]
        lines = lines[:max_lines] if max_lines is not None else lines
        for ln in lines:
            if tsv:
                domain, text = ln.split("\t", 1)
                out.append((domain.strip(), text))
            else:
                out.append((path.stem, ln))
    if not out:
        raise DataError("no text lines to compare on; give non-empty --text files")
    return out



# ----------------------------------------------------------------------------------------- entry
def _read_sets(paths: list[Path], max_lines: int | None) -> list[tuple[str, str, str]]:
    """(part, domain, text) triples; part is `DOMAIN` for one file, `FILE/DOMAIN` (file stem) for several."""
    stems: list[str] = []
    for p in paths:
        stem = p.stem if p.stem not in stems else f"{p.stem}{len(stems) + 1}"
        stems.append(stem)
    out = []
    for stem, path in zip(stems, paths, strict=True):
        for dom, text in read_texts([path], max_lines):
            out.append((stem, dom if len(paths) == 1 else f"{stem}/{dom}", text))
    return out


def compare_tokenizers(cfg: CompareConfig) -> CompareResult:
    """Encode every text line with every tokenizer and tabulate the statistics.

    Inputs: tokenizers (NAME -> path), text files. Returns rows for all lines, per text file (`sets`,
    several files only) and per domain, the characters that fell back to bytes by kind, and the
    Markdown table. If `cfg.out` is set, writes atomically into that folder: `table.md` (all text,
    the files side by side, one table per file and domain, the byte-fallback characters),
    `table.csv`, `compare.json` and `vocab_tokens.png`.
    """
    if cfg.out is not None:
        check_output(cfg.out, cfg.force)
    rows_in = _read_sets(list(cfg.texts), cfg.max_lines)
    texts = [t for _, _, t in rows_in]
    set_names = list(dict.fromkeys(s for s, _, _ in rows_in)) if len(cfg.texts) > 1 else []
    parts = sorted({d for _, d, _ in rows_in})
    index = {k: [i for i, r in enumerate(rows_in) if k in (r[0], r[1])] for k in [*set_names, *parts]}
    loaded = [open_for_compare(n, p) for n, p in cfg.tokenizers.items()]
    rows: list[dict[str, Any]] = []
    by = {k: [] for k in index}
    fallback: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
    with progress(cfg.quiet, "lines") as bar:
        task = bar.add_task("encoding", total=len(texts) * len(loaded))
        for tok in loaded:
            t0 = time.perf_counter()
            ids = tok.encode(texts)
            seconds = time.perf_counter() - t0
            bar.advance(task, len(texts))
            rows.append({**token_stats(tok, texts, ids), "encode_s": round(seconds, 4)})
            for k, sel in index.items():
                by[k].append(token_stats(tok, [texts[i] for i in sel], [ids[i] for i in sel]))
            fallback[tok.name] = {d: fallback_chars(tok, [ids[i] for i in index[d]]) for d in parts}
    rows = with_relative(rows)
    sets = {k: with_relative(by[k]) for k in set_names}
    domains = {d: with_relative(by[d]) for d in parts}
    md = markdown(rows)
    full = md
    if sets:
        full += "\n\n### side by side\n\n" + side_by_side(sets)
        full += "".join(f"\n\n### {k}\n\n" + markdown(r) for k, r in sets.items())
    if len(parts) > 1 or parts[0] != "all":
        full += "".join(f"\n\n### {d}\n\n" + markdown(r) for d, r in domains.items())
    full += "\n\n### characters that fell back to bytes, by kind\n\n" + fallback_markdown(fallback)
    files: list[str] = []
    if cfg.out is not None:
        with atomic_dir(cfg.out, force=cfg.force) as stage:
            write_text(stage / "table.md", full + "\n")
            write_text(stage / "table.csv", table_csv(rows, {**sets, **domains}))
            write_json(stage / "compare.json", {
                "tokenizers": {t.name: {"path": str(t.path), "kind": t.kind, "family": t.family} for t in loaded},
                "texts": [str(p) for p in cfg.texts], "lines": len(texts), "rows": rows, "sets": sets,
                "domains": domains, "fallback": fallback,
            })
            plot_vocab_tokens(rows, stage / "vocab_tokens.png")
            files = sorted(p.name for p in stage.iterdir())
    return CompareResult(rows=rows, domains=domains, lines=len(texts), markdown=md, files=files, sets=sets,
                         fallback=fallback, report=full)


def parse_named(items: list[str]) -> dict[str, Path]:
    """`["A=path", ...]` -> {"A": Path}; a bare path is named after its file or folder."""
    out: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).stem or item, item
        if not name or not path:
            raise ConfigError(f"--tokenizer {item!r}: expected NAME=PATH")
        if name in out:
            raise ConfigError(f"--tokenizer name {name!r} is used twice; give each tokenizer its own name")
        out[name] = Path(path)
    return out
