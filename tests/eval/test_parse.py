"""Reading scores out of judge replies (`mixnu.eval.parse.parse_reply`): JSON, Markdown, free text,
and the rule that a score is never moved to another model (issue #11 item 3)."""

from __future__ import annotations

import pytest

from mixnu.eval.criteria import CRITERIA
from mixnu.eval.parse import parse_reply

L2 = ["A", "B"]
L3 = ["A", "B", "C"]

# The issue's reply: "(a)" and "(b)" inside model A's text are enumerations, not model markers.
ISSUE_REPLY = ("Model A: The answer (a) states the rule correctly and (b) cites the article. "
               "Fluency: 5, Relevance: 5, Accuracy: 5\n"
               "Model B: Off topic. Fluency: 3, Relevance: 1, Accuracy: 1")


def _t(parsed, letter):
    return tuple(parsed.scores[letter][c] for c in CRITERIA)


def test_issue_example_goes_to_the_model_it_belongs_to():
    p = parse_reply(ISSUE_REPLY, L2)
    assert (_t(p, "A"), _t(p, "B")) == ((5, 5, 5), (3, 1, 1)) and p.complete


@pytest.mark.parametrize("text", [
    "**Model A**\n- **Fluency:** 4\n- **Relevance:** 3\n- **Accuracy:** 2\n\n**Model B**\n"
    "- **Fluency:** 5\n- **Relevance:** 1\n- **Accuracy:** 2",
    "### A\n**Fluency**: 4\n**Relevance**: 3\n**Accuracy**: 2\n### B\n**Fluency**: 5\n**Relevance**: 1\n**Accuracy**: 2",
    "Model A\nFluency (1-5): 4\nRelevance (1-5): 3\nAccuracy (1-5): 2\n\nModel B\nFluency (1-5): 5\n"
    "Relevance (1-5): 1\nAccuracy (1-5): 2",
    "| Model | Fluency | Relevance | Accuracy |\n|---|---|---|---|\n| A | 4 | 3 | 2 |\n| B | 5 | 1 | 2 |",
    "Scores:\n\n| Criterion | Model A | Model B |\n|:--|:-:|:-:|\n| **Fluency** | 4/5 | 5/5 |\n"
    "| Relevance | 3 | 1 |\n| Accuracy (1-5) | 2 | 2 |",
    '{"A": {"fluency": {"score": 4, "reason": "fine"}, "relevance": {"score": 3, "reason": "partly"}, '
    '"accuracy": {"score": 2, "reason": "errors"}}, "B": {"fluency": {"score": 5, "reason": "x"}, '
    '"relevance": {"score": 1, "reason": "y"}, "accuracy": {"score": 2, "reason": "z"}}}',
    '{"evaluation": [{"model": "A", "scores": {"fluency": 4, "relevance": 3, "accuracy": 2}}, '
    '{"model": "B", "scores": {"fluency": 5, "relevance": 1, "accuracy": 2}}], "summary": "A is better"}',
    '{"fluency": {"A": 4, "B": 5}, "relevance": {"A": 3, "B": 1}, "accuracy": {"A": 2, "B": 2}}',
])
def test_common_forms_parse(text):
    p = parse_reply(text, L2)
    assert (_t(p, "A"), _t(p, "B")) == ((4, 3, 2), (5, 1, 2)), p.problem
    assert p.complete


@pytest.mark.parametrize(("text", "why"), [
    ("Fluency: 4, Relevance: 4, Accuracy: 4", "before any model"),
    ("Model A: Fluency: 5, Relevance: 5, Accuracy: 5\nModel B: Fluency: 3, Relevance: 1, Accuracy: 1\n"
     "Model A: Fluency: 2", "two fluency scores"),
    ("Model A: Fluency: 5, Relevance: 5, Accuracy: 5\nModel D: Fluency: 1, Relevance: 1, Accuracy: 1",
     "not shown"),
])
def test_ambiguous_attribution_keeps_no_score(text, why):
    p = parse_reply(text, L2)
    assert p.ambiguous and why in p.problem and p.valid == 0 and not p.read


def test_prose_mentioning_other_models_does_not_start_a_section():
    text = ("Model A: Unlike model B, it answers well; see (B) above. Fluency: 4, Relevance: 4, Accuracy: 5\n"
            "Model B: Fluency: 2, Relevance: 2, Accuracy: 1")
    p = parse_reply(text, L2)
    assert (_t(p, "A"), _t(p, "B")) == ((4, 4, 5), (2, 2, 1))


@pytest.mark.parametrize(("text", "want_a", "problem"), [
    ('{"A": {"fluency": 4, "relevance": 5, "accuracy": 3}, "B": [1, 2, 3], "C": [3, 3, 3]}', (4, 5, 3), None),
    ('```json\n{"scores": {"A": {"Fluency": "4", "relevance": 5.0, "accuracy": 2}, "B": [1, 1, 1], '
     '"C": [2, 2, 2]}}\n```', (4, 5, 2), None),
    ('{"A": {"fluency": 4, "relevance": 5, "accur', (4, 5, None), "missing: A.accuracy"),  # cut off: salvaged
    ('{"A": {"fluency": 0, "relevance": 7, "accuracy": 4.5}}', (None, None, None), "A.fluency=0"),
    ('{"A": {"fluency": true, "relevance": "four", "accuracy": null}}', (None, None, None), "not an integer"),
    ("**A** - fluency 3/5, relevance 4/5, accuracy 2/5", (3, 4, 2), "missing: B.fluency"),
    ("Scale: Fluency 1-5.\nModel A: Fluency: 4", (4, None, None), "missing"),  # a range is not a score
    ("I cannot evaluate these responses.", (None, None, None), "no scores"),
    ("", (None, None, None), "empty"),
])
def test_incomplete_replies_say_what_is_wrong(text, want_a, problem):
    p = parse_reply(text, L3)
    assert _t(p, "A") == want_a
    assert set(p.scores) == set(L3)
    assert all(v is None or 1 <= v <= 5 for s in p.scores.values() for v in s.values())  # never 0
    assert (p.problem is None) if problem is None else (problem in p.problem)


def test_letters_not_shown_are_ignored_in_json():
    p = parse_reply('{"A": {"fluency": 3, "relevance": 3, "accuracy": 3}, "D": {"fluency": 5}}', ["A"])
    assert p.complete and set(p.scores) == {"A"}


def test_one_model_needs_no_header():
    assert _t(parse_reply("Fluency: 4\nRelevance: 2\nAccuracy: 3", ["A"]), "A") == (4, 2, 3)
