"""The coverage policy's character sets (`mixnu.tokenizer.coverage`): sizes, order, no letters, the cap."""

from __future__ import annotations

import unicodedata
from collections import Counter

from mixnu.charsets import (
    all_syllables,
    char_kind,
    compatibility_jamo,
    conjoining_jamo,
    ksx1001_chars,
    ksx1001_syllables,
    modern_conjoining_jamo,
)
from mixnu.tokenizer import ExtendConfig
from mixnu.tokenizer.coverage import hanja_prior, korean_symbols, policy_chars, select_chars

ISSUE_SYMBOLS = "｢ ｣ ․ ‧ 〈 〉 ◯ ㎏ ㎜ ･ … ※ ① ㈜ ㉠".split()


def _cfg(**kw):
    return ExtendConfig(base="x.model", corpus=["c.txt"], out="o", **kw)


def test_standard_sets_have_their_sizes():
    assert len(ksx1001_chars()) == 8225
    assert len(ksx1001_syllables()) == 2350 and set(ksx1001_syllables()) <= set(all_syllables())
    assert len(all_syllables()) == 11172
    assert len(compatibility_jamo()) == 94 and len(conjoining_jamo()) == 256
    assert {"괌", "퀵", "팜", "엡", "튬"} <= set(ksx1001_syllables())  # loanword syllables the issue names


def test_hanja_prior_puts_the_education_list_first():
    prior = hanja_prior()
    assert len(prior) == len(set(prior)) == 4632
    assert all(char_kind(c) == "hanja" for c in prior)
    assert not any(0xF900 <= ord(c) <= 0xFAFF for c in prior)  # no compatibility ideographs (NFC removes them)
    head = set(prior[:1800])
    assert {"一", "韓", "國", "法", "憲", "爲", "敎"} <= head  # education Hanja
    assert not {"喧", "駁", "鋏"} & head  # KS X 1001, but not on the education list
    ks = {c for c in ksx1001_chars() if char_kind(c) == "hanja"}
    assert sum(c in ks for c in prior) == 4620


def test_symbols_are_punctuation_symbols_and_numbers_only():
    syms = korean_symbols()
    assert set(ISSUE_SYMBOLS) <= set(syms)
    assert all(unicodedata.category(c)[0] in "PSN" for c in syms)
    assert not any(char_kind(c) in ("syllable", "hanja") for c in syms)


def test_char_kind():
    assert [char_kind(c) for c in "한ᄒㅋ韓｢a"] == ["syllable", "conjoining jamo", "compatibility jamo", "hanja",
                                                    "symbol", "other"]


def test_select_chars_seen_first_then_policy_and_cap():
    chars = Counter({"뷁": 5, "韓": 3, "喧": 1, "㎡": 2, "x": 9})
    base = {"x", "一"}
    out, counts = select_chars(chars, base, _cfg(), budget=20_000)
    assert out[:3] == ["뷁", "韓", "㎡"]  # seen, most frequent first; 喧 seen once (< hanja_min_count)
    assert "x" not in out and "一" not in out  # the base has them
    assert "喧" not in out  # seen once, and not among the prior's first 1,800
    assert "喧" in select_chars(chars, base, _cfg(hanja_prior=4632), budget=20_000)[0]
    assert len(out) == len(set(out)) == sum(counts.values())
    assert set(ksx1001_syllables()) <= set(out) and set(modern_conjoining_jamo()) <= set(out)
    assert "ᅀ" not in out  # Old Hangul (U+1140) only with conjoining_jamo="all"
    assert set(conjoining_jamo()) <= set(select_chars(chars, base, _cfg(conjoining_jamo="all"), budget=20_000)[0])
    small, _ = select_chars(chars, base, _cfg(), budget=1000)
    assert small == out[:500]  # half the budget, lowest priority cut first
    none, c0 = select_chars(Counter(), set(), _cfg(syllables="none", jamo=False, conjoining_jamo="none",
                                               hanja_prior=0, korean_symbols=False), budget=1000)
    assert none == [] and sum(c0.values()) == 0


def test_modern_conjoining_jamo_are_what_nfd_syllables_use():
    used = {c for s in all_syllables() for c in unicodedata.normalize("NFD", s)}
    assert used == set(modern_conjoining_jamo()) and len(used) == 67
    assert _cfg(conjoining_jamo=True).conjoining_jamo == "all"  # configs written before the three-way switch
    assert _cfg(conjoining_jamo=False).conjoining_jamo == "none"


def test_policy_all_syllables_and_hanja_count():
    pairs = policy_chars(_cfg(syllables="all", hanja_prior=10))
    assert sum(k == "hanja" for _, k in pairs) == 10
    assert {c for c, k in pairs if k == "syllables"} == set(all_syllables())
