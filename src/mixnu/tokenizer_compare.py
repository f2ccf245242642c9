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
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from mixnu.charsets import byte_decoder, char_kind
from mixnu.config import StageConfig
from mixnu.console import progress
from mixnu.errors import ConfigError, DataError, TokenizerError
from mixnu.io import atomic_dir, check_output, iter_corpus, write_json, write_text
from mixnu.text import body_ids, normalize_text

BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")
COLUMNS = ["tokenizer", "vocab", "pct_byte", "tokens_per_line", "chars_per_token", "tokens_per_word", "relative"]
HEADERS = ["tokenizer", "vocab", "% byte-level", "avg tokens / line", "chars / token", "tokens / word",
           "length vs first"]


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
class LoadedTokenizer:
    """One tokenizer ready to encode: ids per line, which ids are byte-level, and its vocab size."""

    name: str
    path: Path
    kind: str  # "sentencepiece" | "hf" | "gguf"
    family: str  # "byte-fallback" | "byte-level" | "other"
    vocab_size: int
    byte_ids: frozenset[int]
    encode: Callable[[list[str]], list[list[int]]] = field(repr=False)
    byte_values: dict[int, bytes] = field(default_factory=dict, repr=False)  # byte-level id -> its bytes


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


# -------------------------------------------------------------------------------------- loading
def _byte_level_ids(vocab: dict[str, int]) -> frozenset[int]:
    """Ids of GPT-2 byte-level tokens whose bytes are not whole UTF-8 characters."""
    decoder = byte_decoder()
    out = set()
    for token, idx in vocab.items():
        if not all(ch in decoder for ch in token):
            continue  # an added/special token written as plain text
        try:
            bytes(decoder[ch] for ch in token).decode("utf-8")
        except UnicodeDecodeError:
            out.add(idx)
    return frozenset(out)


def _from_backend(name: str, path: Path, kind: str, tok: Any) -> LoadedTokenizer:
    import json

    backend = tok.backend_tokenizer
    spec = json.loads(backend.to_str())
    vocab = backend.get_vocab(with_added_tokens=True)
    text = json.dumps({k: spec.get(k) for k in ("pre_tokenizer", "decoder")})
    values: dict[int, bytes] = {}
    if spec.get("model", {}).get("byte_fallback"):
        family, byte_ids = "byte-fallback", frozenset(i for t, i in vocab.items() if BYTE_PIECE.match(t))
        values = {i: bytes([int(t[3:5], 16)]) for t, i in vocab.items() if i in byte_ids}
    elif '"ByteLevel"' in text:
        family, byte_ids = "byte-level", _byte_level_ids(vocab)
        decoder = byte_decoder()
        values = {i: bytes(decoder[c] for c in t) for t, i in vocab.items() if i in byte_ids}
    else:
        family, byte_ids = "other", frozenset()

    def encode(lines: list[str]) -> list[list[int]]:
        return body_ids(tok, lines)  # NFC, no BOS, special-token spellings as text (mixnu.text)

    return LoadedTokenizer(name, path, kind, family, len(tok), byte_ids, encode, values)


def _gguf_tokenizer_only(path: Path) -> Any:
    """The tokenizer of a GGUF file built by transformers' GGUF tokenizer converter alone, or None.

    `AutoTokenizer.from_pretrained(gguf_file=)` also maps the model config and refuses architectures
    it has no model for (Command-R), although the tokenizer converter reads their vocabularies.
    """
    from transformers import PreTrainedTokenizerFast
    from transformers.integrations.gguf.gguf_tokenizer_mapping import (
        convert_gguf_tokenizer,
        get_gguf_tokenizer,
    )

    try:
        architecture, spec, _config = get_gguf_tokenizer(str(path))
        backend, _extra = convert_gguf_tokenizer(architecture, spec)
        return PreTrainedTokenizerFast(tokenizer_object=backend)
    except Exception:  # not a GGUF file, or a tokenizer kind the converter lacks
        return None


