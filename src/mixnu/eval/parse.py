"""Reading the judge's scores out of its reply: `parse_reply(text, letters) -> ParsedReply`.

A judge is asked for JSON, but real judges answer in many shapes. Accepted, in this order:

1. JSON anywhere in the reply (bare, fenced, inside prose): `{"A": {"fluency": 4, …}}`, a wrapper
   (`{"scores": {…}}`), one object per criterion (`{"A": {"fluency": {"score": 4, "reason": "…"}}}`),
   a list per letter (`{"A": [4, 5, 3]}`), a list of entries (`[{"model": "A", "fluency": 4, …}]`),
   or criteria first (`{"fluency": {"A": 4, "B": 3}}`). Cut-off JSON is salvaged by step 3.
2. A Markdown table, a row per model (`| A | 5 | 4 | 3 |` under `| Model | Fluency | … |`) or a
   row per criterion (`| Fluency | 5 | 3 |` under `| | A | B |`).
3. Free text in sections: `Model A: Fluency: 5, Relevance: 5 …`, `**A**`, `### Model B`, `- **Fluency:** 4`,
   `**Fluency**: 4`, `Fluency (1-5): 4`, `fluency 3/5`. A section starts at a *header*: `Model X` /
   `Response X` followed by `:`, `-`, `)` or the end of the line, anywhere; or a bare letter
   (`A:`, `**A**`, `(A)`, `<A>`, `[A]`, `A)`) only at the start of a line. Letters are upper case:
   `(a)`/`(b)` enumerations inside a response's text are prose, not headers.

A score is never moved to another model: a value before any header (with more than one model
shown), the same (model, criterion) given two different values, or a header of a letter not shown
holding scores makes the reply *ambiguous*; an ambiguous reply yields no score at all.
Every shown (letter, criterion) ends as an integer 1–5 or None (missing, not an integer, out of
range: never 0). `ParsedReply.problem` says why a reply is incomplete, so the judge can be asked again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mixnu.eval.criteria import CRITERIA


@dataclass(frozen=True)
class ParsedReply:
    """Scores per shown letter × criterion (None = missing or invalid) and what, if anything, is wrong."""

    scores: dict[str, dict[str, int | None]]
    problem: str | None = None  # None when every score is a valid integer 1–5
    ambiguous: bool = False
    read: bool = False          # some value (valid or not) was attributed to a shown model

    @property
    def valid(self) -> int:
        """How many (letter, criterion) scores are valid integers 1–5."""
        return sum(v is not None for s in self.scores.values() for v in s.values())

    @property
    def complete(self) -> bool:
        return self.problem is None


class _Ambiguous(Exception):
    """Raised inside the parsers when a score cannot be attributed to exactly one model."""


def as_score(value: Any) -> int | None:
    """An integer 1–5, else None (never 0): 4, 4.0 and "4" count; 4.5, 7, "four", True do not."""
    if type(value) is int:  # the common case first
        return value if 1 <= value <= 5 else None
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        value = int(value)
    return value if isinstance(value, int) and 1 <= value <= 5 else None


def _put(found: dict[str, dict[str, Any]], letter: str, crit: str, value: Any) -> None:
    """Record one raw value; the same (letter, criterion) with a different value is ambiguous."""
    have = found.setdefault(letter, {})
    if crit in have and have[crit] != value:
        raise _Ambiguous(f"model {letter} was given two {crit} scores ({have[crit]!r} and {value!r})")
    have[crit] = value


# ---- JSON --------------------------------------------------------------------------------------------

def _json_candidates(text: str) -> Iterator[Any]:
    """Whole text, then every balanced {...} / [...] block that json.loads accepts (lazily)."""
    stripped = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
    try:
        yield json.loads(stripped)
    except json.JSONDecodeError:
        pass
    starts = [i for i, ch in enumerate(text) if ch in "{["]
    for s in starts[:50]:
        depth = 0
        for j in range(s, len(text)):
            depth += {"{": 1, "[": 1, "}": -1, "]": -1}.get(text[j], 0)
            if depth == 0:
                try:
                    yield json.loads(text[s:j + 1])
                except json.JSONDecodeError:
                    pass
                break


def _letter_of(key: Any, letters: list[str]) -> str | None:
    """`A`, `"a"`, `Model A`, `response_b` -> the letter if it is shown; else None."""
    m = re.fullmatch(r"\s*(?:model|response)?[\s_-]*[\"'(\[<]?([A-Za-z])[\"')\]>]?\s*", str(key), re.I)
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    return None


def _crit_of(key: Any) -> str | None:
    """`fluency`, `Fluency`, `fluency_score`, `Fluency (1-5)` -> `fluency`; else None."""
    k = str(key).strip().lower()
    if k in CRITERIA:
        return k
    return next((c for c in CRITERIA if k.startswith((c + " ", c + "_"))), None)


def _score_value(v: Any) -> Any:
    """A criterion's value: the number itself, or the `score` of `{"score": 4, "reason": "…"}`."""
    if isinstance(v, dict):
        lower = {str(k).lower(): x for k, x in v.items()}
        return next((lower[k] for k in ("score", "value", "rating", "points") if k in lower), v)
    return v


