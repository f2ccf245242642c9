"""The evaluation report: `report(ReportConfig) -> ReportResult` (`mixnu eval report RUN_DIR`).

Reads `suite.yaml`, `responses.jsonl` and `judgments.jsonl` of a run folder and writes `RUN_DIR/report/`
(atomically, replacing an older report):

- `report.md`: every table below, in Markdown;
- `by_model.csv`, `by_category.csv`, `by_attribute.csv`: mean ± 95% bootstrap CI of fluency,
  relevance and accuracy per model (× category, × attribute), with n and the null count;
- `scores.csv`: the final score of every (prompt, sample, model): the median over rotations of
  the non-null scores (null when every rotation gave null);
- `position_bias.csv`: mean score by the letter position the judge saw (A, B, …);
- `checks.csv`: the automatic checks of every response (`mixnu.eval.checks`), and flag rates per model;
- `by_category.png`, `by_attribute.png`: grouped bar charts with CI error bars, like the card's figure.

Judgments are used only when their key still matches the current prompt, notes and responses
(stale ones, from before a prompt or response changed, are counted and ignored). If several judges
or templates judged the run, the last one written is reported unless `judge_model`/`template` is given.
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from mixnu.config import StageConfig
from mixnu.errors import DataError
from mixnu.eval.checks import FLAGS, check_response
from mixnu.eval.criteria import CRITERIA
from mixnu.eval.records import fresh_judgments, load_run
from mixnu.eval.suite import ATTRIBUTES
from mixnu.io import atomic_dir


class ReportConfig(StageConfig):
    """Settings of `mixnu eval report`."""

    run_dir: Path
    out: Path | None = None        # default: RUN_DIR/report
    judge_model: str | None = None
    template: str | None = None    # template name as stored in the judgments ("default", "card", a path)
    bootstrap: int = Field(2000, ge=100)
    confidence: float = Field(0.95, gt=0, lt=1)
    seed: int = 0


@dataclass(frozen=True)
class ReportResult:
    """Where the report went and what it summarises."""

    out: Path
    report_md: Path
    files: list[str]
    models: list[str]
    judge_model: str | None
    template: str | None
    judgments: int
    stale_judgments: int
    error_judgments: int
    null_final_scores: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


def bootstrap_ci(values: list[float], n_boot: int, confidence: float, seed: int) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap of the mean with a seeded numpy generator."""
    if not values:
        return float("nan"), float("nan"), float("nan")
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) == 1 or np.all(x == x[0]):
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)  # (n_boot,)
    alpha = (1 - confidence) / 2
    return mean, float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def _current_judgments(run_dir: Path, suite: Any, responses: list[dict[str, Any]],
                       cfg: ReportConfig) -> tuple[list[dict[str, Any]], int]:
    """Latest judgment per (prompt, sample, rotation) of the chosen judge, and how many were stale."""
    path = run_dir / "judgments.jsonl"
    current, stale = fresh_judgments(run_dir, suite, responses)
    if not current:
        raise DataError(f"{path}: no judgment matches the current responses; run 'mixnu eval judge' again")
    judge = cfg.judge_model or current[-1]["judge_model"]
    template = cfg.template or next(r["template"] for r in reversed(current) if r["judge_model"] == judge)
    chosen: dict[tuple[str, int, int], dict[str, Any]] = {}
    for rec in current:
        if rec["judge_model"] == judge and rec["template"] == template:
            chosen[(rec["prompt_id"], int(rec["sample"]), int(rec["rotation"]))] = rec
    if not chosen:
        raise DataError(f"{path}: no judgments by judge {judge!r} with template {template!r}")
    return list(chosen.values()), stale


def current_judgments(run_dir: str | Path, judge_model: str | None = None,
                      template: str | None = None) -> list[dict[str, Any]]:
    """The judgment records that match the run's current suite and responses (see `report`)."""
    suite, responses = load_run(Path(run_dir), None)
    cfg = ReportConfig(run_dir=Path(run_dir), judge_model=judge_model, template=template)
    return _current_judgments(Path(run_dir), suite, responses, cfg)[0]


