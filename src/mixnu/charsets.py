"""Unicode facts mixnu needs in more than one stage: Hangul, jamo, Hanja and kana ranges, KS X 1001, and
GPT-2's byte-level alphabet. Nothing here knows about a stage (issue #17, ground layer).

Ranges are inclusive `(first, last)` code points:
- `HANGUL_SYLLABLES` U+AC00–D7A3: the 11,172 modern precomposed syllables;
- `COMPAT_JAMO` U+3131–318E: the 94 Hangul compatibility jamo (`ㅋㅋ`, `ㆍ`);
- `CONJOINING_JAMO` U+1100–11FF: the 256 conjoining jamo, modern and old;
- `HANJA_BMP`: the CJK unified ideographs block, extension A and the compatibility ideographs;
  `HANJA` adds extensions B–H (U+20000–323AF) for the tokenizer's character kinds;
- `KANA` (eval/checks.py: telling Japanese from Korean): hiragana and katakana, their phonetic
  extensions, half-width katakana.

Used by `mixnu.tokenizer` (which characters are Hangul; the coverage policy's sets; byte-level tokens)
and by `mixnu.eval.checks.script_counts` (`HANGUL`, `KANA`, `HANJA_BMP`).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

Range = tuple[int, int]

HANGUL_SYLLABLES: Range = (0xAC00, 0xD7A3)
COMPAT_JAMO: Range = (0x3131, 0x318E)
CONJOINING_JAMO: Range = (0x1100, 0x11FF)
HANGUL: tuple[Range, ...] = (HANGUL_SYLLABLES, COMPAT_JAMO, CONJOINING_JAMO)
HANJA_BMP: tuple[Range, ...] = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF))
HANJA: tuple[Range, ...] = (*HANJA_BMP, (0x20000, 0x323AF))
KANA: tuple[Range, ...] = ((0x3040, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9D))


def in_ranges(ch: str, ranges: tuple[Range, ...]) -> bool:
    """True if the code point of `ch` lies in one of `ranges` (inclusive)."""
    o = ord(ch)
    return any(a <= o <= b for a, b in ranges)


def chars_of(r: Range) -> list[str]:
    """Every character of one inclusive range, in code order."""
    return [chr(o) for o in range(r[0], r[1] + 1)]


def is_hangul_char(ch: str) -> bool:
    """Hangul syllables (U+AC00–D7A3), compatibility jamo (U+3131–318E) and jamo (U+1100–11FF)."""
    return in_ranges(ch, HANGUL)


def is_syllable(ch: str) -> bool:
    """A modern precomposed Hangul syllable (U+AC00–D7A3)."""
    return HANGUL_SYLLABLES[0] <= ord(ch) <= HANGUL_SYLLABLES[1]


def is_hanja_char(ch: str) -> bool:
    """CJK unified ideographs (BMP block, extensions A–H) and compatibility ideographs."""
    return in_ranges(ch, HANJA)


def is_hangul_piece(piece: str) -> bool:
    """A piece of Hangul characters only, optionally after one leading `▁` (SentencePiece's word start)."""
    body = piece[1:] if piece.startswith("▁") else piece
    return bool(body) and all(is_hangul_char(c) for c in body)


def char_kind(ch: str) -> str:
    """`syllable`, `conjoining jamo`, `compatibility jamo`, `hanja`, `symbol` (Unicode P*, S*, N*) or `other`."""
    if is_syllable(ch):
        return "syllable"
    if in_ranges(ch, (CONJOINING_JAMO,)):
        return "conjoining jamo"
    if in_ranges(ch, (COMPAT_JAMO,)):
        return "compatibility jamo"
    if is_hanja_char(ch):
        return "hanja"
    return "symbol" if unicodedata.category(ch)[0] in "PSN" else "other"


@lru_cache(maxsize=1)
def ksx1001_chars() -> tuple[str, ...]:
    """Every character of KS X 1001 (the EUC-KR two-byte table, 8,225 characters), in code order."""
    out = []
    for b1 in range(0xA1, 0xFF):
        for b2 in range(0xA1, 0xFF):
            try:
                out.append(bytes([b1, b2]).decode("euc_kr"))
            except UnicodeDecodeError:
                continue
    return tuple(out)


def ksx1001_syllables() -> list[str]:
    """The 2,350 precomposed Hangul syllables of KS X 1001, in code order."""
    return [c for c in ksx1001_chars() if is_syllable(c)]


def all_syllables() -> list[str]:
    """All 11,172 modern precomposed Hangul syllables (U+AC00–D7A3)."""
    return chars_of(HANGUL_SYLLABLES)


def compatibility_jamo() -> list[str]:
    """The 94 Hangul compatibility jamo (U+3131–318E)."""
    return chars_of(COMPAT_JAMO)


def conjoining_jamo() -> list[str]:
    """The 256 conjoining Hangul jamo (U+1100–11FF), modern and old."""
    return chars_of(CONJOINING_JAMO)


def modern_conjoining_jamo() -> list[str]:
    """The 67 conjoining jamo of modern Hangul: 19 initial consonants (U+1100–1112), 21 vowels
    (U+1161–1175), 27 final consonants (U+11A8–11C2) — what NFD of the 11,172 syllables uses (Unicode
    ch. 3.12, Conjoining Jamo Behavior). The other 189 are Old Hangul."""
    return [chr(o) for a, b in ((0x1100, 0x1112), (0x1161, 0x1175), (0x11A8, 0x11C2)) for o in range(a, b + 1)]


def byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: printable character -> the byte (0–255) it stands for.

    The published table (GPT-2's `bytes_to_unicode`, used by every byte-level BPE: Llama-3, Qwen2):
    printable Latin-1 bytes stand for themselves, the other 68 bytes for U+0100 onwards in byte order.
    Built here so that no internal module of transformers is needed; equal to
    `transformers.convert_slow_tokenizer.bytes_to_unicode` (tests/test_charsets.py).
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in keep}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return {u: b for b, u in table.items()}