def _letter_block(found: dict[str, dict[str, Any]], letter: str, val: Any) -> None:
    if isinstance(val, dict):
        crits = [(c, x) for k, x in val.items() if (c := _crit_of(k)) is not None]
        inner = next((x for k, x in val.items() if str(k).lower() == "scores"), None)
        if not crits and isinstance(inner, dict | list):
            return _letter_block(found, letter, inner)
        for crit, x in crits:
            _put(found, letter, crit, _score_value(x))
    elif isinstance(val, list) and len(val) == len(CRITERIA) and not any(isinstance(x, dict | list) for x in val):
        for crit, x in zip(CRITERIA, val, strict=True):
            _put(found, letter, crit, x)
    return None


def _from_json(obj: Any, letters: list[str], depth: int = 0) -> dict[str, dict[str, Any]]:
    """Raw values per letter found in a parsed JSON value (see the module docstring for the shapes)."""
    found: dict[str, dict[str, Any]] = {}
    if isinstance(obj, list):
        for entry in obj:
            if isinstance(entry, dict):
                label = next((entry[k] for k in ("model", "letter", "id", "name") if k in entry), None)
                if (letter := _letter_of(label, letters)) is not None:
                    _letter_block(found, letter, entry)
        return found
    if not isinstance(obj, dict):
        return found
    for key, val in obj.items():
        if (letter := _letter_of(key, letters)) is not None:
            _letter_block(found, letter, val)
        elif (crit := _crit_of(key)) is not None and isinstance(val, dict):  # criteria first
            for k, x in val.items():
                if (letter := _letter_of(k, letters)) is not None:
                    _put(found, letter, crit, _score_value(x))
    if not found and depth < 3:  # a wrapper: {"scores": {...}}, {"evaluation": [...], "notes": "…"}
        for val in obj.values():
            if isinstance(val, dict | list) and (inner := _from_json(val, letters, depth + 1)):
                return inner
    return found


# ---- Markdown tables ---------------------------------------------------------------------------------

_CELL_NUMBER = re.compile(r"^[*_`\s]*(-?\d+(?:\.\d+)?)(?:\s*(?:/|out of)\s*5)?[*_`\s]*(?:\(.*\))?\s*$")


def _cells(line: str) -> list[str]:
    return [re.sub(r"[*_`]", "", c).strip() for c in line.strip().strip("|").split("|")]


def _cell_value(cell: str) -> Any:
    m = _CELL_NUMBER.match(cell)
    if not m:
        return cell or None
    return float(m.group(1)) if "." in m.group(1) else int(m.group(1))


def _from_tables(text: str, letters: list[str]) -> dict[str, dict[str, Any]]:
    """Raw values from Markdown tables, one row per model or one row per criterion."""
    found: dict[str, dict[str, Any]] = {}
    block: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.strip().startswith("|"):
            if not re.fullmatch(r"[\s|:\-]+", line):  # skip the |---|---| separator
                block.append(_cells(line))
            continue
        if len(block) >= 2:
            _table(found, block, letters)
        block = []
    return found


def _table(found: dict[str, dict[str, Any]], rows: list[list[str]], letters: list[str]) -> None:
    head = rows[0]
    crit_cols = {i: c for i, cell in enumerate(head) if (c := _crit_of(re.sub(r"\s*\(.*\)", "", cell)))}
    letter_cols = {i: x for i, cell in enumerate(head) if (x := _letter_of(cell, letters))}
    if crit_cols:  # a row per model
        for row in rows[1:]:
            owners = {x for cell in row if (x := _letter_of(cell, letters))}
            if len(owners) != 1:
                continue
            letter = owners.pop()
            for i, crit in crit_cols.items():
                if i < len(row):
                    _put(found, letter, crit, _cell_value(row[i]))
    elif letter_cols:  # a row per criterion
        for row in rows[1:]:
            crit = _crit_of(re.sub(r"\s*\(.*\)", "", row[0])) if row else None
            for i, letter in letter_cols.items():
                if crit and i < len(row):
                    _put(found, letter, crit, _cell_value(row[i]))


# ---- free text -----------------------------------------------------------------------------------------