def final_scores(judgments: list[dict[str, Any]]) -> dict[tuple[str, int, str], dict[str, float | None]]:
    """(prompt_id, sample, model) -> criterion -> median over rotations of the non-null scores."""
    acc: dict[tuple[str, int, str], dict[str, list[int]]] = defaultdict(lambda: {c: [] for c in CRITERIA})
    for rec in judgments:
        for model, scores in rec["scores"].items():
            slot = acc[(rec["prompt_id"], int(rec["sample"]), model)]
            for c in CRITERIA:
                if scores.get(c) is not None:
                    slot[c].append(scores[c])
    return {k: {c: (float(statistics.median(v[c])) if v[c] else None) for c in CRITERIA} for k, v in acc.items()}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        if not rows:
            return
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _aggregate(rows: list[dict[str, Any]], group: str | None, cfg: ReportConfig) -> list[dict[str, Any]]:
    buckets: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        buckets[(r["model"], r[group] if group else "all")].append(r)
    out = []
    for (model, g), rs in sorted(buckets.items()):
        row: dict[str, Any] = {"model": model, group or "scope": g}
        for c in CRITERIA:
            vals = [r[c] for r in rs if r[c] is not None]
            mean, lo, hi = bootstrap_ci(vals, cfg.bootstrap, cfg.confidence, cfg.seed)
            row.update({f"{c}_mean": round(mean, 4), f"{c}_ci_low": round(lo, 4), f"{c}_ci_high": round(hi, 4),
                        f"{c}_n": len(vals), f"{c}_null": len(rs) - len(vals)})
        out.append(row)
    return out


def _md_scores(rows: list[dict[str, Any]], key: str) -> str:
    head = f"| model | {key} | " + " | ".join(f"{c} (95% CI)" for c in CRITERIA) + " | n |"
    lines = [head, "|" + "---|" * (3 + len(CRITERIA))]
    for r in rows:
        cells = [f"{r[f'{c}_mean']:.2f} [{r[f'{c}_ci_low']:.2f}, {r[f'{c}_ci_high']:.2f}]"
                 if r[f"{c}_n"] else "–" for c in CRITERIA]
        lines.append(f"| {r['model']} | {r[key]} | " + " | ".join(cells) + f" | {r[f'{CRITERIA[0]}_n']} |")
    return "\n".join(lines)


def _md_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in r.values()) + " |" for r in rows]
    return "\n".join(lines)


