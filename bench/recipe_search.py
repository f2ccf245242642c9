"""Recipe search: under which toy recipe does the BTX MoE beat dense training with the same steps?

BTX's claim (Sukhbaatar et al. 2024) is that the MoE beats a dense model trained for as many
sequential steps (the experts train in parallel), on every domain. This script measures the gap for a
list of recipe variants, one at a time, starting from a finished `make demo` folder: its base
checkpoint, tokenizer, held-out texts and settings are reused, and its own numbers are the `demo`
row. For each variant only what it changes is trained, with the demo's own stage functions:
the experts (cached by their settings, so variants that differ only after the merge share them),
the BTX merge (data-centroid routers), the router stage, and the `dense (same steps)` baseline
(`mixnu.baselines`, the router stage's settings; cached by its step count). The MoE and the dense
baseline are scored on the demo's held-out text (same `eval.max_chars`) with `mixnu.perplexity`.

    MIXNU_SHARED=/work/shared nice python bench/recipe_search.py --demo demo-out [--only NAME,...]

Writes bench/results/recipe_search.json and recipe_search.md after every variant (so a stopped run
keeps what it finished). Work folders go to `--work` (default bench/.recipe-work, gitignored).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, markdown_table, write_result

# name -> (what it changes, overrides of the demo recipe as {part: {field: value}})
VARIANTS: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    "top-1": ("top-1 routing (demo experts)", {"merge": {"num_experts_per_tok": 1}}),
    "router 200": ("router stage 200 steps (demo experts)", {"route": {"steps": 200, "warmup_steps": 20}}),
    "experts 50": ("experts 50 steps", {"experts": {"steps": 50, "warmup_steps": 5}}),
    "experts 100": ("experts 100 steps", {"experts": {"steps": 100, "warmup_steps": 10}}),
    "experts 400": ("experts 400 steps", {"experts": {"steps": 400, "warmup_steps": 40}}),
    "router 100, routers only": ("router stage 100 steps, routers only (demo experts)",
                                 {"route": {"steps": 100, "warmup_steps": 10, "trainable": "router",
                                            "lr": 1e-3}}),
    "experts lr 3e-3": ("experts lr 3e-3", {"experts": {"lr": 3e-3}}),
    "mlp experts 400, lr 1e-2": ("experts MLP-only, 400 steps, lr 1e-2 (trunk shared)",
                                 {"experts": {"steps": 400, "warmup_steps": 40, "lr": 1e-2, "trainable": "mlp"}}),
    "experts 800": ("experts 800 steps", {"experts": {"steps": 800, "warmup_steps": 80}}),
}


def _variant_cfg(base_cfg: Any, overrides: dict[str, dict[str, Any]], out: Path) -> Any:
    parts = {part: getattr(base_cfg, part).model_copy(update=upd) for part, upd in overrides.items()}
    return base_cfg.model_copy(update={**parts, "out": out, "quiet": True})


def _key(cfg: Any, *parts: str) -> str:
    blob = json.dumps({p: getattr(cfg, p).model_dump(mode="json") for p in parts}, sort_keys=True)
    import hashlib

    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def _experts(cfg: Any, demo_cfg: Any, demo: Path, work: Path, base: Path,
             files: dict[str, Path]) -> dict[str, Path]:
    from mixnu.demo import _train

    if cfg.experts == demo_cfg.experts and all((demo / "models" / f"expert-{d}").is_dir() for d in files):
        return {d: demo / "models" / f"expert-{d}" for d in files}
    folder = work / f"experts-{_key(cfg, 'experts')}"
    out = {}
    for i, (d, path) in enumerate(files.items()):
        if not (folder / d / "config.json").is_file():
            _train(cfg, cfg.experts, base, [path], folder / d, cfg.seed + 1 + i)
        out[d] = folder / d
    return out


def _moe(cfg: Any, work: Path, base: Path, experts: dict[str, Path], files: dict[str, Path]) -> Path:
    from mixnu.demo import _balanced, _merge, _route_config
    from mixnu.train import train_router

    key = _key(cfg, "experts", "merge", "route")
    routed = work / f"moe-{key}-routed"
    if not (routed / "config.json").is_file():
        first = cfg.merge.router_inits[0]
        merged = _merge(cfg, base, experts, files, work / f"moe-{key}", first)
        data = _balanced(files) if cfg.route.balance_domains else list(files.values())
        train_router(_route_config(cfg, merged, data, routed))
    return routed


def _dense(cfg: Any, demo_cfg: Any, demo: Path, work: Path, base: Path, files: dict[str, Path],
           n_experts: int) -> tuple[Path, int]:
    """dense (same steps) for this variant's budget, with the demo's router-stage settings (not the variant's)."""
    from mixnu.baselines import BaselinesConfig, budget_steps, train_baselines
    from mixnu.demo import _balanced, _route_config

    data = _balanced(files) if demo_cfg.route.balance_domains else list(files.values())
    fixed = demo_cfg.model_copy(update={"route": demo_cfg.route.model_copy(update={"steps": cfg.route.steps})})
    route = _route_config(fixed, base, data, work / "unused")
    bc = BaselinesConfig(base=base, route=route, out=work, experts=n_experts, expert_steps=cfg.experts.steps,
                         expert_batch_size=cfg.experts.batch_size, which=["dense_same_steps"])
    steps = budget_steps(bc)["dense_same_steps"]
    folder = work / f"dense-{steps}"
    demo_dense = demo / "models" / "baselines" / "dense-same-steps"
    if (demo_dense / "train_result.json").is_file() and json.loads(
            (demo_dense / "train_result.json").read_text())["steps"] == steps:
        return demo_dense, steps  # the demo's own run: same base, data and settings
    if not (folder / "config.json").is_file():
        res = train_baselines(bc.model_copy(update={"out": work / f".dense-{steps}"}))
        os.replace(res.models["dense (same steps)"], folder)
    return folder, steps


def _score(path: Path, texts: dict[str, list[str]], cfg: Any) -> dict[str, float]:
    from mixnu.perplexity import load_causal_lm, load_tokenizer, score_model

    s = score_model(load_causal_lm(path), load_tokenizer(path), texts, max_length=cfg.eval.max_length,
                    batch_size=cfg.eval.batch_size)
    return {d: v.bits_per_char for d, v in s.domains.items()}


def _row(name: str, what: str, moe: dict[str, float], dense: dict[str, float], dense_steps: int,
         **extra: Any) -> dict[str, Any]:
    domains = list(moe)
    mean = lambda r: sum(r[d] for d in domains) / len(domains)  # noqa: E731
    gaps = {d: round(100 * (moe[d] / dense[d] - 1), 2) for d in domains}
    return {"variant": name, "changes": what, "dense_steps": dense_steps, "moe_mean": round(mean(moe), 4),
            "dense_mean": round(mean(dense), 4), "gap_mean_pct": round(100 * (mean(moe) / mean(dense) - 1), 2),
            **{f"gap_{d}_pct": g for d, g in gaps.items()}, "beats_every_domain": all(g < 0 for g in gaps.values()),
            **extra, "moe_bpc": moe, "dense_bpc": dense}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, default=Path("demo-out"), help="a finished `make demo` folder (models kept)")
    ap.add_argument("--recipe", type=Path, default=Path(__file__).resolve().parents[1] / "recipes/toy/demo.yaml",
                    help="the demo's recipe (the settings every variant starts from)")
    ap.add_argument("--base", type=Path, default=None, help="base checkpoint (default: DEMO/models/base)")
    ap.add_argument("--work", type=Path, default=Path(__file__).resolve().parent / ".recipe-work")
    ap.add_argument("--only", default="", help="comma-separated variant names (default: all, in order)")
    args = ap.parse_args()

    import torch

    from mixnu.config import load_config
    from mixnu.demo import DemoConfig, _inputs
    from mixnu.perplexity import read_texts

    torch.set_num_threads(1)
    base_cfg = load_config(DemoConfig, args.recipe)
    base = args.base or args.demo / "models" / "base"
    files, held = _inputs(base_cfg)
    texts = {d: read_texts(p, base_cfg.eval.max_chars) for d, p in held.items()}
    done = {r["variant"]: r for r in _previous()}  # rows of earlier runs are kept, this run's replace them
    done |= {r["variant"]: r for r in _demo_row(args.demo)}
    names = [n for n in (args.only.split(",") if args.only else VARIANTS) if n]
    args.work.mkdir(parents=True, exist_ok=True)
    for name in names:
        what, overrides = VARIANTS[name]
        cfg = _variant_cfg(base_cfg, overrides, args.work / "unused")
        t0 = time.perf_counter()
        experts = _experts(cfg, base_cfg, args.demo, args.work, base, files)
        moe = _moe(cfg, args.work, base, experts, files)
        dense, steps = _dense(cfg, base_cfg, args.demo, args.work, base, files, len(files))
        done[name] = _row(name, what, _score(moe, texts, cfg), _score(dense, texts, cfg), steps,
                          wall_s=round(time.perf_counter() - t0, 1), loadavg=round(os.getloadavg()[0], 2))
        print(_write(done), flush=True)
    print(_write(done))