_HEADER_WORD = re.compile(r"(?i:\b(?:model|response|answer|candidate)[\s_]*)[\"'(\[<]?([A-Z])\b[\"')\]>]?"
                          r"(?=\s*\**\s*(?:[:)\-—–]|$))", re.M)
_HEADER_BARE = re.compile(r"^[ \t]*(?:[-*>#]+[ \t]*)*\**[ \t]*[\"'(\[<]?([A-Z])[\"')\]>]?\**[ \t]*(?:[:.)\-—–]|\**$|$)",
                          re.M)
_HEADER_KEY = re.compile(r"[\"']([A-Z])[\"']\s*:")  # a JSON key, also in cut-off JSON
_VALUE = re.compile(
    r"\b(" + "|".join(CRITERIA) + r")\b[\"'*_]*(?:\s*score)?\s*(?:\((?:[^()\n]{0,12})\))?\s*[*_]*\s*"
    r"(?:[:=\-—–]|\bis\b)?\s*[*_\"']*\s*(-?\d+(?:\.\d+)?)(?!\s*(?:[-–~]|to)\s*\d)", re.I)


def _from_text(text: str, letters: list[str]) -> dict[str, dict[str, Any]]:
    """Raw values of `criterion: n` lines, each owned by the header of the section it sits in."""
    heads = sorted({(m.start(), m.group(1)) for m in _HEADER_WORD.finditer(text)}
                   | {(m.start(), m.group(1)) for rx in (_HEADER_BARE, _HEADER_KEY) for m in rx.finditer(text)
                      if m.group(1) in letters})
    found: dict[str, dict[str, Any]] = {}
    for m in _VALUE.finditer(text):
        owner = [x for pos, x in heads if pos < m.start()]
        if not owner:
            if len(letters) == 1:
                owner = letters
            else:
                raise _Ambiguous(f"a {m.group(1).lower()} score appears before any model is named")
        if owner[-1] not in letters:
            raise _Ambiguous(f"scores are given under model {owner[-1]}, which was not shown")
        raw = m.group(2)
        _put(found, owner[-1], m.group(1).lower(), float(raw) if "." in raw else int(raw))
    return found


# ---- the entry point ---------------------------------------------------------------------------------

def _complete(found: dict[str, dict[str, Any]], letters: list[str]) -> bool:
    return all(len(found.get(x, {})) == len(CRITERIA) for x in letters)


def _raw_values(text: str, letters: list[str]) -> dict[str, dict[str, Any]]:
    """JSON first; tables, then free text, fill what is still missing (an earlier reading wins).

    An ambiguity in a later reading is fatal only when nothing was read before it.
    """
    found: dict[str, dict[str, Any]] = {}
    for cand in _json_candidates(text):
        if found := _from_json(cand, letters):
            break
    for reader in (_from_tables, _from_text):  # the text reader also salvages cut-off JSON
        if _complete(found, letters):
            break
        try:
            extra = reader(text, letters)
        except _Ambiguous:
            if any(found.values()):
                break
            raise
        for letter, got in extra.items():
            for crit, v in got.items():
                found.setdefault(letter, {}).setdefault(crit, v)
    return found


def parse_reply(text: str | None, letters: list[str]) -> ParsedReply:
    """The scores in a judge reply for the shown `letters`; see the module docstring.

    Returns every (letter, criterion) as an int 1–5 or None, with `problem` naming what is missing,
    invalid or ambiguous (None when the reply is complete). An ambiguous reply keeps no score.
    """
    empty = {x: dict.fromkeys(CRITERIA) for x in letters}
    if not text or not text.strip():
        return ParsedReply(empty, "the reply was empty")
    try:
        found = _raw_values(text, letters)
    except _Ambiguous as exc:
        return ParsedReply(empty, f"ambiguous reply: {exc}", ambiguous=True)
    scores: dict[str, dict[str, int | None]] = {}
    missing, invalid = [], []
    for x in letters:
        got = found.get(x, {})
        scores[x] = row = {}
        for c in CRITERIA:
            row[c] = score = as_score(got[c]) if c in got else None
            if c not in got:
                missing.append(f"{x}.{c}")
            elif score is None:
                invalid.append(f"{x}.{c}={got[c]!r}")
    problems = []
    if not any(found.values()):
        problems.append("no scores could be read from the reply")
    else:
        if invalid:
            problems.append("not an integer from 1 to 5: " + ", ".join(invalid[:6]))
        if missing:
            problems.append("missing: " + ", ".join(missing[:6]) + (" …" if len(missing) > 6 else ""))
    return ParsedReply(scores, "; ".join(problems) or None, read=any(found.values()))
