"""The prompt suite: the shipped Korean suite's content and the schema's one-line errors."""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

import mixnu
from mixnu.errors import ConfigError
from mixnu.eval.suite import ATTRIBUTES, Suite, default_suite_path, load_suite

HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]")
# The id prefix of each attribute in the shipped suite (ids read like `dom-law-003`).
PREFIX = {
    "english": "lang-en", "literary": "sty-lit", "colloquial": "sty-col", "daily_life": "dom-daily",
    "medicine": "dom-med", "law": "dom-law", "technology": "dom-tech", "finance": "dom-fin",
    "grammar": "loc-gram", "proverbs": "loc-prov", "idioms": "loc-idiom", "culture": "loc-cult",
    "hallucination": "hallu",
}


@pytest.fixture(scope="module")
def suite() -> Suite:
    return load_suite()


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(default_suite_path().read_text(encoding="utf-8"))


def _headword(note: str) -> str:
    """`'심심하다(甚深): ...'` -> `'심심'`: the expression a note explains, as it appears in a prompt."""
    head = re.sub(r"\(.*?\)", "", note.split(":", 1)[0]).strip()
    word = head.split()[0]
    return word.removesuffix("하다") if len(word) > 3 else word


def _write(tmp_path: Path, data: dict[str, Any], name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    text = yaml.dump(data, Dumper=dumper, allow_unicode=True, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


# The prompts the broken-suite cases damage, plus the first prompt of every attribute: a valid suite
# that is small enough to write and parse many times (parsing YAML dominates these tests' time).
TARGETS = {"sty-col-004", "dom-fin-007", "dom-med-006", "loc-cult-002", "lang-en-009", "dom-tech-002",
           "dom-law-003", "hallu-004", "loc-prov-006", "loc-idiom-003", "loc-gram-008"}


@pytest.fixture
def small(raw) -> dict[str, Any]:
    data = copy.deepcopy(raw)
    data["prompts"] = [p for p in data["prompts"] if p["id"] in TARGETS or p["id"].endswith("-001")]
    return data


# ---------------------------------------------------------------- the shipped suite


def test_shipped_suite_is_in_the_package_and_validates(suite):
    path = default_suite_path()
    assert path.is_file()
    assert Path(mixnu.__file__).parent in path.parents
    assert suite.name == "mixnu-ko" and suite.version >= 1
    assert len(suite.prompts) >= 8 * 13


def test_every_category_and_attribute_is_covered(suite):
    per_attr = Counter(p.attribute for p in suite.prompts)
    all_attrs = [a for attrs in ATTRIBUTES.values() for a in attrs]
    assert len(all_attrs) == 13 and set(per_attr) == set(all_attrs)
    low = {a: n for a, n in per_attr.items() if n < 8}
    assert not low, f"attributes with fewer than 8 prompts: {low}"
    for category, attrs in ATTRIBUTES.items():
        present = {p.attribute for p in suite.prompts if p.category == category}
        assert present == set(attrs), category


def test_ids_are_unique_and_follow_the_naming(suite, raw):
    ids = [item["id"] for item in raw["prompts"]]  # the file itself, not only the validated model
    dupes = [i for i, n in Counter(ids).items() if n > 1]
    assert not dupes, f"duplicate ids: {dupes}"
    for p in suite.prompts:
        assert re.fullmatch(rf"{PREFIX[p.attribute]}-\d{{3}}", p.id), p.id
    texts = Counter(p.prompt.strip() for p in suite.prompts)
    assert not [t for t, n in texts.items() if n > 1], "the same prompt text appears twice"


def test_prompt_languages(suite):
    for p in suite.prompts:
        if p.attribute == "english":
            assert not HANGUL.search(p.prompt), f"{p.id}: an English prompt must not contain Hangul"
            assert re.search(r"[A-Za-z]{3,}", p.prompt), p.id
        else:
            assert HANGUL.search(p.prompt), f"{p.id}: a Korean prompt must contain Hangul"


def test_the_cards_example_is_in_the_suite(suite):
    prompts = {p.prompt: p for p in suite.prompts}
    card = prompts.get("이번 수능은 불수능이었어요.")
    assert card is not None and card.attribute == "hallucination"
    assert "불수능" in (card.notes.confusable or "")


def test_hallucination_notes_name_a_word_of_the_prompt(suite):
    hallu = [p for p in suite.prompts if p.attribute == "hallucination"]
    assert len(hallu) >= 8
    words = []
    for p in hallu:
        note = p.notes.confusable or ""
        assert ":" in note and HANGUL.search(note), f"{p.id}: confusable must read 'word: true meaning'"
        word = _headword(note)
        assert word.replace(" ", "") in p.prompt.replace(" ", ""), f"{p.id}: {word!r} not in the prompt"
        words.append(word)
    assert len(set(words)) == len(words), "two hallucination prompts test the same word"


@pytest.mark.parametrize("attribute", ["proverbs", "idioms"])
def test_proverbs_and_idioms_carry_their_meaning(suite, attribute):
    items = [p for p in suite.prompts if p.attribute == attribute]
    assert len(items) >= 8
    for p in items:
        meaning = p.notes.meaning or ""
        assert ":" in meaning and len(meaning.split(":", 1)[1].strip()) >= 10, p.id
        assert _headword(meaning) in p.prompt, f"{p.id}: the note explains an expression not in the prompt"


def test_notes_are_substantive(suite):
    for p in suite.prompts:
        assert len(p.notes.judge) >= 40, f"{p.id}: notes.judge too short to guide a judge"
        assert HANGUL.search(p.notes.human), f"{p.id}: notes.human is for Korean annotators"


def test_written_out_suite_reloads_with_the_same_fingerprint(suite, tmp_path):
    path = _write(tmp_path, suite.model_dump(mode="json", exclude_none=True))
    again = load_suite(path)
    assert again == suite
    assert again.fingerprint() == suite.fingerprint() == load_suite().fingerprint()


# ---------------------------------------------------------------- fingerprint


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["prompts"][0].update(prompt=d["prompts"][0]["prompt"] + " "),
        lambda d: d["prompts"][5]["notes"].update(judge=d["prompts"][5]["notes"]["judge"] + "!"),
        lambda d: d["prompts"].reverse(),
        lambda d: d.update(version=d.get("version", 1) + 1),
    ],
    ids=["prompt-text", "judge-note", "order", "version"],
)
def test_fingerprint_changes_when_the_suite_changes(small, tmp_path, edit):
    before = load_suite(_write(tmp_path, small, "before.yaml")).fingerprint()
    data = copy.deepcopy(small)
    edit(data)
    after = load_suite(_write(tmp_path, data, "after.yaml")).fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", after)
    assert after != before


