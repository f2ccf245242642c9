"""The demo's report: results table, the issue's targets checked, plots, `summary.md`, `results.json`.

Kept apart from `mixnu.demo` (which runs the stages) so each stays readable in one sitting.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from mixnu.datasets import llama2_tokenizer_model
from mixnu.io import atomic_write, to_jsonable, write_json, write_text


def tokenizer_table(extended: Path, model_tok: Path, dev: Path) -> dict[str, Any]:
    """Llama-2 vs the extended tokenizer (and the tiny model's, if another) on the dev set `dev`.

    Uses `compare_tokenizers`: the card's table.
    """
    from mixnu.tokenizer import CompareConfig, compare_tokenizers

    toks = {"Llama-2": llama2_tokenizer_model(), "Llama-2 extended (demo)": extended}
    if model_tok != extended:
        toks["Korean BPE alone (tiny model)"] = model_tok
    r = compare_tokenizers(CompareConfig(tokenizers=toks,
                                         texts=[dev], quiet=True))
    return {"rows": r.rows, "markdown": r.markdown}


def train_info(r: Any) -> dict[str, Any]:
    """The few fields of a `TrainResult` the report shows."""
    return {"steps": r.steps, "tokens": r.tokens, "tokens_per_s": r.tokens_per_s, "train_loss": round(r.train_loss, 4),
            "trainable_params": r.trainable_params, "total_params": r.total_params}


def check_targets(bpc: dict[str, dict[str, float]], domains: list[str], moe: str, min_load: float) -> dict[str, Any]:
    """The issue's four quality targets, each with its numbers and pass/fail."""
    base, avg, m = bpc["base"], bpc["weight-average"], bpc[moe]
    experts = {d: bpc[f"expert:{d}"] for d in domains if f"expert:{d}" in bpc}
    oracle = {d: min(e[d] for e in experts.values()) for d in domains}
    oracle_mean = sum(oracle.values()) / len(domains)
    moe_mean = sum(m[d] for d in domains) / len(domains)
    own = {d: {"vs_base_pct": round(100 * (experts[d][d] / base[d] - 1), 2),
               "best_on_own_domain": all(experts[d][d] < experts[e][d] for e in experts if e != d)} for d in experts}
    return {
        "moe_beats_base_and_average": {
            "pass": all(m[d] < base[d] and m[d] < avg[d] for d in domains),
            "moe_vs_base_pct": {d: round(100 * (m[d] / base[d] - 1), 2) for d in domains},
            "moe_vs_average_pct": {d: round(100 * (m[d] / avg[d] - 1), 2) for d in domains}},
        "moe_within_3pct_of_oracle": {"pass": moe_mean <= 1.03 * oracle_mean, "moe_mean": round(moe_mean, 4),
                                      "oracle_mean": round(oracle_mean, 4),
                                      "gap_pct": round(100 * (moe_mean / oracle_mean - 1), 2)},
        "min_expert_load_5pct": {"pass": min_load >= 0.05, "min_top1_share": round(min_load, 4)},
        "experts_specialise": {"pass": all(v["vs_base_pct"] <= -4.0 and v["best_on_own_domain"] for v in own.values()),
                               "per_domain": own},
        "moe_vs_baselines": vs_baselines(bpc, domains, moe),
    }


BASELINES = ("dense (same steps)", "dense (same tokens)", "sparse upcycling")


def vs_baselines(bpc: dict[str, dict[str, float]], domains: list[str], moe: str) -> dict[str, Any]:
    """The MoE against each baseline present: % difference per domain and of the mean (negative = MoE better)."""
    m = bpc[moe]
    m_mean = sum(m[d] for d in domains) / len(domains)
    out = {}
    for name in (b for b in BASELINES if b in bpc):
        b = bpc[name]
        b_mean = sum(b[d] for d in domains) / len(domains)
        out[name] = {"every_domain": all(m[d] < b[d] for d in domains), "mean": m_mean < b_mean,
                     "mean_pct": round(100 * (m_mean / b_mean - 1), 2),
                     "per_domain_pct": {d: round(100 * (m[d] / b[d] - 1), 2) for d in domains}}
    return out


def baseline_rows(t: dict[str, Any]) -> list[str]:
    """Target-table rows that name each comparison plainly: 'beats dense (same steps) on every domain: no'."""
    rows = []
    for name, v in t.items():
        per = ", ".join(f"{d} {x:+.2f}%" for d, x in v["per_domain_pct"].items())
        rows.append(f"| MoE beats {name} on every domain | {_yn(v['every_domain'])} | {per} |")
        rows.append(f"| MoE beats {name} on the mean | {_yn(v['mean'])} | {v['mean_pct']:+.2f}% |")
    return rows


def results_table(bpc: dict[str, dict[str, float]], domains: list[str],
                  cost: dict[str, dict[str, int]] | None = None) -> str:
    """Models x domains (bits/char, best per domain in bold), their mean, and each model's cost per token."""
    cost = cost or {}
    head = "| model | " + " | ".join(domains) + " | mean |" + (" active params | fwd MFLOPs/token |" if cost else "")
    lines = [head, "|---|" + "---:|" * (len(domains) + 1 + (2 if cost else 0))]
    best = {d: min(r[d] for r in bpc.values()) for d in domains}
    for name, row in bpc.items():
        cells = [f"**{row[d]:.4f}**" if row[d] == best[d] else f"{row[d]:.4f}" for d in domains]
        line = f"| {name} | " + " | ".join(cells) + f" | {sum(row[d] for d in domains) / len(domains):.4f} |"
        if cost:
            c = cost.get(name)
            line += f" {c['active_params']:,} | {c['forward_flops_per_token'] / 1e6:.2f} |" if c else " | |"
        lines.append(line)
    return "\n".join(lines)


def plot_bpc(bpc: dict[str, dict[str, float]], domains: list[str], path: Path) -> None:
    """Grouped bars: bits/char per domain for each model."""
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))  # no pyplot: the caller's backend stays as it is
    ax = fig.subplots()
    width = 0.8 / len(bpc)
    x = np.arange(len(domains))
    for i, (name, row) in enumerate(bpc.items()):
        ax.bar(x + (i - (len(bpc) - 1) / 2) * width, [row[d] for d in domains], width, label=name)
    lo = min(min(r.values()) for r in bpc.values())
    hi = max(max(r.values()) for r in bpc.values())
    ax.set_ylim(lo - 0.1 * (hi - lo) - 0.01, hi + 0.05 * (hi - lo) + 0.01)
    ax.set_xticks(x, domains)
    ax.set_ylabel("held-out bits/char (lower is better)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)


def write(folder: Path, cfg: Any, ev: dict[str, Any], tok_table: dict[str, Any], train: dict[str, Any],
          steps: dict[str, float], wall: float, machine: dict[str, Any], data: Any = None) -> dict[str, Any]:
    """Write results.json, summary.md and the PNGs into `folder`; return {"table", "targets"}."""
    from mixnu.routing import plot_heatmap, plot_layers, routing_markdown

    domains = list(next(iter(ev["scores"].values())).domains)
    bpc = {name: {d: s.domains[d].bits_per_char for d in domains} for name, s in ev["scores"].items()}
    moe_after = [n for n in bpc if n.endswith("after router training)")][0]
    stats = ev["routing"][moe_after]
    targets = check_targets(bpc, domains, moe_after, stats.min_load)
    table = results_table(bpc, domains, ev.get("cost"))
    plot_bpc(bpc, domains, folder / "bits_per_char.png")
    names = [f"E{i} ({d})" for i, d in enumerate(n[len("expert:"):] for n in bpc if n.startswith("expert:"))]
    plot_heatmap(stats, folder / "routing_heatmap.png", f"top-1 routing share: {moe_after}", names)
    plot_layers(stats, folder / "routing_layers.png", names)
    for name, s in ev["routing"].items():
        if name != moe_after:
            slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
            plot_heatmap(s, folder / f"routing_heatmap_{slug}.png", f"top-1 routing share: {name}", names)
    tok_md = [tok_table["markdown"]]
    tgt_md = ["| target | pass | measured |", "|---|---|---|"]
    t = targets
    tgt_md += [
        "| MoE after router training beats base and weight-average on every domain | "
        f"{_yn(t['moe_beats_base_and_average']['pass'])} | vs base % {t['moe_beats_base_and_average']['moe_vs_base_pct']}; "
        f"vs average % {t['moe_beats_base_and_average']['moe_vs_average_pct']} |",
        f"| MoE mean within 3% of per-domain best expert | {_yn(t['moe_within_3pct_of_oracle']['pass'])} | "
        f"MoE {t['moe_within_3pct_of_oracle']['moe_mean']} vs oracle {t['moe_within_3pct_of_oracle']['oracle_mean']} "
        f"({t['moe_within_3pct_of_oracle']['gap_pct']:+.2f}%) |",
        f"| no expert < 5% of tokens (top-1) in any layer | {_yn(t['min_expert_load_5pct']['pass'])} | "
        f"min share {t['min_expert_load_5pct']['min_top1_share']:.1%} |",
        f"| each expert ≥ 4% below base on its domain and best there | {_yn(t['experts_specialise']['pass'])} | "
        + "; ".join(f"{d}: {v['vs_base_pct']:+.2f}%{'' if v['best_on_own_domain'] else ' (not best)'}"
                    for d, v in t["experts_specialise"]["per_domain"].items()) + " |",
        f"| whole demo ≤ 15 min | {_yn(wall <= 900)} | {wall / 60:.1f} min wall, {_cpu_s() / 60:.1f} min CPU, "
        f"load average {machine['loadavg_at_start'][0]} at start |",
    ] + baseline_rows(t["moe_vs_baselines"])
    gens = [f"**{name}**\n" + "\n".join(f"- {cfg.eval.prompt}▸ {g.strip()!r}" for g in texts)
            for name, texts in ev["generations"].items()]
    step_md = ["| step | wall (s) |", "|---|---:|"] + [f"| {k} | {v:.1f} |" for k, v in steps.items()]
    step_md.append(f"| **total** | {wall:.1f} |")
    machine = machine | {"loadavg_at_end": [round(x, 2) for x in os.getloadavg()], "cpu_s": round(_cpu_s(), 1)}
    step_md.append(f"\n{machine['cpus']} CPUs, {machine['torch_threads']} torch thread(s); load average "
                   f"{machine['loadavg_at_start'][0]} at start, {machine['loadavg_at_end'][0]} at end "
                   f"(other work on the machine slows every step); {machine['cpu_s'] / 60:.1f} CPU-minutes in all.")
    train_md = ["| run | steps | tokens | tok/s | trainable params | total params |", "|---|---:|---:|---:|---:|---:|"]
    train_md += [f"| {k} | {v['steps']} | {v['tokens']:,} | {v['tokens_per_s']:,.0f} | {v['trainable_params']:,} "
                 f"| {v['total_params']:,} |" for k, v in train.items()]
    summary = "\n\n".join(part for part in [
        "# mixnu demo (toy scale)",
        *([f"Data: {data.name} (sha256 `{data.sha256}`)"] if data is not None else []),
        "## Held-out bits per character (lower is better; bold = best per domain)", table,
        BASELINE_NOTE if t["moe_vs_baselines"] else "",
        "## Targets", "\n".join(tgt_md),
        "## Routing of the trained MoE (top-1 share per domain and layer)", routing_markdown(stats, names),
        "![routing heatmap](routing_heatmap.png)\n\n![load per layer](routing_layers.png)\n\n"
        "![bits per char](bits_per_char.png)",
        "## Tokenizers (dev set)", "\n".join(tok_md),
        "## Training runs", "\n".join(train_md),
        f"## Generations (prompt: {cfg.eval.prompt})", "\n\n".join(gens),
        "## Wall time per step", "\n".join(step_md),
    ] if part) + "\n"
    write_text(folder / "summary.md", summary)
    write_json(folder / "results.json", {
        "config": cfg.model_dump(mode="json"),
        "data": {"name": data.name, "sha256": data.sha256} if data is not None else None, "bits_per_char": bpc, "targets": targets,
        "scores": to_jsonable(ev["scores"]), "routing": {k: to_jsonable(v) for k, v in ev["routing"].items()},
        "cost": ev.get("cost", {}), "tokenizers": tok_table["rows"], "train": train, "generations": ev["generations"], "steps": steps, "wall_s": wall, "machine": machine})
    return {"table": table, "targets": targets}


BASELINE_NOTE = (
    "Baselines (`mixnu.baselines`, each from the same base, on the router stage's data and settings): "
    "*dense (same steps)* trains the base for the experts' steps + the router stage's steps (experts run in "
    "parallel); *dense (same tokens)* for the experts' and the router stage's tokens together; *sparse "
    "upcycling* (Komatsuzaki et al. 2023) trains a MoE of copies of the base's MLP for the router stage's "
    "steps. Active params: per token (top-k of the experts); forward FLOPs per token: 2 x matmul params "
    "+ attention over the training sequence length.")


def _cpu_s() -> float:
    """User + system CPU seconds of this process so far: what the run costs on an idle machine (1 thread)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _yn(ok: bool) -> str:
    return "yes" if ok else "**no**"
