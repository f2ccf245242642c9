"""Automatic checks of a response, computed without any judge.

They catch the failure kinds of the card's example: an answer in another language (Japanese for
a Korean prompt), loops (numbered lines repeating), noise (a flood of U+200B zero-width spaces,
control characters, runs of symbols), and empty output. They are shown beside the judge's scores
in the report; they never change a score.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

from mixnu.charsets import HANGUL, HANJA_BMP, KANA, in_ranges

ZERO_WIDTH = frozenset({"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u180e"})
_SYMBOL_RUN = re.compile(r"[^\w\s]{4,}")
_NUMBERING = re.compile(r"^\s*(?:\d+|[a-zA-Z]|[ivx]+)[.)]\s*", re.M)

# Flag thresholds (documented in docs/eval.md).
REPETITION_FLAG = 0.5   # share of repeated word 3-grams (character 5-grams for text without spaces)
DUP_LINES_FLAG = 0.5    # share of non-blank lines that repeat an earlier line (numbering ignored)
SYMBOL_RUN_FLAG = 0.1   # share of characters inside runs of >= 4 symbols
SHORT_CHARS = 5


def script_counts(text: str) -> dict[str, int]:
    """Letters by script: hangul, kana (Japanese), han (CJK ideographs in the BMP), latin, other.

    Ranges from `mixnu.charsets` (`HANGUL`, `KANA`, `HANJA_BMP`)."""
    counts = {"hangul": 0, "kana": 0, "han": 0, "latin": 0, "other": 0}
    for ch in text:
        if in_ranges(ch, HANGUL):
            counts["hangul"] += 1
        elif in_ranges(ch, KANA):
            counts["kana"] += 1
        elif in_ranges(ch, HANJA_BMP):
            counts["han"] += 1
        elif ch.isascii() and ch.isalpha() or unicodedata.category(ch).startswith("L") and "LATIN" in unicodedata.name(ch, ""):
            counts["latin"] += 1
        elif ch.isalpha():
            counts["other"] += 1
    return counts


def detect_language(text: str) -> str:
    """`ko`, `ja`, `zh`, `en` (Latin script), `other`, or `none` (no letters), by script shares.

    Japanese is told from Chinese by kana: kana are at least 10% of the CJK letters.
    """
    c = script_counts(text)
    total = sum(c.values())
    if total == 0:
        return "none"
    if c["kana"] and c["kana"] >= 0.1 * (c["kana"] + c["han"]) and c["kana"] + c["han"] > c["hangul"]:
        return "ja"
    top = max(("hangul", "han", "latin", "other"), key=lambda k: c[k])
    return {"hangul": "ko", "han": "zh", "latin": "en", "other": "other"}[top]


def expected_language(prompt: str, attribute: str | None) -> str:
    """English for the `english` attribute (the card: a prompt in English gets an answer in English), else the prompt's."""
    if attribute == "english":
        return "en"
    lang = detect_language(prompt)
    return lang if lang != "none" else "ko"


def repetition_ratio(text: str, n: int = 3) -> float:
    """Share of n-grams that repeat an earlier one: word n-grams, or character 5-grams with few spaces."""
    words = text.split()
    units: list[str] = words if len(words) >= 2 * n and len(words) * 8 >= len(text) else list(text.replace(" ", ""))
    k = n if units is words else 5
    grams = [tuple(units[i:i + k]) for i in range(len(units) - k + 1)]
    if len(grams) < 2:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def duplicate_line_ratio(text: str) -> float:
    """Share of non-blank lines equal (numbering like `3.` stripped) to an earlier line."""
    lines = [_NUMBERING.sub("", ln).strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if len(lines) < 2:
        return 0.0
    return 1.0 - len(set(lines)) / len(lines)


@dataclass(frozen=True)
class CheckResult:
    """The measurements of one response, and the names of the checks it fails (`flags`)."""

    language: str
    expected_language: str
    hangul_share: float
    repetition: float
    duplicate_lines: float
    zero_width: int
    control: int
    symbol_run_share: float
    chars: int
    words: int
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FLAGS = ("empty", "wrong_language", "repetition", "noise", "short")


def check_response(prompt: str, response: str, attribute: str | None = None) -> CheckResult:
    """Run every check on one response (see the module docstring); cheap, pure, no I/O."""
    zero_width = sum(ch in ZERO_WIDTH for ch in response)
    control = sum(unicodedata.category(ch) == "Cc" and ch not in "\n\t\r" for ch in response)
    visible = "".join(ch for ch in response if ch in "\n\t\r"
                      or (ch not in ZERO_WIDTH and unicodedata.category(ch) not in ("Cc", "Cf")))
    runs = sum(len(m.group(0)) for m in _SYMBOL_RUN.finditer(visible))
    chars = len(visible.strip())
    counts = script_counts(visible)
    letters = sum(counts.values())
    lang = detect_language(visible)
    expected = expected_language(prompt, attribute)
    result = CheckResult(
        language=lang, expected_language=expected,
        hangul_share=round(counts["hangul"] / letters, 4) if letters else 0.0,
        repetition=round(repetition_ratio(visible), 4), duplicate_lines=round(duplicate_line_ratio(visible), 4),
        zero_width=zero_width, control=control,
        symbol_run_share=round(runs / max(1, chars), 4), chars=chars, words=len(visible.split()),
    )
    flags = result.flags
    if chars == 0:
        flags.append("empty")
    else:
        if lang not in (expected, "none"):
            flags.append("wrong_language")
        if result.repetition >= REPETITION_FLAG or result.duplicate_lines >= DUP_LINES_FLAG:
            flags.append("repetition")
        if chars < SHORT_CHARS:
            flags.append("short")
    if zero_width or control or result.symbol_run_share >= SYMBOL_RUN_FLAG:
        flags.append("noise")
    return result