def load_tokenizer(name: str, path: str | Path) -> LoadedTokenizer:
    """Load NAME=PATH (SentencePiece model, tokenizer folder, or GGUF vocab file) for comparison."""
    path = Path(path)
    if not path.exists():
        raise TokenizerError(f"{name}={path}: no such file or folder")
    if path.is_dir():
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(path)
        except Exception as exc:  # transformers raises many kinds for a broken folder
            raise TokenizerError(f"{name}={path}: not a loadable tokenizer folder ({type(exc).__name__})") from None
        if not hasattr(tok, "backend_tokenizer"):
            raise TokenizerError(f"{name}={path}: no fast tokenizer could be built from this folder")
        return _from_backend(name, path, "hf", tok)
    if path.suffix == ".gguf":
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        except Exception as exc:
            tok = _gguf_tokenizer_only(path)  # transformers loads no config for some architectures (Command-R)
            if tok is None:
                raise TokenizerError(f"{name}={path}: not a readable GGUF vocab file ({type(exc).__name__})") from None
        return _from_backend(name, path, "gguf", tok)
    import sentencepiece as spm

    try:
        sp = spm.SentencePieceProcessor(model_file=str(path))
    except Exception:
        raise TokenizerError(
            f"{name}={path}: not a SentencePiece model, tokenizer folder or .gguf file; check the path"
        ) from None
    byte_ids = frozenset(i for i in range(sp.get_piece_size()) if sp.is_byte(i))
    values = {i: bytes([int(sp.id_to_piece(i)[3:5], 16)]) for i in byte_ids}

    def encode(lines: list[str]) -> list[list[int]]:
        return sp.encode([normalize_text(x) for x in lines])

    return LoadedTokenizer(name, path, "sentencepiece", "byte-fallback", sp.get_piece_size(), byte_ids, encode,
                           values)


# ----------------------------------------------------------------------------------------- text
def read_texts(paths: list[Path], max_lines: int | None = None) -> list[tuple[str, str]]:
    """(domain, line) pairs. A file whose every line is `domain<TAB>text` keeps its domains
    (a `domain<TAB>text` header is skipped); any other file's lines get the file's stem as domain."""
    out: list[tuple[str, str]] = []
    for path in paths:
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


# -------------------------------------------------------------------------------------- metrics
def _stats(tok: LoadedTokenizer, texts: list[str], ids: list[list[int]]) -> dict[str, float]:
    tokens = sum(len(x) for x in ids)
    byte = sum(1 for x in ids for i in x if i in tok.byte_ids)
    chars = sum(len(t) for t in texts)
    words = sum(len(t.split()) for t in texts)
    return {
        "tokenizer": tok.name, "vocab": tok.vocab_size, "family": tok.family, "lines": len(texts),
        "tokens": tokens, "byte_tokens": byte, "pct_byte": 100.0 * byte / max(tokens, 1),
        "tokens_per_line": tokens / max(len(texts), 1), "chars_per_token": chars / max(tokens, 1),
        "tokens_per_word": tokens / max(words, 1),
    }


def fallback_chars(tok: LoadedTokenizer, ids: list[list[int]]) -> dict[str, dict[str, int]]:
    """kind -> {character: occurrences} of the characters encoded as byte-level tokens.

    Each run of consecutive byte-level tokens is joined and decoded as UTF-8: byte-fallback pieces
    give exactly the characters that had no piece; byte-level BPE fragments give the characters they
    split (with any whole non-space characters sharing those tokens).
    """
    out: dict[str, dict[str, int]] = {}
    for line in ids:
        run: list[bytes] = []
        for i in [*line, -1]:
            if i in tok.byte_ids:
                run.append(tok.byte_values.get(i, b""))
                continue
            if run:
                for ch in b"".join(run).decode("utf-8", errors="replace"):
                    if ch.isspace() and tok.family == "byte-level":
                        continue  # a whole space sharing a token with a fragment, not a fallback
                    kind = out.setdefault(char_kind(ch), {})
                    kind[ch] = kind.get(ch, 0) + 1
                run = []
    return {k: dict(sorted(v.items(), key=lambda kv: (-kv[1], kv[0]))) for k, v in sorted(out.items())}


