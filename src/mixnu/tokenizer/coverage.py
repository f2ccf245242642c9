"""Which single characters an extended Korean tokenizer must hold: a coverage policy fixed by standards.

Used by `mixnu.tokenizer.extend.extend_sentencepiece` (the `syllables`, `jamo`, `conjoining_jamo`,
`hanja_prior`, `korean_symbols`, `hanja_min_count`, `symbols_min_count` and `char_share` settings).
The standard sets themselves (KS X 1001, jamo, Unicode ranges) are in `mixnu.charsets`.

A character that is not a piece costs one byte-fallback token per UTF-8 byte (3 for Hangul and Hanja).
What one corpus happens to contain is a poor guide to what other Korean text needs (loanword
syllables, Hanja of another field, the punctuation of official documents), so the policy adds
character sets defined without any corpus:
- syllables: KS X 1001's 2,350 (`ksx1001+seen`, the default) or all 11,172 modern syllables (`all`);
- Hangul compatibility jamo (U+3131–318E, `ㅋㅋ`) and conjoining jamo (U+1100–11FF);
- Hanja: the first `hanja_prior` entries of `_data/tokenizer/hanja_prior.tsv`, KS X 1001's unified Hanja
  ranked by Korea's education list, then Unihan kFrequency and kGradeLevel (bench/hanja_prior.py);
- symbols: punctuation, symbols and numbers of KS X 1001, and of the Unicode blocks Korean text draws
  on (general and CJK punctuation, the Korean part of enclosed CJK, CJK unit squares, half- and
  full-width forms, `◯`): `｢ ｣ ․ ‧ 〈 〉 ◯ ㎏ ㎜ ･ ※ ①`.
Characters seen in the corpus (Hanja and symbols at least `*_min_count` times) are added as well.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from functools import lru_cache
from importlib import resources
from typing import Any

from mixnu.charsets import (
    all_syllables,
    compatibility_jamo,
    conjoining_jamo,
    is_hangul_char,
    is_hanja_char,
    is_syllable,
    ksx1001_chars,
    ksx1001_syllables,
    modern_conjoining_jamo,
)

KINDS = ("syllables", "jamo", "hanja", "symbols")
# Unicode ranges (inclusive) whose punctuation, symbols and numbers Korean text uses; see the docstring.
SYMBOL_RANGES = ((0x2010, 0x205E), (0x3000, 0x303F), (0x3200, 0x321E), (0x3260, 0x327F), (0x3380, 0x33DF),
                 (0xFF01, 0xFF65), (0xFFE0, 0xFFEE), (0x25EF, 0x25EF))


@lru_cache(maxsize=1)
def korean_symbols() -> tuple[str, ...]:
    """Punctuation, symbols and numbers of KS X 1001 and of SYMBOL_RANGES (no letters), in code order."""
    def psn(c: str) -> bool:
        return unicodedata.category(c)[0] in "PSN" and not is_hangul_char(c) and not is_hanja_char(c)

    chars = {c for c in ksx1001_chars() if psn(c)}
    chars |= {chr(o) for a, b in SYMBOL_RANGES for o in range(a, b + 1) if psn(chr(o))}
    return tuple(sorted(chars))


@lru_cache(maxsize=1)
def hanja_prior() -> tuple[str, ...]:
    """KS X 1001's unified Hanja and the education list, best first (see bench/hanja_prior.py)."""
    text = resources.files("mixnu").joinpath("_data/tokenizer/hanja_prior.tsv").read_text(encoding="utf-8")
    return tuple(ln.split("\t", 1)[0] for ln in text.splitlines() if ln and not ln.startswith("#"))


# ------------------------------------------------------------------------------------- selection
def policy_chars(cfg: Any) -> list[tuple[str, str]]:
    """(character, kind) pairs the policy adds whatever the corpus holds, in priority order.

    Order (it decides what a small budget keeps): KS X 1001 syllables, compatibility jamo, symbols,
    Hanja by the prior, then the other syllables (`all`), then conjoining jamo.
    """
    out: list[tuple[str, str]] = []
    if cfg.syllables in ("ksx1001+seen", "all"):
        out += [(c, "syllables") for c in ksx1001_syllables()]
    if cfg.jamo:
        out += [(c, "jamo") for c in compatibility_jamo()]
    if cfg.korean_symbols:
        out += [(c, "symbols") for c in korean_symbols()]
    out += [(c, "hanja") for c in hanja_prior()[: cfg.hanja_prior]]
    if cfg.syllables == "all":
        out += [(c, "syllables") for c in all_syllables()]
    if cfg.conjoining_jamo != "none":
        out += [(c, "jamo") for c in (conjoining_jamo() if cfg.conjoining_jamo == "all" else modern_conjoining_jamo())]
    return out


def seen_chars(chars: Counter, cfg: Any) -> list[tuple[str, str]]:
    """(character, kind) pairs of the corpus the settings add, most frequent first (code point on ties)."""
    out = []
    for c, n in sorted(chars.items(), key=lambda kv: (-kv[1], kv[0])):
        if is_syllable(c):
            if cfg.syllables != "none":
                out.append((c, "syllables"))
        elif is_hangul_char(c):
            out.append((c, "jamo"))
        elif is_hanja_char(c):
            if cfg.hanja_min_count and n >= cfg.hanja_min_count:
                out.append((c, "hanja"))
        elif (cfg.symbols_min_count and n >= cfg.symbols_min_count and c.isprintable() and not c.isspace()):
            out.append((c, "symbols"))
    return out


def select_chars(chars: Counter, base_pieces: set[str], cfg: Any, budget: int) -> tuple[list[str], dict[str, int]]:
    """Single-character pieces to add (never ones already in the base) and their counts by kind.

    Characters seen in the corpus come first, most frequent first, then the policy's characters in
    priority order. All of them take at most `cfg.char_share` of `budget` (default half), so that a small
    budget still leaves room for multi-character pieces (the rest is left out, lowest priority first).
    """
    kind_of: dict[str, str] = {}
    for c, kind in seen_chars(chars, cfg) + policy_chars(cfg):
        if c not in base_pieces:
            kind_of.setdefault(c, kind)
    out = list(kind_of)[: int(budget * cfg.char_share)]
    counts = {k: sum(1 for c in out if kind_of[c] == k) for k in KINDS}
    return out, counts
