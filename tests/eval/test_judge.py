"""The LLM judge against a real local OpenAI-compatible server: templates, shuffling, parsing, faults,
resume (also after kill -9), response_format fallback, keys and costs, and one-line errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mixnu.errors import ConfigError
from mixnu.eval.judge import JudgeConfig, judge, shown_order
from mixnu.eval.templates import load_template, render
from mixnu.io import read_jsonl
from tests.eval.conftest import make_run, write_suite
from tests.eval.fake_openai import FakeOpenAI, expected_scores

FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5}


def cfg_for(run: Path, srv: FakeOpenAI, **kw) -> JudgeConfig:
    return JudgeConfig(run_dir=run, judge_url=srv.base_url, **{"judge_model": "fake", **FAST, **kw})


def responses_of(run: Path) -> dict[tuple[str, int, str], str]:
    return {(r["prompt_id"], r["sample"], r["model"]): r["response"] for r in read_jsonl(run / "responses.jsonl")}


# ---- templates ---------------------------------------------------------------------------------------

# sha256 of the card's judge prompt as MISSION.md quotes it verbatim (the fenced block from
# "system: You are a strict evaluator" to the closing fence), taken 2026-11-30.
CARD_PROMPT_SHA256 = "190ed3dccb97148472c3699f40c021f0ef34ebb3dbf097593b1bc3e923992302"


def test_card_template_is_the_cards_text_verbatim():
    import hashlib

    from mixnu.eval.templates import builtin_template_text

    text = builtin_template_text("card")
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == CARD_PROMPT_SHA256
    mission = Path(os.environ.get("MIXNU_SHARED", "/nonexistent")) / "MISSION.md"
    if mission.is_file():  # beside the data when it is there: compare with the text itself too
        block = re.search(r"```\n(system: You are a strict evaluator.*?)```", mission.read_text("utf-8"), re.S)
        assert block is not None and text == block.group(1)
    t = load_template("card")
    assert t.fixed_letters == ("A", "B", "C", "D", "E")
    msgs = render(t, "불수능 프롬프트", "notes", [f"resp {x}" for x in "abcde"])
    assert msgs[0] == {"role": "system", "content": "You are a strict evaluator of text generation models."}
    assert "three generative models" in msgs[1]["content"]  # verbatim, the card's own slip included
    assert "Prompt: 불수능 프롬프트\nA: resp a\nB: resp b" in msgs[1]["content"]
    assert msgs[1]["content"].endswith("E: resp e\nDeduct fluency points if the model generates output in a different language from the prompt.")


def test_card_template_refuses_a_run_without_five_models():
    with pytest.raises(ConfigError, match="exactly 5 models.*--template default"):
        render(load_template("card"), "p", "n", ["x", "y", "z"])


@pytest.mark.parametrize(("n", "count", "letters"), [(2, "two", "A and B"), (3, "three", "A, B, and C"),
                                                     (5, "five", "A, B, C, D, and E")])
def test_default_template_counts_and_lists_only_the_models_shown(n, count, letters):
    user = render(load_template("default"), "프롬프트", "판단 기준", [f"답{i}" for i in range(n)])[1]["content"]
    assert f"performance of {count} generative models" in user
    assert f"score of model {letters}." in user
    shown = set(re.findall(r"^<([A-Z])>$", user, re.M))
    assert shown == {chr(65 + i) for i in range(n)}
    assert f'"{chr(65 + n)}"' not in user and f"<{chr(65 + n)}>" not in user
    assert "판단 기준" in user and "{" not in user.replace('{"', "").replace("{'", "").split("JSON only")[0]


def test_placeholders_inside_responses_are_not_expanded():
    user = render(load_template("default"), "P", "N", ["{Prompt} {Notes}", "ok"])[1]["content"]
    assert "<A>\n{Prompt} {Notes}\n</A>" in user


def test_custom_template_file(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("system: be fair\nuser:\nRate {Letters}.\nPrompt: {Prompt}\n{Responses}\n", encoding="utf-8")
    t = load_template(str(path))
    assert t.system == "be fair" and render(t, "p", "n", ["a", "b"])[1]["content"].startswith("Rate A and B.")
    (tmp_path / "bad.txt").write_text("user:\nno system line\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="system:"):
        load_template(str(tmp_path / "bad.txt"))


# ---- shuffling -------------------------------------------------------------------------------------

def test_shuffle_is_seeded_per_prompt_and_rotations_move_every_model():
    models = ["m1", "m2", "m3", "m4", "m5"]
    a = shown_order(models, 0, "p1", 0, 0)
    assert a == shown_order(list(reversed(models)), 0, "p1", 0, 0)  # input order does not matter
    orders = {tuple(shown_order(models, 0, f"p{i}", 0, 0)) for i in range(30)}
    assert len(orders) > 10  # differs across prompts
    assert any(shown_order(models, s, "p1", 0, 0) != a for s in range(1, 5))  # and across seeds
    rots = [shown_order(models, 0, "p1", 0, r) for r in range(5)]
    for m in models:
        assert sorted(o.index(m) for o in rots) == [0, 1, 2, 3, 4]


# ---- judging against the server ------------------------------------------------------------------------

def test_judge_scores_every_response_and_stores_the_mapping(tmp_path, fake_server):
    run = make_run(tmp_path / "run", n=6)
    res = judge(cfg_for(run, fake_server, rotations=2, price_prompt_per_1k=0.005, price_completion_per_1k=0.015))
    assert (res.items, res.judged, res.ok, res.errors, res.null_scores) == (12, 12, 12, 0, 0)
    recs = read_jsonl(run / "judgments.jsonl")
    resp = responses_of(run)
    for r in recs:
        assert sorted(r["order"]) == ["m1", "m2", "m3"] and r["status"] == "ok"
        for m in r["order"]:  # the letter mapping was undone correctly
            assert r["scores"][m] == expected_scores(resp[(r["prompt_id"], r["sample"], m)])
    # rotation 1 is rotation 0 shifted by one
    by = {(r["prompt_id"], r["rotation"]): r["order"] for r in recs}
    for pid in {r["prompt_id"] for r in recs}:
        assert by[(pid, 1)] == by[(pid, 0)][1:] + by[(pid, 0)][:1]
    # tokens and cost add up from the server's usage
    pt, ct = sum(r["usage"]["prompt_tokens"] for r in recs), sum(r["usage"]["completion_tokens"] for r in recs)
    assert res.prompt_tokens == pt > 0 and res.completion_tokens == ct > 0
    assert res.cost_usd == pytest.approx(pt / 1000 * 0.005 + ct / 1000 * 0.015, abs=1e-6)
    assert all(e["response_format"] == "json_schema" for e in fake_server.log)
    assert json.loads((run / "judge_summary.json").read_text())["result"]["ok"] == 12


def test_rerun_makes_no_call_and_a_changed_response_redoes_only_its_own(tmp_path, fake_server):
    run = make_run(tmp_path / "run", n=6)
    cfg = cfg_for(run, fake_server, rotations=2)
    judge(cfg)
    n0 = len(fake_server.log)
    again = judge(cfg)
    assert (again.judged, again.reused, len(fake_server.log)) == (0, 12, n0)
    recs = read_jsonl(run / "responses.jsonl")
    recs[0]["response"] = "완전히 다른 답변입니다"
    from mixnu.io import write_jsonl

    write_jsonl(run / "responses.jsonl", recs)
    third = judge(cfg)
    assert third.judged == 2 and len(fake_server.log) == n0 + 2  # 2 rotations of that one prompt
    assert {e["user"].count("완전히 다른 답변입니다") for e in fake_server.log[n0:]} == {1}


def test_changed_template_or_judge_model_gets_new_judgments_old_ones_stay_valid(tmp_path, fake_server):
    run = make_run(tmp_path / "run", n=4)
    judge(cfg_for(run, fake_server))
    tpl = tmp_path / "t.txt"
    tpl.write_text("system: x\nuser:\nFluency Rubric: rate {Letters}.\nPrompt: {Prompt}\n{Responses}\n", encoding="utf-8")
    assert judge(cfg_for(run, fake_server, template=str(tpl))).judged == 4
    assert judge(cfg_for(run, fake_server)).judged == 0
    assert judge(cfg_for(run, fake_server, judge_model="fake-2")).judged == 4


def test_retry_after_is_honoured(tmp_path):
    run = make_run(tmp_path / "run", n=1)
    with FakeOpenAI(retry_after=0.6) as srv:
        srv.script.extend(["429"])
        res = judge(cfg_for(run, srv, concurrency=1))
        times = [e["t"] for e in srv.log]
    assert res.ok == 1 and res.retries == 1
    assert times[1] - times[0] >= 0.6


def test_response_format_falls_back_when_the_server_rejects_it(tmp_path):
    run = make_run(tmp_path / "run", n=3)
    with FakeOpenAI(reject_response_format=("json_schema", "json_object")) as srv:
        res = judge(cfg_for(run, srv, concurrency=1))
        used = [e["response_format"] for e in srv.log]
    assert res.ok == 3 and res.response_format == "none"
    assert used[:4] == ["json_schema", "json_object+schema", "json_object", None] and set(used[4:]) == {None}
    assert [r["status"] for r in res.response_format_refusals] == [400, 400, 400]


def test_out_of_range_and_unparsable_replies_become_null_never_zero(tmp_path):
    run = make_run(tmp_path / "run", n=2)
    with FakeOpenAI() as srv:
        srv.script.extend(["out_of_range", "out_of_range", "malformed", "malformed"])
        res = judge(cfg_for(run, srv, concurrency=1, parse_retries=1))
    recs = {r["prompt_id"]: r for r in read_jsonl(run / "judgments.jsonl")}
    first, second = recs["hallucination-000"], recs["english-001"]
    assert first["status"] == "ok" and first["null_scores"] == 9 and first["calls"] == 2
    assert all(v is None for s in first["scores"].values() for v in s.values())
    assert "not an integer from 1 to 5" in first["error"]
    assert second["status"] == "error" and second["calls"] == 2 and "cannot evaluate" in second["raw"]
    assert res.errors == 1 and res.null_scores == 18 and res.reasks == 2 and res.incomplete == 1


def test_an_error_record_is_retried_by_the_next_run(tmp_path):
    run = make_run(tmp_path / "run", n=2)
    with FakeOpenAI() as srv:
        srv.script.extend(["malformed", "malformed"])
        assert judge(cfg_for(run, srv, concurrency=1, parse_retries=1)).errors == 1
        again = judge(cfg_for(run, srv, concurrency=1, parse_retries=1))
    assert again.judged == 1 and again.ok == 1


def test_the_api_key_is_sent_but_never_written(tmp_path, fake_server, monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-very-secret-123")
    run = make_run(tmp_path / "run", n=1)
    judge(cfg_for(run, fake_server, api_key_env="MY_JUDGE_KEY"))
    for f in run.iterdir():
        assert "sk-very-secret-123" not in f.read_text(encoding="utf-8")


def test_kill_minus_nine_then_rerun_judges_nothing_twice(tmp_path, run_cli):
    run = make_run(tmp_path / "run", n=6, reps=4)  # 24 items
    with FakeOpenAI(stall_after=10) as srv:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mixnu", "eval", "judge", str(run), "--judge-url", srv.base_url,
             "--judge-model", "fake", "--concurrency", "4", "-q"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        out = run / "judgments.jsonl"
        deadline = time.time() + 60
        while time.time() < deadline and not (out.exists() and len(out.read_text().splitlines()) >= 10):
            time.sleep(0.05)
        time.sleep(0.3)  # the stalled requests are in flight now
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        done_before = len(read_jsonl(out))
        assert done_before == 10
        srv.stall_after = None
        deadline = time.time() + 5
        while time.time() < deadline and sum(e["outcome"] == "aborted" for e in srv.log) < 4:
            time.sleep(0.05)
        rc, _, err = run_cli("eval", "judge", run, "--judge-url", srv.base_url, "--judge-model", "fake", "-q")
        assert rc == 0, err
        judged = srv.judged()
        aborted = sum(e["outcome"] == "aborted" for e in srv.log)
    assert aborted == 4  # requests were really cut off mid-flight by the kill
    assert len(judged) == 24 and set(judged.values()) == {1}  # no prompt judged twice
    recs = read_jsonl(out)
    assert len(recs) == len({r["key"] for r in recs}) == 24 and {r["status"] for r in recs} == {"ok"}


def test_torn_last_line_is_repaired_before_appending(tmp_path, fake_server):
    run = make_run(tmp_path / "run", n=3)
    judge(cfg_for(run, fake_server))
    path = run / "judgments.jsonl"
    text = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(text[:2]) + text[2][:40], encoding="utf-8")  # kill mid-append
    res = judge(cfg_for(run, fake_server))
    assert res.judged == 1
    assert len(read_jsonl(path, tolerate_torn_tail=False)) == 3


# ---- bad input: one clear line each ------------------------------------------------------------------

def _one_line(rc: int, err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 1 and len(lines) == 1 and lines[0].startswith("mixnu: error:"), err
    return lines[0]


def test_unreachable_judge_fails_after_retries_with_one_line(tmp_path, run_cli):
    import socket

    run = make_run(tmp_path / "run", n=2)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    line = _one_line(*run_cli("eval", "judge", run, "--judge-url", f"http://127.0.0.1:{port}/v1", "--judge-model",
                              "x", "--max-retries", "2", "--set", "backoff_base_s=0.01", "-q")[::2])
    assert "failed after 3 attempts" in line and "reachable" in line


def test_a_refused_key_stops_at_once_with_one_line(tmp_path, run_cli, fake_server):
    run = make_run(tmp_path / "run", n=3)
    fake_server.script.extend(["401"])
    line = _one_line(*run_cli("eval", "judge", run, "--judge-url", fake_server.base_url, "--judge-model", "f",
                              "--concurrency", "1", "-q")[::2])
    assert "refused the API key (HTTP 401)" in line and len(fake_server.log) == 1


def test_missing_api_key_for_a_host_that_needs_one(tmp_path, run_cli, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    run = make_run(tmp_path / "run", n=1)
    line = _one_line(*run_cli("eval", "judge", run, "--judge-url", "https://api.openai.com/v1", "-q")[::2])
    assert "OPENAI_API_KEY" in line and "api.openai.com" in line


def test_responses_from_a_different_suite(tmp_path, run_cli, fake_server):
    run = make_run(tmp_path / "run", n=3)
    other = write_suite(tmp_path / "other.yaml", n=4, name="other")
    line = _one_line(*run_cli("eval", "judge", run, "--suite", other, "--judge-url", fake_server.base_url,
                              "--judge-model", "f", "-q")[::2])
    assert "different suite" in line and not fake_server.log


def test_suite_failing_the_schema_names_the_prompt(tmp_path, run_cli):
    from tests.eval.conftest import suite_data

    data = suite_data(3)
    data["prompts"][1]["attribute"] = "proverbs"  # english prompt filed under the wrong attribute
    import yaml

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    line = _one_line(*run_cli("eval", "suite", bad)[::2])
    assert "english-001" in line
    rc, _, err = run_cli("eval", "suite", write_suite(tmp_path / "ok.yaml"), "--show", "english-001")
    assert rc == 0 and "Tell me about the weather" in err


def test_a_request_the_judge_rejects_is_stored_as_error_and_the_run_goes_on(tmp_path):
    run = make_run(tmp_path / "run", n=3)
    with FakeOpenAI() as srv:
        srv.script.extend(["good", "400"])
        res = judge(cfg_for(run, srv, concurrency=1, response_format="none"))
    assert (res.ok, res.errors) == (2, 1)
    bad = [r for r in read_jsonl(run / "judgments.jsonl") if r["status"] == "error"]
    assert "HTTP 400" in bad[0]["error"] and all(v is None for s in bad[0]["scores"].values() for v in s.values())