# ---------------------------------------------------------------- user suites and their errors


def test_a_small_user_suite_loads(tmp_path):
    data = {
        "name": "mine",
        "prompts": [
            {"id": "x-1", "category": "domain", "attribute": "law", "prompt": "전세 사기 예방법은?",
             "notes": {"judge": "mentions 확정일자 and 전입신고", "human": "확정일자, 전입신고"}},
            {"id": "x-2", "category": "hallucination", "attribute": "hallucination", "prompt": "금일 휴무",
             "notes": {"judge": "금일 = today", "human": "금일은 오늘", "confusable": "금일: 오늘"}},
        ],
    }
    s = load_suite(_write(tmp_path, data))
    assert [p.id for p in s.prompts] == ["x-1", "x-2"] and s.version == 1
    assert s.by_id()["x-2"].notes.confusable == "금일: 오늘"


def _break(kind: str, d: dict[str, Any]) -> str:
    """Damage the suite `d` in place; return the id the error must name."""
    by_id = {p["id"]: p for p in d["prompts"]}
    if kind == "attribute-of-another-category":
        by_id["sty-col-004"]["attribute"] = "law"
        return "sty-col-004"
    if kind == "attribute-not-in-taxonomy":
        by_id["dom-fin-007"]["attribute"] = "sports"
        return "dom-fin-007"
    if kind == "missing-notes":
        del by_id["dom-med-006"]["notes"]
        return "dom-med-006"
    if kind == "missing-judge-note":
        del by_id["loc-cult-002"]["notes"]["judge"]
        return "loc-cult-002"
    if kind == "blank-human-note":
        by_id["lang-en-009"]["notes"]["human"] = "   "
        return "lang-en-009"
    if kind == "duplicate-id":
        by_id["dom-tech-002"]["id"] = "dom-law-003"
        return "dom-law-003"
    if kind == "hallucination-without-confusable":
        del by_id["hallu-004"]["notes"]["confusable"]
        return "hallu-004"
    if kind == "proverb-without-meaning":
        del by_id["loc-prov-006"]["notes"]["meaning"]
        return "loc-prov-006"
    if kind == "idiom-without-meaning":
        by_id["loc-idiom-003"]["notes"]["meaning"] = None
        return "loc-idiom-003"
    if kind == "unknown-key":
        by_id["loc-gram-008"]["level"] = "hard"
        return "loc-gram-008"
    raise AssertionError(kind)


