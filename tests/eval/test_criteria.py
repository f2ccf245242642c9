"""The criteria are spelled in one place (`mixnu.eval.criteria`) and everything that checks one agrees."""

from __future__ import annotations

import sqlite3

import pytest
from pydantic import ValidationError

from mixnu.eval.annotate.app import ScoreIn
from mixnu.eval.annotate.store import AnnotationStore
from mixnu.eval.criteria import CRITERIA, RUBRIC, sql_in_list
from mixnu.eval.parse import parse_reply
from mixnu.eval.templates import score_schema


def test_rubric_lists_the_criteria_in_order_with_five_levels():
    assert CRITERIA == ("fluency", "relevance", "accuracy")
    assert tuple(c for c, _ in RUBRIC) == CRITERIA
    assert all(len(levels) == 5 for _, levels in RUBRIC)


def test_the_sql_check_is_the_one_older_databases_have(tmp_path):
    """The CHECK is built from CRITERIA, with the exact text a database made before holds."""
    assert sql_in_list() == "('fluency', 'relevance', 'accuracy')"
    store = AnnotationStore(tmp_path / "a.sqlite")
    store.ensure_annotator("alice")
    con = sqlite3.connect(store.path)
    sql = con.execute("SELECT sql FROM sqlite_master WHERE name = 'scores'").fetchone()[0]
    assert "CHECK (criterion IN ('fluency', 'relevance', 'accuracy'))" in sql
    with pytest.raises(sqlite3.IntegrityError):
        con.execute("INSERT INTO scores VALUES ('alice', 'p/0', 'A', 'm', 'style', 3, 0)")


@pytest.mark.parametrize("crit", CRITERIA)
def test_every_criterion_is_accepted_by_the_page_the_schema_and_the_reply_parser(crit):
    ScoreIn.model_validate({"annotator": "a", "item": "p/0", "letter": "A", "criterion": crit, "score": 3})
    assert crit in score_schema(["A"])["properties"]["A"]["required"]
    parsed = parse_reply("\n".join(f"{c}: {4 if c == crit else 2}" for c in CRITERIA), ["A"])
    assert parsed.scores["A"][crit] == 4


def test_a_criterion_outside_the_list_is_refused_by_the_page():
    with pytest.raises(ValidationError):
        ScoreIn.model_validate({"annotator": "a", "item": "p/0", "letter": "A", "criterion": "style", "score": 3})