def fallback_markdown(fallback: dict[str, dict[str, dict[str, int]]], top: int = 40) -> str:
    """One line per tokenizer and text part: kind: distinct characters (occurrences) and the most frequent."""
    lines = ["| tokenizer | text | kind | characters | occurrences | most frequent |", "|---|---|---|---:|---:|---|"]
    for name, parts in fallback.items():
        for part, kinds in parts.items():
            for kind, chars in kinds.items():
                shown = " ".join(repr(c)[1:-1] if not c.isprintable() else c for c in list(chars)[:top])
                lines.append(f"| {name} | {part} | {kind} | {len(chars)} | {sum(chars.values())} | {shown} |")
    return "\n".join(lines)


def side_by_side(sets: dict[str, list[dict[str, Any]]]) -> str:
    """One row per tokenizer: % byte-level and length vs the first tokenizer, one column pair per text file."""
    names = list(sets)
    head = ["tokenizer", "vocab"] + [f"{h} ({s})" for s in names for h in ("% byte-level", "length vs first")]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for k, r in enumerate(sets[names[0]]):
        cells = [r["tokenizer"], f"{r['vocab']:,}"]
        for s in names:
            cells += [f"{sets[s][k]['pct_byte']:.3f}", f"{sets[s][k]['relative']:.3f}×"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _with_relative(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    first = rows[0]["tokens"] or 1
    return [{**r, "relative": r["tokens"] / first} for r in rows]


def markdown(rows: list[dict[str, Any]]) -> str:
    """The card's table (plus chars/token, tokens/word, length relative to the first tokenizer)."""
    def fmt(col: str, v: Any) -> str:
        if col == "vocab":
            return f"{v:,}"
        if col == "relative":
            return f"{v:.3f}×"
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join(["---"] + ["---:"] * (len(HEADERS) - 1)) + "|"]
    lines += ["| " + " | ".join(fmt(c, r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def _csv(rows: list[dict[str, Any]], domains: dict[str, list[dict[str, Any]]]) -> str:
    buf = io.StringIO()
    cols = ["domain", *COLUMNS, "family", "lines", "tokens", "byte_tokens", "encode_s"]
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({"domain": "all", **r})
    for dom, drows in domains.items():
        for r in drows:
            writer.writerow({"domain": dom, **r})
    return buf.getvalue()


def plot_vocab_tokens(rows: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """PNG: vocabulary size (log x) against average tokens per line, one labelled point per tokenizer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for r in rows:
        ax.scatter(r["vocab"], r["tokens_per_line"], s=40)
        ax.annotate(r["tokenizer"], (r["vocab"], r["tokens_per_line"]), textcoords="offset points", xytext=(5, 5))
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("vocabulary size")
    ax.set_ylabel("average tokens per line")
    ax.set_title(title or "vocabulary size vs tokens per line (lower is better)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


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
    loaded = [load_tokenizer(n, p) for n, p in cfg.tokenizers.items()]
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
            rows.append({**_stats(tok, texts, ids), "encode_s": round(seconds, 4)})
            for k, sel in index.items():
                by[k].append(_stats(tok, [texts[i] for i in sel], [ids[i] for i in sel]))
            fallback[tok.name] = {d: fallback_chars(tok, [ids[i] for i in index[d]]) for d in parts}
    rows = _with_relative(rows)
    sets = {k: _with_relative(by[k]) for k in set_names}
    domains = {d: _with_relative(by[d]) for d in parts}
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
            write_text(stage / "table.csv", _csv(rows, {**sets, **domains}))
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