def _plot(rows: list[dict[str, Any]], key: str, order: list[str], path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    models = sorted({r["model"] for r in rows})
    groups = [g for g in order if any(r[key] == g for r in rows)]
    fig = Figure(figsize=(max(6, 1.1 * len(groups) * max(1, len(models)) / 2), 9))  # no pyplot: backend untouched
    axes = fig.subplots(len(CRITERIA), 1, sharex=True, squeeze=False)[:, 0]
    width = 0.8 / max(1, len(models))
    for ax, c in zip(axes, CRITERIA, strict=True):
        for i, m in enumerate(models):
            by_g = {r[key]: r for r in rows if r["model"] == m}
            xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(groups))]
            means = [by_g[g][f"{c}_mean"] if g in by_g else np.nan for g in groups]
            err = [[max(0.0, by_g[g][f"{c}_mean"] - by_g[g][f"{c}_ci_low"]) if g in by_g else 0 for g in groups],
                   [max(0.0, by_g[g][f"{c}_ci_high"] - by_g[g][f"{c}_mean"]) if g in by_g else 0 for g in groups]]
            err = np.nan_to_num(np.asarray(err, dtype=float))
            ax.bar(xs, means, width, yerr=err, capsize=2, label=m)
        ax.set_ylim(0, 5.5)
        ax.set_ylabel(c)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_title(title)
    axes[0].legend(ncol=min(len(models), 6), fontsize=8, loc="upper right")
    axes[-1].set_xticks(range(len(groups)), [g.replace("_", " ") for g in groups], rotation=30, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _score_rows(responses: list[dict[str, Any]], suite: Any,
                finals: dict[tuple[str, int, str], dict[str, float | None]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(final scores, automatic checks): one row per judged response, by prompt, model, sample."""
    by_id = suite.by_id()
    rows, check_rows = [], []
    for r in sorted(responses, key=lambda r: (r["prompt_id"], r["model"], r["sample"])):
        p = by_id[r["prompt_id"]]
        f = finals.get((r["prompt_id"], int(r["sample"]), r["model"]))
        if f is None:
            continue
        rows.append({"prompt_id": p.id, "category": p.category, "attribute": p.attribute, "sample": r["sample"],
                     "model": r["model"], **f})
        chk = check_response(p.prompt, r["response"], p.attribute).to_dict()
        check_rows.append({"prompt_id": p.id, "attribute": p.attribute, "sample": r["sample"], "model": r["model"],
                           **{k: v for k, v in chk.items() if k != "flags"}, "flags": " ".join(chk["flags"])})
    return rows, check_rows


def _position_rows(judgments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean score per criterion by the letter position the judge saw (A, B, …), over `ok` judgments."""
    pos: dict[str, dict[str, list[int]]] = defaultdict(lambda: {c: [] for c in CRITERIA})
    for rec in judgments:
        if rec["status"] != "ok":
            continue
        for i, m in enumerate(rec["order"]):
            for c in CRITERIA:
                v = rec["scores"].get(m, {}).get(c)
                if v is not None:
                    pos[chr(ord("A") + i)][c].append(v)
    return [{"position": x, **{f"{c}_mean": round(float(np.mean(v[c])), 4) if v[c] else None for c in CRITERIA},
             "n": len(v[CRITERIA[0]])} for x, v in sorted(pos.items())]


def _flag_rows(models: list[str], check_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model: % of responses raising each automatic-check flag, and the mean length in characters."""
    flag_rows = []
    for m in models:
        mine = [r for r in check_rows if r["model"] == m]
        flag_rows.append({"model": m, "responses": len(mine),
                          **{f"{fl}_%": round(100 * sum(fl in r["flags"].split() for r in mine) / max(1, len(mine)), 1)
                             for fl in FLAGS},
                          "mean_chars": round(float(np.mean([r["chars"] for r in mine])), 1) if mine else 0.0})
    return flag_rows


def _usage(judgments: list[dict[str, Any]]) -> dict[str, Any]:
    """Failed judgments, null scores, re-asks, tokens and cost (USD) summed over `judgments`."""
    return {
        "errors": sum(r["status"] != "ok" for r in judgments),
        "raw_nulls": sum(int(r.get("null_scores", 0)) for r in judgments),
        "reasks": sum(int(r.get("reasks", 0)) for r in judgments),
        **{k: sum(int((r.get("usage") or {}).get(k, 0)) for r in judgments) for k in ("prompt_tokens", "completion_tokens")},
        "cost": round(sum(float(r.get("cost_usd") or 0) for r in judgments), 6),
    }


def _markdown(suite: Any, cfg: ReportConfig, judgments: list[dict[str, Any]], stale: int, u: dict[str, Any],
              tables: dict[str, list[dict[str, Any]]]) -> str:
    """The text of `report.md`."""
    jm, tpl = judgments[-1]["judge_model"], judgments[-1]["template"]
    rotations = max(int(r["rotation"]) for r in judgments) + 1
    cat_order = list(ATTRIBUTES)
    attr_order = [a for attrs in ATTRIBUTES.values() for a in attrs]
    by_cat = sorted(tables["by_category"], key=lambda r: (cat_order.index(r["category"]), r["model"]))
    by_attr = sorted(tables["by_attribute"], key=lambda r: (attr_order.index(r["attribute"]), r["model"]))
    return "\n\n".join([
        f"# Evaluation report: {suite.name} (v{suite.version})",
        f"Judge `{jm}`, template `{tpl}`, {rotations} rotation(s); {len(judgments)} judgments "
        f"({u['errors']} failed, {u['raw_nulls']} null scores inside them, {u['reasks']} re-asks after unusable "
        f"replies; {stale} stale ignored); "
        f"{u['prompt_tokens']:,} prompt + {u['completion_tokens']:,} completion tokens, ${u['cost']:.4f}. "
        f"Scores 1–5: median over rotations, then mean over prompts ± {cfg.confidence:.0%} bootstrap CI.",
        "## By model\n\n" + _md_scores(tables["by_model"], "scope"),
        "## By model × category\n\n" + _md_scores(by_cat, "category"),
        "![by category](by_category.png)",
        "## By model × attribute\n\n" + _md_scores(by_attr, "attribute"),
        "![by attribute](by_attribute.png)",
        "## Null final scores (every rotation unparsable or out of range)\n\n" + _md_table(tables["nulls"]),
        "## Position bias: mean score by the letter the judge saw\n\n" + _md_table(tables["position_bias"]),
        "## Automatic checks (no judge): % of responses flagged\n\n" + _md_table(tables["check_flags"]),
    ]) + "\n"


def _write(out: Path, md: str, tables: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Write the report folder atomically (replacing an older one); the names of its files."""
    with atomic_dir(out, force=True) as tmp:
        (tmp / "report.md").write_text(md, encoding="utf-8")
        for name, data in tables.items():
            _write_csv(tmp / f"{name}.csv", data)
        _plot(tables["by_category"], "category", list(ATTRIBUTES), tmp / "by_category.png",
              "Scores by category (mean, 95% CI)")
        _plot(tables["by_attribute"], "attribute", [a for attrs in ATTRIBUTES.values() for a in attrs],
              tmp / "by_attribute.png", "Scores by attribute (mean, 95% CI)")
    return ["report.md", *(f"{name}.csv" for name in tables), "by_category.png", "by_attribute.png"]


def report(cfg: ReportConfig) -> ReportResult:
    """Build the report of a judged run folder; see the module docstring for what is written."""
    run_dir = Path(cfg.run_dir)
    suite, responses = load_run(run_dir, None)
    judgments, stale = _current_judgments(run_dir, suite, responses, cfg)
    rows, check_rows = _score_rows(responses, suite, final_scores(judgments))
    models = sorted({r["model"] for r in rows})
    null_rows = [{"model": m, **{f"{c}_null": sum(r[c] is None for r in rows if r["model"] == m) for c in CRITERIA}}
                 for m in models]
    tables = {  # CSV name -> rows, in the order the files are listed
        "by_model": _aggregate(rows, None, cfg), "by_category": _aggregate(rows, "category", cfg),
        "by_attribute": _aggregate(rows, "attribute", cfg), "scores": rows, "position_bias": _position_rows(judgments),
        "checks": check_rows, "check_flags": _flag_rows(models, check_rows), "nulls": null_rows,
    }
    u = _usage(judgments)
    out = Path(cfg.out) if cfg.out is not None else run_dir / "report"
    files = _write(out, _markdown(suite, cfg, judgments, stale, u, tables), tables)
    return ReportResult(out=out, report_md=out / "report.md", files=files, models=models,
                        judge_model=judgments[-1]["judge_model"], template=judgments[-1]["template"],
                        judgments=len(judgments), stale_judgments=stale, error_judgments=u["errors"],
                        null_final_scores=sum(sum(v for k, v in r.items() if k != "model") for r in null_rows),
                        prompt_tokens=u["prompt_tokens"], completion_tokens=u["completion_tokens"], cost_usd=u["cost"])