BROKEN = [
    "attribute-of-another-category", "attribute-not-in-taxonomy", "missing-notes", "missing-judge-note",
    "blank-human-note", "duplicate-id", "hallucination-without-confusable", "proverb-without-meaning",
    "idiom-without-meaning", "unknown-key",
]


@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_suite_gives_one_line_naming_the_prompt(small, tmp_path, kind):
    data = copy.deepcopy(small)
    pid = _break(kind, data)
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_suite(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(str(path)), msg
    assert f"'{pid}'" in msg, msg
    others = [p["id"] for p in data["prompts"] if p["id"] != pid]
    assert not [o for o in others if f"'{o}'" in msg], f"the message names another prompt: {msg}"


def test_wrong_category_error_says_where_the_attribute_belongs(small, tmp_path):
    data = copy.deepcopy(small)
    _break("attribute-of-another-category", data)
    with pytest.raises(ConfigError, match=r"'law' belongs to category 'domain', not 'style'"):
        load_suite(_write(tmp_path, data))


def test_duplicate_error_gives_both_positions(small, tmp_path):
    data = copy.deepcopy(small)
    _break("duplicate-id", data)
    ids = [p["id"] for p in data["prompts"]]
    first, second = (i + 1 for i, x in enumerate(ids) if x == "dom-law-003")
    with pytest.raises(ConfigError, match=rf"#{first} and #{second}"):
        load_suite(_write(tmp_path, data))


def test_a_prompt_without_id_is_named_by_position(small, tmp_path):
    data = copy.deepcopy(small)
    del data["prompts"][6]["id"]
    with pytest.raises(ConfigError, match=r"prompt #7, id: Field required"):
        load_suite(_write(tmp_path, data))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: x\nprompts: [\n", "not valid YAML"),
        ("name: x\n", "prompts: Field required"),
        ("- just\n- a list\n", "must be a mapping"),
    ],
)
def test_unreadable_suite_files(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=expected) as info:
        load_suite(path)
    assert "\n" not in str(info.value)


def test_missing_suite_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_suite(tmp_path / "nope.yaml")


# ---------------------------------------------------------------- through the CLI (`mixnu eval suite`)


def test_cli_validates_the_shipped_suite(run_cli, suite):
    rc, out, err = run_cli("eval", "suite", "--quiet", "--json", "-")
    assert rc == 0, err
    info = json.loads(out)
    assert info["prompts"] == len(suite.prompts)
    assert info["fingerprint"] == suite.fingerprint()
    counts = Counter(p.attribute for p in suite.prompts)
    assert {a: n for attrs in info["counts"].values() for a, n in attrs.items()} == dict(counts)


def test_cli_takes_a_user_suite_file(run_cli, small, tmp_path):
    data = copy.deepcopy(small)
    data["name"] = "mine"
    data["prompts"] = [p for p in data["prompts"] if p["attribute"] in ("law", "hallucination")]
    rc, out, err = run_cli("eval", "suite", _write(tmp_path, data), "--quiet", "--json", "-")
    assert rc == 0, err
    info = json.loads(out)
    assert info["name"] == "mine" and info["prompts"] == len(data["prompts"])


@pytest.mark.parametrize("kind", ["attribute-of-another-category", "missing-notes", "duplicate-id",
                                  "attribute-not-in-taxonomy"])
def test_cli_reports_a_broken_suite_in_one_line(run_cli, small, tmp_path, kind):
    data = copy.deepcopy(small)
    pid = _break(kind, data)
    rc, out, err = run_cli("eval", "suite", _write(tmp_path, data))
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 1
    assert len(lines) == 1 and lines[0].startswith("mixnu: error: "), err
    assert f"'{pid}'" in lines[0] and "Traceback" not in err
