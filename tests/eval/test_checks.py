"""Automatic checks on the card's failure examples (and on good answers, which must pass)."""

from __future__ import annotations

import pytest

from mixnu.eval.checks import check_response, detect_language, duplicate_line_ratio, repetition_ratio

PROMPT = "이번 수능은 불수능이었어요."
GOOD = "네, 올해 수능은 국어와 수학 모두 난도가 높아서 수험생들이 많이 힘들어했다고 합니다."


def test_a_sensible_korean_continuation_passes_every_check():
    r = check_response(PROMPT, GOOD, "hallucination")
    assert r.flags == [] and r.language == "ko" and r.hangul_share == 1.0


def test_japanese_answer_to_a_korean_prompt():  # open-llama-2-ko-7b in the card
    r = check_response(PROMPT, "今年の修能はとても難しかったそうです。受験生は大変でした。", "hallucination")
    assert r.language == "ja" and r.expected_language == "ko" and r.flags == ["wrong_language"]


def test_chinese_and_english_are_told_apart():
    assert detect_language("今年的高考非常难，很多考生都觉得很辛苦。") == "zh"
    assert detect_language("This year's exam was brutal.") == "en"
    assert detect_language("12345 !!!") == "none"


def test_numbered_line_loop():  # Llama-3 8B in the card
    loop = "\n".join(f"{i}. 수능이 어려웠다는 뜻입니다." for i in range(1, 9))
    r = check_response(PROMPT, loop, "hallucination")
    assert r.duplicate_lines == pytest.approx(7 / 8) and "repetition" in r.flags


def test_repeated_phrase():  # Ko-Mixtral in the card
    text = " ".join(["불수능이라는 말은 정말 어렵다는 뜻이에요."] * 6)
    r = check_response(PROMPT, text, "hallucination")
    assert r.repetition > 0.5 and "repetition" in r.flags
    assert repetition_ratio(GOOD) == 0.0 and duplicate_line_ratio(GOOD) == 0.0


def test_zero_width_space_flood():  # polyglot-ko-12.8b in the card
    r = check_response(PROMPT, "불수능" + "\u200b" * 300, "hallucination")
    assert r.zero_width == 300 and "noise" in r.flags and r.chars == 3


def test_control_characters_and_symbol_runs_are_noise():
    assert "noise" in check_response(PROMPT, GOOD + "\x07\x08", None).flags
    r = check_response(PROMPT, "★★★★★★!!!!@@@@ ###### ^^^^^^ 수능", None)
    assert r.symbol_run_share > 0.5 and "noise" in r.flags
    assert "noise" not in check_response(PROMPT, GOOD + " (정말요?)", None).flags


def test_empty_and_short_output():
    assert check_response(PROMPT, "   \n", None).flags == ["empty"]
    assert check_response(PROMPT, "\u200b\u200b", None).flags == ["empty", "noise"]
    assert "short" in check_response(PROMPT, "네", None).flags


def test_english_attribute_expects_english():
    q = "Describe Seoul in spring."
    assert check_response(q, "서울의 봄은 벚꽃으로 아름답습니다.", "english").flags == ["wrong_language"]
    assert check_response(q, "Seoul in spring is full of cherry blossoms.", "english").flags == []
