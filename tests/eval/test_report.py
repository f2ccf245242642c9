"""The report: numbers against independently computed means, CIs, nulls, position bias, files; `eval run`."""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from mixnu.eval.judge import JudgeConfig, judge
from mixnu.eval.report import ReportConfig, bootstrap_ci, report
from mixnu.io import read_jsonl, write_jsonl
from tests.eval.conftest import make_run
from tests.eval.fake_openai import CRITERIA, FakeOpenAI, expected_scores


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _judge(run: Path, srv: FakeOpenAI, **kw):
    return judge(JudgeConfig(run_dir=run, judge_url=srv.base_url, judge_model="fake", backoff_base_s=0.01, **kw))


def test_report_means_match_an_independent_computation(tmp_path):
    run = make_run(tmp_path / "run", n=6, reps=1, samples=2)
    with FakeOpenAI() as srv:
        # 3 judgments all null, spread so that every (prompt, sample) keeps a valid rotation for the median
        srv.script.extend(["out_of_range", "good", "out_of_range", "good", "good", "out_of_range"])
        _judge(run, srv, rotations=3, concurrency=1, parse_retries=0)
    res = report(ReportConfig(run_dir=run))
    suite = yaml.safe_load((run / "suite.yaml").read_text(encoding="utf-8"))
    cat = {p["id"]: p["category"] for p in suite["prompts"]}
    # Independently: the fake judge's score is a function of the response; every group keeps >= 1 valid rotation.
    want: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for r in read_jsonl(run / "responses.jsonl"):
        for c, v in expected_scores(r["response"]).items():
            want[(r["model"], cat[r["prompt_id"]])][c].append(v)
    rows = _csv(res.out / "by_category.csv")
    assert len(rows) == len(want) == 3 * 5
    for row in rows:
        for c in CRITERIA:
            vals = want[(row["model"], row["category"])][c]
            assert float(row[f"{c}_mean"]) == pytest.approx(statistics.mean(vals), abs=1e-4)
            assert int(row[f"{c}_n"]) == len(vals)
            assert float(row[f"{c}_ci_low"]) <= float(row[f"{c}_mean"]) <= float(row[f"{c}_ci_high"])
    judged = read_jsonl(run / "judgments.jsonl")
    assert sum(r["null_scores"] for r in judged) == 27  # 3 judgments x 3 models x 3 criteria
    assert res.error_judgments == 0 and res.null_final_scores == 0
    md = res.report_md.read_text(encoding="utf-8")
    for part in ("By model × category", "By model × attribute", "Position bias", "Automatic checks", "27 null scores"):
        assert part in md
    for name in ("by_category.png", "by_attribute.png"):
        assert (res.out / name).read_bytes()[:4] == b"\x89PNG"
    assert {r["model"] for r in _csv(res.out / "check_flags.csv")} == {"m1", "m2", "m3"}


def test_null_final_scores_are_counted_not_zero(tmp_path):
    run = make_run(tmp_path / "run", n=2)
    with FakeOpenAI() as srv:
        srv.script.extend(["out_of_range"])
        _judge(run, srv, concurrency=1, parse_retries=0)
    res = report(ReportConfig(run_dir=run))
    nulls = {r["model"]: r for r in _csv(res.out / "nulls.csv")}
    assert all(int(nulls[m]["fluency_null"]) == 1 for m in ("m1", "m2", "m3"))
    scores = _csv(res.out / "scores.csv")
    assert sum(r["fluency"] == "" for r in scores) == 3 and "0" not in {r["fluency"] for r in scores}
    assert res.null_final_scores == 9


def test_position_bias_table_shows_a_biased_judge(tmp_path):
    run = make_run(tmp_path / "run", n=6, reps=3)
    with FakeOpenAI(bias_letter_a=2) as srv:
        _judge(run, srv, rotations=3)
    rows = {r["position"]: r for r in _csv(report(ReportConfig(run_dir=run)).out / "position_bias.csv")}
    # independent: mean by position straight from the stored records
    by_pos = defaultdict(list)
    for rec in read_jsonl(run / "judgments.jsonl"):
        for i, m in enumerate(rec["order"]):
            by_pos["ABC"[i]].append(rec["scores"][m]["fluency"])
    for x in "ABC":
        assert float(rows[x]["fluency_mean"]) == pytest.approx(statistics.mean(by_pos[x]), abs=1e-4)
    assert float(rows["A"]["fluency_mean"]) > float(rows["B"]["fluency_mean"]) + 0.7


