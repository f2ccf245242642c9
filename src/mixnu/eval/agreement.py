"""Judge-human and human-human agreement on the annotated sample (`mixnu eval agreement`).

Inputs: a run folder with `suite.yaml`, `judgments.jsonl` and `annotations.sqlite` (written by
`mixnu eval annotate`). A *unit* is one (item, model, criterion); a rater is the judge (one per
judge model and template in `judgments.jsonl`) or a human annotator. The judge's score of a unit
is the median over rotations of its non-null scores in `status="ok"` records
(docs/eval-run-format.md); with an even number of rotations it can be a half point.

For every pair of raters, and for each criterion (and all pooled) and each category (and all):
- Cohen's kappa with quadratic weights (`sklearn.metrics.cohen_kappa_score`). Half points are
  placed on a half-point grid, so the weights stay proportional to the squared score difference;
- Spearman's rho (`scipy.stats.spearmanr`);
- exact agreement and agreement within one point;
and Krippendorff's alpha (ordinal, the `krippendorff` package) for every rater set of 3 or more
(all raters; humans only). A statistic that is undefined (fewer than 2 units, or a rater who
gave one constant score) is `None`, never a number that looks real.

Written to disk (atomically, as one folder, default `RUN_DIR/agreement/`): `agreement.md`,
`agreement.json`, and one `confusion-<A>-vs-<B>.png` per pair (rows: categories; columns: criteria).
"""

from __future__ import annotations

import itertools
import re
import statistics
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixnu.config import StageConfig
from mixnu.errors import DataError
from mixnu.eval.annotate.store import AnnotationStore
from mixnu.eval.criteria import CRITERIA
from mixnu.eval.records import fresh_judgments
from mixnu.eval.suite import ATTRIBUTES, load_suite
from mixnu.io import atomic_dir, read_jsonl, write_json, write_text

Unit = tuple[str, str, str]  # (item_id, model, criterion)
Raters = dict[str, dict[Unit, float]]  # rater name -> unit -> score
ALL = "all"
MT_BENCH_NOTE = (
    "For context: MT-Bench (Zheng et al., 2023) reports GPT-4 agreeing with human experts on about 66% of "
    "pairwise votes, against about 63% between two humans (setup S2, without ties). Those are pairwise "
    "preferences, not 1-5 scores: compare the *gap* between judge-human and human-human here, not the levels."
)


class AgreementConfig(StageConfig):
    """Options of `mixnu eval agreement`."""

    run_dir: Path
    out: Path | None = None  # default RUN_DIR/agreement
    force: bool = False


@dataclass(frozen=True)
class PairStat:
    """Agreement of raters `a` and `b` on the units both scored (`None` = undefined)."""

    a: str
    b: str
    kind: str  # "judge-human", "human-human" or "judge-judge"
    category: str
    criterion: str
    n: int
    kappa: float | None
    spearman: float | None
    exact: float | None
    within1: float | None


@dataclass(frozen=True)
class AlphaStat:
    """Krippendorff's ordinal alpha of a set of 3 or more raters."""

    raters: tuple[str, ...]
    group: str  # "all raters" or "humans"
    category: str
    criterion: str
    units: int
    alpha: float | None


@dataclass(frozen=True)
class AgreementResult:
    """Where the report went, who was compared, and every statistic."""

    run_dir: Path
    out: Path
    judges: tuple[str, ...]
    humans: tuple[str, ...]
    pairs: tuple[PairStat, ...]
    alphas: tuple[AlphaStat, ...]
    pngs: tuple[Path, ...]
    markdown_summary: str


