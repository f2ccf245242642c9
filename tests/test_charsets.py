"""`mixnu.charsets`: the ranges say what their names say; GPT-2's byte alphabet equals transformers' table."""

from __future__ import annotations

from mixnu import charsets as cs


def test_ranges_hold_the_characters_they_name():
    assert len(cs.all_syllables()) == 11_172 and cs.all_syllables()[0] == "가" and cs.all_syllables()[-1] == "힣"
    assert len(cs.compatibility_jamo()) == 94 and cs.compatibility_jamo()[:2] == ["ㄱ", "ㄲ"]
    assert len(cs.conjoining_jamo()) == 256
    assert len(cs.ksx1001_syllables()) == 2_350 and len(cs.ksx1001_chars()) == 8_225
    assert all(cs.is_hangul_char(c) for c in "한ㅋ가") and not any(cs.is_hangul_char(c) for c in "a漢カ\u3130\u318f")
    assert cs.is_hanja_char("漢") and cs.is_hanja_char("\U00020000") and not cs.is_hanja_char("한")
    assert cs.in_ranges("漢", cs.HANJA_BMP) and not cs.in_ranges("\U00020000", cs.HANJA_BMP)
    assert cs.in_ranges("カ", cs.KANA) and cs.in_ranges("ｶ", cs.KANA) and not cs.in_ranges("漢", cs.KANA)
    assert cs.is_hangul_piece("▁한국") and cs.is_hangul_piece("한") and not cs.is_hangul_piece("▁")
    assert not cs.is_hangul_piece("다.")
    kinds = [cs.char_kind(c) for c in "가ᄀㄱ漢①a"]
    assert kinds == ["syllable", "conjoining jamo", "compatibility jamo", "hanja", "symbol", "other"]


def test_byte_decoder_is_gpt2s_table():
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    assert cs.byte_decoder() == {u: b for b, u in bytes_to_unicode().items()}
    assert sorted(cs.byte_decoder().values()) == list(range(256))
