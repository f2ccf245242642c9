"""The numbers and tables of `mixnu tokenizer compare`: per-tokenizer statistics, the characters that
fell back to bytes, Markdown / CSV tables and the vocabulary-size plot.

Used by `mixnu.tokenizer.compare.compare_tokenizers`; `bench/tokenizer.py` and the demo report use
the table functions on their own rows.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from mixnu.charsets import char_kind
from mixnu.tokenizer.compare_load import LoadedTokenizer

COLUMNS = ["tokenizer", "vocab", "pct_byte", "tokens_per_line", "chars_per_token", "tokens_per_word", "relative"]
HEADERS = ["tokenizer", "vocab", "% byte-level", "avg tokens / line", "chars / token", "tokens / word",
           "length vs first"]


def token_stats(tok: LoadedTokenizer, texts: list[str], ids: list[list[int]]) -> dict[str, float]:
    """Counts and rates of one tokenizer on `texts` (encoded as `ids`): tokens, byte-level share, per line / word."""
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


def with_relative(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` with `relative`: each tokenizer's token count over the first one's."""
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


def table_csv(rows: list[dict[str, Any]], domains: dict[str, list[dict[str, Any]]]) -> str:
    """table.csv: one row per tokenizer for all text (`domain` = all), then per text file and domain."""
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
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=120)  # no pyplot: the caller's backend stays as it is
    ax = fig.subplots()
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