def _none(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def pair_stats(x: list[float], y: list[float]) -> dict[str, float | int | None]:
    """n, quadratic-weighted kappa, Spearman rho, exact and within-1 agreement of paired scores."""
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    n = len(x)
    out: dict[str, float | int | None] = {"n": n, "kappa": None, "spearman": None, "exact": None, "within1": None}
    if n == 0:
        return out
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    out["exact"] = float(np.mean(xa == ya))
    out["within1"] = float(np.mean(np.abs(xa - ya) <= 1))
    if n < 2:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Half points (medians over an even number of rotations) live on a half-point grid.
        grid = list(range(2, 11))
        kappa = cohen_kappa_score(np.rint(2 * xa).astype(int), np.rint(2 * ya).astype(int),
                                  labels=grid, weights="quadratic")
        rho = spearmanr(xa, ya).statistic
    out["kappa"], out["spearman"] = _none(kappa), _none(rho)
    return out


def ordinal_alpha(matrix: np.ndarray) -> float | None:
    """Krippendorff's ordinal alpha of a raters x units matrix (NaN = not rated); None if undefined."""
    import krippendorff

    rated = matrix[:, np.sum(~np.isnan(matrix), axis=0) >= 2]
    values = np.unique(rated[~np.isnan(rated)])
    if rated.shape[1] < 2 or len(values) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _none(krippendorff.alpha(reliability_data=rated, level_of_measurement="ordinal",
                                        value_domain=values))


def judge_scores(records: list[dict]) -> dict[str, dict[Unit, float]]:
    """Rater name -> unit -> median over rotations of the judge's non-null 1-5 scores.

    `records` are judgment records; pass `records.fresh_judgments(...)` so that judgments of
    responses that changed since are not counted.
    """
    raw: dict[tuple[str, str], dict[Unit, list[int]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        if rec.get("status") != "ok" or not isinstance(rec.get("scores"), dict):
            continue
        item_id = f"{rec['prompt_id']}/{rec['sample']}"
        group = raw[(str(rec.get("judge_model")), str(rec.get("template")))]
        for model, crits in rec["scores"].items():
            for crit in CRITERIA:
                v = (crits or {}).get(crit)
                if isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 5:
                    group[(item_id, str(model), crit)].append(v)
    models = [m for m, _ in raw]
    out: dict[str, dict[Unit, float]] = {}
    for (model, template), units in raw.items():
        name = f"judge:{model}" + (f"/{template}" if models.count(model) > 1 else "")
        out[name] = {u: float(statistics.median(v)) for u, v in units.items() if v}
    return out


def _slug(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name)


def _label(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _confusion(x: list[float], y: list[float]) -> tuple[list[float], list[list[int]]]:
    labels = sorted(set(range(1, 6)) | set(x) | set(y))
    idx = {v: i for i, v in enumerate(labels)}
    m = [[0] * len(labels) for _ in labels]
    for a, b in zip(x, y, strict=True):
        m[idx[a]][idx[b]] += 1
    return labels, m


def _plot(path: Path, a: str, b: str, grids: dict[tuple[str, str], tuple[list[float], list[list[int]]]],
          categories: list[str]) -> None:
    """One PNG per pair: a mosaic of confusion matrices, rows = categories, columns = criteria.

    Drawn as a single image on one Axes (many small Axes are slow to lay out); each block is
    shaded relative to its own largest count and shows the counts.
    """
    import matplotlib
    from matplotlib.figure import Figure

    crits = [*CRITERIA, ALL]
    labels = sorted({v for lab, _ in grids.values() for v in lab})
    size, step = len(labels), len(labels) + 1
    img = np.full((step * len(categories) - 1, step * len(crits) - 1), np.nan)
    # Fixed margins in inches (bbox_inches="tight" would draw every text twice).
    left, right, top, bottom, cell = 1.5, 0.2, 0.75, 0.55, 0.3
    width, height = left + right + cell * img.shape[1], top + bottom + cell * img.shape[0]
    fig = Figure(figsize=(width, height))  # no pyplot: the caller's backend stays as it is
    ax = fig.add_axes((left / width, bottom / height, cell * img.shape[1] / width, cell * img.shape[0] / height))
    for r, cat in enumerate(categories):
        for c, crit in enumerate(crits):
            lab, m = grids[(cat, crit)]
            block = np.zeros((size, size))
            pos = [labels.index(v) for v in lab]
            block[np.ix_(pos, pos)] = np.asarray(m)
            img[r * step:r * step + size, c * step:c * step + size] = block / max(1.0, block.max())
            for i, j in zip(*np.nonzero(block), strict=True):
                ax.text(c * step + j, r * step + i, str(int(block[i, j])), ha="center", va="center", fontsize=6.5,
                        color="white" if block[i, j] > block.max() / 2 else "black")
    cmap = matplotlib.colormaps["Blues"].with_extremes(bad="white")
    ax.imshow(np.ma.masked_invalid(img), cmap=cmap, vmin=0, vmax=1.15, interpolation="nearest")
    ticks = [_label(v) for v in labels]
    ax.set_xticks([c * step + j for c in range(len(crits)) for j in range(size)], ticks * len(crits), fontsize=6.5)
    ax.set_yticks([r * step + i for r in range(len(categories)) for i in range(size)], ticks * len(categories),
                  fontsize=6.5)
    ax.tick_params(length=0)
    for c, crit in enumerate(crits):
        ax.text(c * step + (size - 1) / 2, -1.2, crit, ha="center", va="bottom", fontsize=9, fontweight="bold")
    for r, cat in enumerate(categories):
        n = int(np.sum(grids[(cat, ALL)][1]))
        ax.text(-1.6, r * step + (size - 1) / 2, f"{cat}\n(n={n})", ha="right", va="center", fontsize=8.5,
                fontweight="bold")
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_xlabel(f"{b} (columns)", fontsize=9)
    ax.set_ylabel(f"{a} (rows)", fontsize=9, labelpad=62)
    fig.suptitle(f"{a} vs {b}: confusion matrices by category and criterion", fontsize=10,
                 y=1 - 0.15 / height, va="top")
    fig.savefig(path, dpi=100)


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(_fmt(v) for v in r) + " |" for r in rows])


def _mean(vals: list[float | None]) -> float | None:
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def _load_raters(run: Path) -> tuple[Raters, Raters, dict[str, str]]:
    """(judges, humans, category of each prompt id) of a run folder; `DataError` if fewer than two raters."""
    db = run / "annotations.sqlite"
    if not db.is_file():
        raise DataError(f"{db}: no annotations; run `mixnu eval annotate {run} --sample N` first")
    category_of = {p.id: p.category for p in load_suite(run / "suite.yaml").prompts}
    judges: Raters = {}
    if (run / "judgments.jsonl").is_file():
        judges = judge_scores(fresh_judgments(run, load_suite(run / "suite.yaml"), read_jsonl(run / "responses.jsonl"))[0])
    humans: Raters = defaultdict(dict)
    for row in AnnotationStore(db).all_scores():
        humans[row["annotator"]][(row["item_id"], row["model"], row["criterion"])] = float(row["score"])
    if not humans:
        raise DataError(f"{db}: nobody has given a score yet; annotate some items first")
    raters = {**judges, **humans}
    if len(raters) < 2:
        raise DataError(f"{run}: only one rater ({next(iter(raters))}); agreement needs judgments.jsonl "
                        "or a second annotator")
    return judges, humans, category_of


def _categories(humans: Raters, category_of: dict[str, str]) -> list[str]:
    """`all`, then the categories of the annotated items in the suite's order."""
    order = list(ATTRIBUTES)
    present = {category_of.get(u[0].rsplit("/", 1)[0], "?") for h in humans.values() for u in h}
    return [ALL] + sorted(present, key=lambda c: (order.index(c) if c in order else 99, c))


def _units_in(scores: dict[Unit, float], cat: str, crit: str, category_of: dict[str, str]) -> dict[Unit, float]:
    """The units of `scores` in category `cat` and criterion `crit` (`all` = every one)."""
    return {u: v for u, v in scores.items() if (crit == ALL or u[2] == crit)
            and (cat == ALL or category_of.get(u[0].rsplit("/", 1)[0]) == cat)}


def _pair_stats(names: list[str], raters: Raters, judges: Raters, categories: list[str],
                category_of: dict[str, str], tmp: Path, target: Path
                ) -> tuple[list[PairStat], dict[str, dict[str, dict[str, Any]]], list[Path]]:
    """Every pair of raters, by category and criterion: statistics, confusion matrices, and one PNG
    per pair drawn into `tmp` (the paths returned are where they land, under `target`)."""
    pairs: list[PairStat] = []
    confusions: dict[str, dict[str, dict[str, Any]]] = {}
    pngs: list[Path] = []
    for a, b in itertools.combinations(names, 2):
        if a in judges and b in judges:
            kind = "judge-judge"
        else:
            kind = "judge-human" if a in judges else "human-human"
        grids = {}
        for cat in categories:
            for crit in (*CRITERIA, ALL):
                ua, ub = _units_in(raters[a], cat, crit, category_of), raters[b]
                common = sorted(u for u in ua if u in ub)
                x, y = [ua[u] for u in common], [ub[u] for u in common]
                pairs.append(PairStat(a, b, kind, cat, crit, **pair_stats(x, y)))
                grids[(cat, crit)] = _confusion(x, y)
        confusions[f"{a} vs {b}"] = {f"{cat}/{crit}": {"labels": g[0], "matrix": g[1]}
                                     for (cat, crit), g in grids.items()}
        png = tmp / f"confusion-{_slug(a)}-vs-{_slug(b)}.png"
        _plot(png, a, b, grids, categories)
        pngs.append(target / png.name)
    return pairs, confusions, pngs


def _alpha_stats(names: list[str], humans: Raters, raters: Raters, categories: list[str],
                 category_of: dict[str, str]) -> list[AlphaStat]:
    """Krippendorff's alpha of all raters and of the humans alone (each only when 3 or more, and
    the humans only when they are not already all the raters), by category and criterion."""
    alphas: list[AlphaStat] = []
    for group, members in (("all raters", names), ("humans", sorted(humans))):
        if len(members) < 3 or (group == "humans" and len(members) == len(names)):
            continue
        for cat in categories:
            for crit in (*CRITERIA, ALL):
                per = [_units_in(raters[r], cat, crit, category_of) for r in members]
                units = sorted(set().union(*per))
                mat = np.array([[p.get(u, np.nan) for u in units] for p in per], dtype=float)
                n_units = int(np.sum(np.sum(~np.isnan(mat), axis=0) >= 2)) if units else 0
                alphas.append(AlphaStat(tuple(members), group, cat, crit, n_units,
                                        ordinal_alpha(mat) if units else None))
    return alphas


def compute_agreement(cfg: AgreementConfig) -> AgreementResult:
    """Compare the judge with each human and the humans with each other; write the report folder.

    Raises `DataError` when there are no annotations or fewer than two raters.
    """
    run = Path(cfg.run_dir)
    judges, humans, category_of = _load_raters(run)
    raters = {**judges, **humans}
    categories = _categories(humans, category_of)
    names = list(judges) + sorted(humans)
    target = Path(cfg.out) if cfg.out is not None else run / "agreement"
    with atomic_dir(target, force=cfg.force) as tmp:
        pairs, confusions, pngs = _pair_stats(names, raters, judges, categories, category_of, tmp, target)
        alphas = _alpha_stats(names, humans, raters, categories, category_of)
        summary, md = _markdown(run, list(judges), sorted(humans), pairs, alphas, [p.name for p in pngs])
        write_text(tmp / "agreement.md", md)
        write_json(tmp / "agreement.json", {
            "run_dir": str(run), "judges": list(judges), "humans": sorted(humans),
            "pairs": [asdict(p) for p in pairs], "alpha": [asdict(s) for s in alphas],
            "confusion": confusions, "reference": MT_BENCH_NOTE,
        })
    return AgreementResult(run, target, tuple(judges), tuple(sorted(humans)), tuple(pairs), tuple(alphas),
                           tuple(pngs), summary)


def _markdown(run: Path, judges: list[str], humans: list[str], pairs: list[PairStat], alphas: list[AlphaStat],
              pngs: list[str]) -> tuple[str, str]:
    """(short summary table, the full agreement.md text)."""
    head = ["pair", "criterion", "n", "κ (quadratic)", "Spearman ρ", "exact", "±1"]
    overall = [[f"{p.a} vs {p.b}", p.criterion, p.n, p.kappa, p.spearman, p.exact, p.within1]
               for p in pairs if p.category == ALL]
    avg_rows = []
    for kind, label in (("judge-human", "judge vs human (mean over pairs)"),
                        ("human-human", "human vs human (mean over pairs)")):
        for crit in (*CRITERIA, ALL):
            sel = [p for p in pairs if p.kind == kind and p.category == ALL and p.criterion == crit]
            if sel:
                avg_rows.append([label, crit, len(sel), _mean([p.kappa for p in sel]),
                                 _mean([p.spearman for p in sel]), _mean([p.exact for p in sel]),
                                 _mean([p.within1 for p in sel])])
    avg_head = ["comparison", "criterion", "pairs", "mean κ", "mean ρ", "mean exact", "mean ±1"]
    summary = _table(avg_head, avg_rows) if avg_rows else _table(head, overall)
    parts = [
        "# Judge–human agreement", "",
        f"Run folder: `{run}`. Judges: {', '.join(judges) or 'none'}. Humans: {', '.join(humans)}.",
        "A unit is one (item, response, criterion) scored by both raters of a pair; the judge's score is the "
        "median over rotations. κ is Cohen's kappa with quadratic weights; – marks a statistic that is "
        "undefined (fewer than 2 units, or one rater gave a single constant score).", "",
        "## Averages (all categories)", "", _table(avg_head, avg_rows) if avg_rows else "(no pairs)", "",
        "## Every pair (all categories)", "", _table(head, overall), "",
    ]
    if alphas:
        parts += ["## Krippendorff's α (ordinal)", "", _table(
            ["raters", "category", "criterion", "units", "α"],
            [[f"{s.group} ({len(s.raters)})", s.category, s.criterion, s.units, s.alpha] for s in alphas]), ""]
    parts += ["## By category", "", _table(
        ["pair", "category", "criterion", "n", "κ (quadratic)", "Spearman ρ", "exact", "±1"],
        [[f"{p.a} vs {p.b}", p.category, p.criterion, p.n, p.kappa, p.spearman, p.exact, p.within1]
         for p in pairs if p.category != ALL]), ""]
    parts += ["## Confusion matrices", ""] + [f"![{name}]({name})" for name in pngs] + ["", MT_BENCH_NOTE, ""]
    return summary, "\n".join(parts)