def test_stale_judgments_are_ignored(tmp_path):
    run = make_run(tmp_path / "run", n=3)
    with FakeOpenAI() as srv:
        _judge(run, srv, rotations=2)
    recs = read_jsonl(run / "responses.jsonl")
    recs[0]["response"] = "바뀐 답변"
    write_jsonl(run / "responses.jsonl", recs)
    res = report(ReportConfig(run_dir=run))
    assert res.stale_judgments == 2 and res.judgments == 4
    from mixnu.eval.report import current_judgments

    assert {r["prompt_id"] for r in current_judgments(run)} == {"english-001", "law-002"}


def test_bootstrap_ci_is_seeded_and_sane():
    vals = [1, 2, 3, 4, 5, 5, 4, 3]
    a, b = bootstrap_ci(vals, 2000, 0.95, 0), bootstrap_ci(vals, 2000, 0.95, 0)
    assert a == b and a[1] < a[0] < a[2] and a[0] == statistics.mean(vals)
    assert bootstrap_ci([4], 2000, 0.95, 0) == (4.0, 4.0, 4.0)


def test_report_cli_and_errors(tmp_path, run_cli):
    run = make_run(tmp_path / "run", n=2)
    rc, _, err = run_cli("eval", "report", run)
    assert rc == 1 and "judgments.jsonl: not found" in err and len(err.strip().splitlines()) == 1
    with FakeOpenAI() as srv:
        _judge(run, srv)
    rc, out, err = run_cli("eval", "report", run, "--out", tmp_path / "rep", "--json", "-", "--bootstrap", "200")
    assert rc == 0, err
    assert (tmp_path / "rep" / "report.md").is_file()
    rc, _, _ = run_cli("eval", "report", run, "--out", tmp_path / "rep", "-q")  # replaces the old report
    assert rc == 0 and not [p for p in tmp_path.iterdir() if p.name.startswith(".rep")]


def test_eval_run_generates_judges_and_reports(tmp_path, run_cli):
    from tests.eval.conftest import write_suite

    suite = write_suite(tmp_path / "suite.yaml", n=4)
    with FakeOpenAI() as srv:
        cfg = {"out": str(tmp_path / "run"),
               "generate": {"suite": str(suite), "max_new_tokens": 8, "models": [
                   {"name": "comp", "backend": "openai", "base_url": srv.base_url, "model": "gen", "api": "completions"},
                   {"name": "chat", "backend": "openai", "base_url": srv.base_url, "model": "gen", "api": "chat"}]},
               "judge": {"judge_url": srv.base_url, "judge_model": "fake", "rotations": 2},
               "report": {"bootstrap": 200}}
        (tmp_path / "eval.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
        rc, _, err = run_cli("eval", "run", tmp_path / "eval.yaml", "-q")
        assert rc == 0, err
        n_requests = len(srv.log)
        rc, _, err = run_cli("eval", "run", tmp_path / "eval.yaml", "-q")  # resumes: nothing to do
        assert rc == 0 and len(srv.log) == n_requests
    assert n_requests == 4 * 2 + 4 * 2
    rows = _csv(tmp_path / "run" / "report" / "by_model.csv")
    assert {r["model"] for r in rows} == {"comp", "chat"}
    cfg["judge"]["template"] = "card"
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    rc, _, err = run_cli("eval", "run", tmp_path / "eval.yaml", "-q")
    assert rc == 1 and "exactly 5 models" in err


def test_a_failed_report_leaves_the_old_one_whole(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run", n=2)
    with FakeOpenAI() as srv:
        _judge(run, srv)
    first = report(ReportConfig(run_dir=run, bootstrap=200))
    before = {p.name: p.read_bytes() for p in first.out.iterdir()}
    import mixnu.eval.report as rep

    def boom(*a, **k):
        raise RuntimeError("disk full while plotting")

    monkeypatch.setattr(rep, "_plot", boom)
    with pytest.raises(RuntimeError):
        report(ReportConfig(run_dir=run, bootstrap=300))
    assert {p.name: p.read_bytes() for p in first.out.iterdir()} == before
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []
