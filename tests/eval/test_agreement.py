"""Agreement statistics, checked against worked examples computed by hand and by independent formulas."""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from mixnu.errors import DataError, OutputExistsError
from mixnu.eval.agreement import AgreementConfig, compute_agreement, judge_scores, ordinal_alpha, pair_stats
from mixnu.eval.annotate import AnnotateConfig, open_session
from mixnu.eval.records import fresh_judgments
from mixnu.eval.suite import load_suite
from mixnu.io import read_jsonl, write_jsonl
from tests.eval.annotate_helpers import write_run


def kappa_by_formula(x: list[float], y: list[float]) -> float:
    """Quadratic-weighted kappa from its definition: 1 - E[(X-Y)^2] observed / E[(X-Y)^2] if independent.

    With weights w_ij = (i - j)^2, sum(w * O) / n is the mean squared difference of the pairs, and
    sum(w * E) / n is the mean over every (x_i, y_j) combination (the product of the marginals).
    """
    observed = sum((a - b) ** 2 for a, b in zip(x, y, strict=True)) / len(x)
    chance = sum((a - b) ** 2 for a in x for b in y) / len(x) ** 2
    return 1 - observed / chance


def test_worked_example_by_hand():
    # judge x and human y on four units: diffs 0, 1, 0, 2.
    x, y = [1, 5, 3, 3], [1, 4, 3, 5]
    s = pair_stats(x, y)
    # Observed: mean (x-y)^2 = (0 + 1 + 0 + 4) / 4 = 1.25.
    # Chance: Var X + Var Y + (EX - EY)^2 = 2 + 2.1875 + 0.0625 = 4.25.  kappa = 1 - 1.25/4.25 = 12/17.
    assert s["kappa"] == pytest.approx(12 / 17)
    # Spearman: ranks x = [1, 4, 2.5, 2.5], y = [1, 3, 2, 4]; centred products sum to 3,
    # sums of squares 4.5 and 5 -> rho = 3 / sqrt(22.5).
    assert s["spearman"] == pytest.approx(3 / math.sqrt(22.5))
    assert s["exact"] == 0.5 and s["within1"] == 0.75 and s["n"] == 4
    # A 2x2 table: O = [[1, 1], [0, 2]] / 4, marginals (.5, .5) and (.25, .75):
    # sum wO = .25, sum wE = .5*.75 + .5*.25 = .5 -> kappa = 0.5.
    assert pair_stats([1, 1, 2, 2], [1, 2, 2, 2])["kappa"] == pytest.approx(0.5)


def test_kappa_matches_the_formula_with_and_without_half_points():
    rng = random.Random(0)
    for half in (False, True):
        for _ in range(20):
            n = rng.randint(5, 40)
            x = [rng.randint(2, 10) / 2 if half else rng.randint(1, 5) for _ in range(n)]
            y = [min(5, max(1, round(v + rng.choice([-1, 0, 0, 1])))) for v in x]
            if len(set(x)) < 2 and len(set(y)) < 2:
                continue
            assert pair_stats(x, y)["kappa"] == pytest.approx(kappa_by_formula(x, y)), (x, y)


def test_undefined_statistics_are_none_not_numbers():
    s = pair_stats([3, 3, 3], [3, 3, 3])
    assert s["kappa"] is None and s["spearman"] is None and s["exact"] == 1.0
    assert pair_stats([], [])["exact"] is None
    assert pair_stats([2], [4])["kappa"] is None and pair_stats([2], [4])["within1"] == 0.0