def _previous() -> list[dict[str, Any]]:
    path = RESULTS / "recipe_search.json"
    return json.loads(path.read_text())["rows"] if path.is_file() else []


def _demo_row(demo: Path) -> list[dict[str, Any]]:
    """The demo's own MoE vs dense (same steps), from its results.json (none if it is not there yet)."""
    if not (demo / "results.json").is_file():
        return []
    res = json.loads((demo / "results.json").read_text())
    bpc = res["bits_per_char"]
    moe = next(n for n in bpc if n.endswith("after router training)"))
    return [_row("demo", "the demo's recipe (its results.json)", bpc[moe], bpc["dense (same steps)"],
                 res["train"]["dense (same steps)"]["steps"], wall_s=res["wall_s"],
                 vs_same_tokens_mean_pct=res["targets"]["moe_vs_baselines"]["dense (same tokens)"]["mean_pct"])]


def _write(done: dict[str, dict[str, Any]]) -> str:
    rows = [done[n] for n in ["demo", *VARIANTS] if n in done]
    if not rows:
        return "(no rows yet)"
    cols = [k for k in rows[-1] if not k.endswith("_bpc") and k not in ("wall_s", "loadavg", "vs_same_tokens_mean_pct")]
    table = markdown_table([{k: r.get(k) for k in cols + ["wall_s"]} for r in rows], cols + ["wall_s"])
    write_result("recipe_search", {"rows": rows, "table": table})
    (RESULTS / "recipe_search.md").write_text(
        "MoE (after router training) vs dense (same steps), held-out bits/char; gap % = MoE / dense - 1 "
        "(negative: the MoE wins).\n\n" + table + "\n", encoding="utf-8")
    return table


if __name__ == "__main__":
    main()
