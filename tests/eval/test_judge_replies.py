"""Issue #11 items 3–5 against the fake OpenAI-compatible server: replies parsed onto the right model,
re-asks until every score is valid, and a structured-output refusal (llama-cpp-python's HTTP 500)
that moves to the next response_format at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixnu.eval.criteria import CRITERIA
from mixnu.eval.judge import JudgeConfig, judge
from mixnu.io import read_jsonl
from tests.eval.conftest import make_run
from tests.eval.fake_openai import CONTENT_FAULTS, FakeOpenAI, expected_scores

FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5, "judge_model": "fake"}


def cfg_for(run: Path, srv: FakeOpenAI, **kw) -> JudgeConfig:
    return JudgeConfig(run_dir=run, judge_url=srv.base_url, **{**FAST, **kw})


def by_letter(rec: dict) -> dict[str, tuple]:
    """The stored scores by the letter the judge saw (order[i] was shown as chr(65 + i))."""
    return {chr(65 + i): tuple(rec["scores"][m][c] for c in CRITERIA) for i, m in enumerate(rec["order"])}


def one_record(run: Path) -> dict:
    recs = read_jsonl(run / "judgments.jsonl")
    assert len(recs) == 1
    return recs[0]


# ---- item 3: a score goes to the model it was given to, in every common form -------------------------

ISSUE_REPLY = ("Model A: The answer (a) states the rule correctly and (b) cites the article. "
               "Fluency: 5, Relevance: 5, Accuracy: 5\n"
               "Model B: Off topic. Fluency: 3, Relevance: 1, Accuracy: 1")


def test_issue_reply_is_stored_on_the_right_models(tmp_path):
    run = make_run(tmp_path / "run", models=("m1", "m2"), n=1)
    with FakeOpenAI() as srv:
        srv.script.append({"content": ISSUE_REPLY})
        judge(cfg_for(run, srv))
    rec = one_record(run)
    assert by_letter(rec) == {"A": (5, 5, 5), "B": (3, 1, 1)}
    assert rec["status"] == "ok" and rec["calls"] == 1


@pytest.mark.parametrize("reply", [
    "- **Model A**\n  - **Fluency:** 4\n  - **Relevance:** 3\n  - **Accuracy:** 2\n"
    "- **Model B**\n  - **Fluency:** 5\n  - **Relevance:** 1\n  - **Accuracy:** 2",
    "**A**\n**Fluency**: 4\n**Relevance**: 3\n**Accuracy**: 2\n\n**B**\n**Fluency**: 5\n**Relevance**: 1\n**Accuracy**: 2",
    "Model A:\nFluency (1-5): 4\nRelevance (1-5): 3\nAccuracy (1-5): 2\nModel B:\nFluency (1-5): 5\n"
    "Relevance (1-5): 1\nAccuracy (1-5): 2",
    "| Model | Fluency | Relevance | Accuracy |\n|---|---|---|---|\n| A | 4 | 3 | 2 |\n| B | 5 | 1 | 2 |",
    '{"A": {"fluency": {"score": 4, "reason": "fine"}, "relevance": {"score": 3, "reason": "partly"}, '
    '"accuracy": {"score": 2, "reason": "errors"}}, "B": {"fluency": {"score": 5, "reason": "clean"}, '
    '"relevance": {"score": 1, "reason": "off topic"}, "accuracy": {"score": 2, "reason": "wrong"}}}',
], ids=["md-list", "md-bold", "range-label", "md-table", "json-per-criterion"])
def test_markdown_and_per_criterion_json_replies_parse_at_the_first_ask(tmp_path, reply):
    run = make_run(tmp_path / "run", models=("m1", "m2"), n=1)
    with FakeOpenAI() as srv:
        srv.script.append({"content": reply})
        judge(cfg_for(run, srv))
    rec = one_record(run)
    assert by_letter(rec) == {"A": (4, 3, 2), "B": (5, 1, 2)}
    assert rec["calls"] == 1 and rec["null_scores"] == 0


def test_ambiguous_attribution_is_asked_again_not_guessed(tmp_path):
    run = make_run(tmp_path / "run", models=("m1", "m2"), n=1)
    ambiguous = ("Model A: Fluency: 5, Relevance: 5, Accuracy: 5\nModel B: Fluency: 3, Relevance: 1, Accuracy: 1\n"
                 "On reflection, Model A: Fluency: 2")
    with FakeOpenAI() as srv:
        srv.script.extend([{"content": ambiguous}, "good"])
        judge(cfg_for(run, srv))
        turns = [e["turns"] for e in srv.log]
    rec = one_record(run)
    resp = {r["model"]: r["response"] for r in read_jsonl(run / "responses.jsonl")}
    assert rec["scores"] == {m: expected_scores(resp[m]) for m in rec["order"]}  # the second reply's scores
    assert rec["calls"] == 2 and rec.get("reasks") == 1 and "ambiguous" in rec["problems"][0]
    assert turns == [2, 4]  # the re-ask is a follow-up turn after the unusable reply


# ---- item 4: invalid or missing scores are asked again before a null is stored --------------------------

def test_out_of_range_and_cut_replies_are_asked_again(tmp_path):
    run = make_run(tmp_path / "run", n=1)
    with FakeOpenAI() as srv:
        srv.script.extend(["out_of_range", "partial", "one_out_of_range", "good"])
        res = judge(cfg_for(run, srv))
        followups = [e["body"]["messages"][-1]["content"] for e in srv.log[1:]]
    rec = one_record(run)
    resp = {r["model"]: r["response"] for r in read_jsonl(run / "responses.jsonl")}
    assert rec["status"] == "ok" and rec["null_scores"] == 0
    assert rec["scores"] == {m: expected_scores(resp[m]) for m in rec["order"]}
    assert rec["calls"] == 4 and res.reasks == 3 and res.reasked_items == 1
    assert "not an integer from 1 to 5" in followups[0] and "missing" in followups[1]


def test_thirty_percent_faults_leave_under_one_percent_of_scores_null(tmp_path):
    run = make_run(tmp_path / "run", n=6, reps=10)  # 60 prompts x 3 models x 3 criteria = 540 scores
    with FakeOpenAI(fault_rate=0.3, seed=1, hang_s=5) as srv:
        res = judge(cfg_for(run, srv, concurrency=8, max_retries=8, timeout_s=0.5))
        outcomes = [e["outcome"] for e in srv.log]
        judged = srv.judged()
    assert {"429", "500", "drop", "hang", "broken_body", *CONTENT_FAULTS} <= set(outcomes)  # all kinds happened
    assert sum(o != "ok" for o in outcomes) >= 0.2 * len(outcomes)
    recs = read_jsonl(run / "judgments.jsonl")
    assert len(recs) == len({r["key"] for r in recs}) == res.items == 60
    scores = [v for r in recs for s in r["scores"].values() for v in s.values()]
    assert len(scores) == 540 and sum(v is not None for v in scores) >= 0.99 * 540
    resp = {(r["prompt_id"], r["model"]): r["response"] for r in read_jsonl(run / "responses.jsonl")}
    for r in recs:  # every score is the one the judge gave that model
        for m, s in r["scores"].items():
            assert all(v is None or v == expected_scores(resp[(r["prompt_id"], m)])[c] for c, v in s.items())
    # one re-ask per unusable reply, counted; and no judgment got two usable replies (no duplicate calls)
    assert res.reasks == sum(r["reasks"] for r in recs) == sum(o in CONTENT_FAULTS for o in outcomes) > 0
    assert len(judged) == 60 and set(judged.values()) == {1}


# ---- item 5: a refused response_format moves on at once ----------------------------------------------

def test_llama_cpp_python_500_on_json_schema_falls_back_without_retrying(tmp_path):
    run = make_run(tmp_path / "run", n=3)
    with FakeOpenAI(flavor="llama-cpp-python") as srv:
        res = judge(cfg_for(run, srv, concurrency=1, max_retries=6))
        used = [(e["response_format"], e["outcome"]) for e in srv.log]
    assert used == [("json_schema", "rf_500"), ("json_object+schema", "ok"), ("json_object+schema", "ok"),
                    ("json_object+schema", "ok")]  # one refused request, no retries of it
    assert res.ok == 3 and res.retries == 0 and res.response_format == "json_object_schema"
    assert {r["response_format"] for r in read_jsonl(run / "judgments.jsonl")} == {"json_object_schema"}
    assert res.response_format_refusals[0]["status"] == 500


def test_a_transient_500_is_still_retried_in_the_same_mode(tmp_path):
    run = make_run(tmp_path / "run", n=1)
    with FakeOpenAI() as srv:
        srv.script.append("500")
        res = judge(cfg_for(run, srv))
        used = [e["response_format"] for e in srv.log]
    assert used == ["json_schema", "json_schema"] and res.retries == 1 and res.response_format == "json_schema"


def test_a_request_refused_for_another_reason_does_not_demote_the_run(tmp_path):
    run = make_run(tmp_path / "run", n=3)
    too_long = {"status": 400, "body": {"error": {"message": "This model's maximum context length is 4096 tokens",
                                                  "code": "context_length_exceeded"}}}
    with FakeOpenAI() as srv:
        srv.script.extend(["good", too_long, too_long, too_long, too_long, "good"])
        res = judge(cfg_for(run, srv, concurrency=1))
        last = srv.log[-1]["response_format"]
    assert (res.ok, res.errors) == (2, 1) and last == "json_schema" and res.response_format == "json_schema"