def test_krippendorff_alpha_published_example():
    """Krippendorff (2011), 'Computing Krippendorff's alpha-reliability', section C: 4 coders, 12 units.

    The paper reports ordinal alpha = 0.815 for this table (nominal .743, interval .849).
    """
    n = np.nan
    data = np.array([
        [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
        [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
    ])
    assert ordinal_alpha(data) == pytest.approx(0.815, abs=5e-4)
    assert ordinal_alpha(np.array([[3.0, 3.0], [3.0, 3.0], [3.0, 3.0]])) is None


def test_judge_score_is_the_median_over_rotations(tmp_path: Path):
    scripted = {0: 3, 1: 5, 2: 4}
    run = write_run(tmp_path / "run", per_kind=1, rotations=3,
                    judge=lambda pid, m, c, rot: None if (m == "qwen" and rot == 0) else scripted[rot],
                    error_items=("hallu-001",))
    scores = judge_scores(read_jsonl(run / "judgments.jsonl"))
    assert list(scores) == ["judge:gpt-4o"]
    s = scores["judge:gpt-4o"]
    assert s[("law-001/0", "mixnu", "fluency")] == 4.0       # median(3, 5, 4)
    assert s[("law-001/0", "qwen", "accuracy")] == 4.5       # median(5, 4): the null is dropped
    assert not any(u[0] == "hallu-001/0" for u in s)         # status="error" gives no score


def test_judgments_of_withdrawn_responses_are_not_counted(tmp_path: Path):
    run = write_run(tmp_path / "run", per_kind=1, rotations=1, judge=lambda pid, m, c, rot: 4)
    responses = read_jsonl(run / "responses.jsonl")
    before = judge_scores(fresh_judgments(run, load_suite(run / "suite.yaml"), responses)[0])["judge:gpt-4o"]
    changed = responses.pop(0)  # a response withdrawn (e.g. regenerated elsewhere) after judging
    write_jsonl(run / "responses.jsonl", responses)
    fresh, stale = fresh_judgments(run, load_suite(run / "suite.yaml"), responses)
    after = judge_scores(fresh)["judge:gpt-4o"]
    item = f"{changed['prompt_id']}/{changed['sample']}"
    assert stale >= 1
    assert any(u[0] == item for u in before) and not any(u[0] == item for u in after)


def _annotate(run: Path, scores: dict[str, callable], n: int = 10) -> list:
    """Give every (item, response, criterion) of the sample a score from scores[annotator](unit)."""
    session = open_session(AnnotateConfig(run_dir=run, sample=n))
    for who, fn in scores.items():
        for it in session.items:
            for r in it.responses:
                for c in ("fluency", "relevance", "accuracy"):
                    session.store.set_score(who, it.item_id, r.letter, r.model, c, fn(it.item_id, r.model, c))
    return session.items


def test_report_end_to_end(tmp_path: Path, run_cli):
    def judge(pid, m, c, rot):
        return 1 + (len(pid) * 7 + len(m) * 3 + len(c) + rot) % 5

    run = write_run(tmp_path / "run", per_kind=2, judge=judge)
    rng = random.Random(5)
    noisy = {}

    def alice(item, m, c):
        return judge(item[:-2], m, c, 0)  # agrees with the judge exactly

    def bob(item, m, c):
        return noisy.setdefault((item, m, c), rng.randint(1, 5))

    _annotate(run, {"alice": alice, "bob": bob})
    res = compute_agreement(AgreementConfig(run_dir=run))
    assert res.judges == ("judge:gpt-4o",) and res.humans == ("alice", "bob")
    data = json.loads((run / "agreement" / "agreement.json").read_text(encoding="utf-8"))
    by = {(p["a"], p["b"], p["category"], p["criterion"]): p for p in data["pairs"]}
    perfect = by[("judge:gpt-4o", "alice", "all", "all")]
    assert perfect["n"] == 10 * 3 * 3 and perfect["kappa"] == pytest.approx(1.0) and perfect["exact"] == 1.0
    # judge vs bob checked against the independent formula on the same units
    units = sorted(noisy)
    x = [alice(*u) for u in units]
    y = [noisy[u] for u in units]
    jb = by[("judge:gpt-4o", "bob", "all", "all")]
    assert jb["n"] == len(units) and jb["kappa"] == pytest.approx(kappa_by_formula(x, y))
    assert jb["exact"] == pytest.approx(np.mean(np.array(x) == np.array(y)))
    # per-category counts add up to the whole; every criterion and category is reported
    cats = {p["category"] for p in data["pairs"]} - {"all"}
    assert cats == {"language", "style", "domain", "localization", "hallucination"}
    for a, b in itertools.combinations(["judge:gpt-4o", "alice", "bob"], 2):
        for crit in ("fluency", "relevance", "accuracy", "all"):
            assert sum(by[(a, b, c, crit)]["n"] for c in cats) == by[(a, b, "all", crit)]["n"]
    # three raters -> Krippendorff's alpha, over all of them
    assert {s["group"] for s in data["alpha"]} == {"all raters"}
    md = (run / "agreement" / "agreement.md").read_text(encoding="utf-8")
    assert "| judge:gpt-4o vs alice | all | 90 | 1.000 |" in md and "MT-Bench" in md and "66%" in md
    for png in res.pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(res.pngs) == 3
    # the output folder is not replaced without --force (and stays complete)
    with pytest.raises(OutputExistsError):
        compute_agreement(AgreementConfig(run_dir=run))
    rc, out, err = run_cli("eval", "agreement", run, "--force", "--json", "-")
    assert rc == 0, err
    assert json.loads(out)["humans"] == ["alice", "bob"]


def test_two_raters_have_no_alpha_and_errors_are_one_line(tmp_path: Path, run_cli):
    run = write_run(tmp_path / "run", per_kind=1)
    rc, _, err = run_cli("eval", "agreement", run)
    assert rc == 1 and "no annotations" in err and len(err.strip().splitlines()) == 1
    session = open_session(AnnotateConfig(run_dir=run, sample=5))
    rc, _, err = run_cli("eval", "agreement", run)
    assert rc == 1 and "nobody has given a score" in err
    it = session.items[0]
    session.store.set_score("alice", it.item_id, "A", it.responses[0].model, "fluency", 4)
    (run / "judgments.jsonl").unlink()
    with pytest.raises(DataError, match="only one rater"):
        compute_agreement(AgreementConfig(run_dir=run))
    session.store.set_score("bob", it.item_id, "A", it.responses[0].model, "fluency", 4)
    res = compute_agreement(AgreementConfig(run_dir=run, out=tmp_path / "agr"))
    assert res.alphas == () and [p.kind for p in res.pairs][0] == "human-human"
    one = next(p for p in res.pairs if p.category == "all" and p.criterion == "fluency")
    assert one.n == 1 and one.exact == 1.0 and one.kappa is None


def test_with_the_real_judge_output(tmp_path: Path):
    """Contract check with `mixnu eval judge` (fake OpenAI server): letters and medians line up.

    The fake judge scores a response by its text, so an annotator who scores by the same rule
    must agree with the judge perfectly, whatever letter each response was shown under.
    """
    from mixnu.eval.judge import JudgeConfig, judge
    from mixnu.io import read_jsonl
    from tests.eval.conftest import make_run
    from tests.eval.fake_openai import FakeOpenAI, expected_scores

    run = make_run(tmp_path / "run", n=6)
    with FakeOpenAI() as srv:
        judge(JudgeConfig(run_dir=run, judge_url=srv.base_url, judge_model="fake", rotations=2, timeout_s=5,
                          backoff_base_s=0.01, backoff_max_s=0.05), quiet=True)
    first = {r["prompt_id"]: r["order"] for r in read_jsonl(run / "judgments.jsonl") if r["rotation"] == 0}
    session = open_session(AnnotateConfig(run_dir=run, sample=6))
    for it in session.items:
        assert [r.model for r in it.responses] == first[it.prompt_id]
        for r in it.responses:
            for c, v in expected_scores(r.text).items():
                session.store.set_score("alice", it.item_id, r.letter, r.model, c, v)
    res = compute_agreement(AgreementConfig(run_dir=run))
    whole = next(p for p in res.pairs if p.category == "all" and p.criterion == "all")
    assert (whole.a, whole.b, whole.n, whole.exact) == ("judge:fake", "alice", 6 * 3 * 3, 1.0)
    assert whole.kappa == pytest.approx(1.0)
