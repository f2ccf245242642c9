"""Routing analysis (`mixnu routing`): which expert each domain uses.

Runs a Mixtral-style MoE over held-out text per domain, reads every router's logits through forward
hooks on the router modules `mixnu.arch.router_modules` finds, and counts, per domain x layer x expert,
the share of tokens whose top-1 choice (and whose top-k set) includes that expert. The same pass gives
bits/char (see `mixnu.perplexity`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from mixnu import arch
from mixnu.config import StageConfig
from mixnu.errors import CheckpointError
from mixnu.io import atomic_dir, write_json, write_text
from mixnu.perplexity import ModelScores, load_causal_lm, load_tokenizer, read_texts, score_model


def router_modules(model: Any) -> list[tuple[int, Any]]:
    """(layer index, router module) of a MoE model; `CheckpointError` for a dense model."""
    routers = arch.router_modules(model)
    if not arch.is_moe(model.config) or not routers:
        raise CheckpointError(
            f"{getattr(model, 'name_or_path', 'the model') or 'the model'} is a dense model (no experts or "
            "routers); routing needs a MoE checkpoint such as the output of 'mixnu merge'"
        )
    return routers


@dataclass(frozen=True)
class RoutingStats:
    """Token shares per domain x layer x expert (lists indexed [layer][expert]) and per-layer summaries.

    `top1[d][l][e]`: share of domain d's tokens whose first choice in layer l is expert e (sums to 1
    over experts). `topk[d][l][e]`: share of tokens that have e among their top-k (sums to k).
    `load[l][e]`: top-1 share over all domains' tokens together. `load_entropy[l]`: entropy of
    `load[l]` divided by ln(E) (1 = perfectly balanced). `router_entropy[l]`: mean per-token
    entropy of the router's softmax divided by ln(E) (0 = sure, 1 = undecided).
    """

    experts: int
    top_k: int
    layers: list[int]
    top1: dict[str, list[list[float]]]
    topk: dict[str, list[list[float]]]
    load: list[list[float]]
    load_entropy: list[float]
    router_entropy: list[float]
    min_load: float
    scores: ModelScores


def analyze_routing(model: Any, tokenizer: Any, texts: dict[str, list[str]], *, name: str = "moe",
                    max_length: int = 256, stride: int | None = None, batch_size: int = 8,
                    quiet: bool = True) -> RoutingStats:
    """Run `model` over each domain's texts, counting router choices on every real (non-pad) token."""
    import torch

    routers = router_modules(model)
    n_exp, top_k = arch.num_experts(model.config), arch.top_k(model.config)
    if not top_k:
        raise CheckpointError("the MoE's config gives no number of experts per token (top-k); re-save it with one")
    L = len(routers)
    captured: dict[int, Any] = {}
    hooks = []
    for i, (_, module) in enumerate(routers):
        def hook(_mod: Any, _inp: Any, out: Any, i: int = i) -> None:
            logits = out[0] if isinstance(out, tuple) else out
            captured[i] = logits.detach().float().reshape(-1, n_exp)  # (B*T, E)
        hooks.append(module.register_forward_hook(hook))
    counts1 = {d: torch.zeros(L, n_exp) for d in texts}
    countsk = {d: torch.zeros(L, n_exp) for d in texts}
    ent_sum = torch.zeros(L)
    n_tok = {d: 0 for d in texts}

    names = list(texts)

    def on_batch(mask: Any, _labels: Any, domains: list[str]) -> None:
        keep = mask.reshape(-1).bool()  # (B*T,) real tokens only
        row_dom = torch.tensor([names.index(d) for d in domains]).repeat_interleave(mask.shape[1])[keep]
        for i in range(L):
            logits = captured[i].cpu()[keep]  # (N, E)
            probs = logits.softmax(-1)
            ent_sum[i] += float(-(probs * probs.clamp_min(1e-12).log()).sum())
            top = logits.topk(top_k, dim=-1).indices  # (N, k)
            for j, d in enumerate(names):
                sel = row_dom == j
                if sel.any():
                    counts1[d][i] += torch.bincount(top[sel, 0], minlength=n_exp).float()
                    countsk[d][i] += torch.bincount(top[sel].reshape(-1), minlength=n_exp).float()
        for d, k in zip(domains, mask.sum(1).tolist(), strict=True):
            n_tok[d] += int(k)

    try:
        scores = score_model(model, tokenizer, texts, name=name, max_length=max_length, stride=stride,
                             batch_size=batch_size, quiet=quiet, on_batch=on_batch)
    finally:
        for h in hooks:
            h.remove()
    total1 = sum(counts1.values())
    load = total1 / total1.sum(-1, keepdim=True).clamp_min(1)
    load_entropy = [float(-(p * p.clamp_min(1e-12).log()).sum() / math.log(n_exp)) for p in load]
    all_tokens = max(sum(n_tok.values()), 1)
    return RoutingStats(
        experts=n_exp, top_k=top_k, layers=[idx for idx, _ in routers],
        top1={d: (c / c.sum(-1, keepdim=True).clamp_min(1)).tolist() for d, c in counts1.items()},
        topk={d: (c / max(n_tok[d], 1)).tolist() for d, c in countsk.items()},
        load=load.tolist(), load_entropy=load_entropy,
        router_entropy=[float(e / all_tokens / math.log(n_exp)) for e in ent_sum],
        min_load=float(load.min()), scores=scores,
    )


def plot_heatmap(stats: RoutingStats, path: Path, title: str = "top-1 routing share",
                 expert_names: list[str] | None = None) -> None:
    """One panel per layer: rows are domains, columns experts, colour and text the top-1 share."""
    import numpy as np
    from matplotlib.figure import Figure

    domains = list(stats.top1)
    L = len(stats.layers)
    fig = Figure(figsize=(1.2 + 0.9 * stats.experts * L, 0.6 * len(domains) + 1.4))  # no pyplot: no global backend
    axes = fig.subplots(1, L, squeeze=False)
    for j, ax in enumerate(axes[0]):
        grid = np.array([stats.top1[d][j] for d in domains])
        ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for r in range(grid.shape[0]):
            for c in range(grid.shape[1]):
                ax.text(c, r, f"{grid[r, c]:.2f}", ha="center", va="center",
                        color="black" if grid[r, c] > 0.6 else "white", fontsize=8)
        names = expert_names or [f"E{e}" for e in range(stats.experts)]
        ax.set_xticks(range(stats.experts), names, rotation=30 if expert_names else 0)
        ax.set_yticks(range(len(domains)), domains if j == 0 else [""] * len(domains))
        ax.set_title(f"layer {stats.layers[j]}")
    fig.suptitle(title)
    fig.tight_layout()
    _save_png(fig, path)


def plot_layers(stats: RoutingStats, path: Path, expert_names: list[str] | None = None) -> None:
    """Per layer: load entropy and router entropy (left); each expert's share of all tokens (right)."""
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6))  # no pyplot: the caller's backend stays as it is
    a, b = fig.subplots(1, 2)
    x = np.array(stats.layers)
    a.plot(x, stats.load_entropy, "o-", label="load entropy / ln E (1 = balanced)")
    a.plot(x, stats.router_entropy, "s--", label="mean router entropy / ln E")
    a.set_ylim(0, 1.05)
    a.set_xticks(x)
    a.set_xlabel("layer")
    a.legend(fontsize=8)
    load = np.array(stats.load)  # (L, E)
    width = 0.8 / stats.experts
    for e in range(stats.experts):
        b.bar(x + (e - (stats.experts - 1) / 2) * width, load[:, e], width,
              label=expert_names[e] if expert_names else f"E{e}")
    b.axhline(1 / stats.experts, color="gray", lw=0.8, ls=":")
    b.axhline(0.05, color="red", lw=0.8, ls="--", label="5%")
    b.set_xticks(x)
    b.set_xlabel("layer")
    b.set_ylabel("top-1 share of all tokens")
    b.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    _save_png(fig, path)


def _save_png(fig: Any, path: Path) -> None:
    from mixnu.io import atomic_write

    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)


def routing_markdown(stats: RoutingStats, expert_names: list[str] | None = None) -> str:
    """Markdown: top-1 share per domain and layer (experts as columns), then per-layer load."""
    E = stats.experts
    head = "| domain | layer | " + " | ".join(expert_names or [f"E{e}" for e in range(E)]) + " |"
    lines = [head, "|---|---:|" + "---:|" * E]
    for d, grid in stats.top1.items():
        for j, row in enumerate(grid):
            lines.append(f"| {d} | {stats.layers[j]} | " + " | ".join(f"{v:.1%}" for v in row) + " |")
    for j, row in enumerate(stats.load):
        lines.append(f"| **all** | {stats.layers[j]} | " + " | ".join(f"{v:.1%}" for v in row) + " |")
    return "\n".join(lines)


class RoutingConfig(StageConfig):
    """What `routing_report` analyses and where it writes."""

    model: Path
    data: dict[str, Path] = Field(min_length=1, description="domain name -> text file (one document per line)")
    out: Path = Field(Path("routing-out"), description="folder for routing.json, routing.md and PNGs")
    tokenizer: Path | None = None
    max_length: int = Field(256, ge=8)
    stride: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1)
    max_chars: int | None = Field(None, ge=1)
    device: str = "cpu"
    force: bool = False
    quiet: bool = False


@dataclass(frozen=True)
class RoutingResult:
    out: Path
    stats: RoutingStats
    table: str


def routing_report(cfg: RoutingConfig) -> RoutingResult:
    """Analyse a MoE checkpoint's routing on domain texts.

    Writes (atomically, as one folder) `cfg.out/routing.json` (all shares and entropies, and the
    bits/char of the same pass), `routing.md`, `routing_heatmap.png` and `routing_layers.png`.
    Raises `CheckpointError` for a dense model.
    """
    from mixnu.io import check_output

    check_output(cfg.out, cfg.force)
    model = load_causal_lm(cfg.model, cfg.device)
    router_modules(model)  # dense model -> one clear error before any work
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model)
    texts = {d: read_texts(p, cfg.max_chars) for d, p in cfg.data.items()}
    stats = analyze_routing(model, tokenizer, texts, name=cfg.model.name or "moe", max_length=cfg.max_length,
                            stride=cfg.stride, batch_size=cfg.batch_size, quiet=cfg.quiet)
    table = routing_markdown(stats)
    with atomic_dir(cfg.out, force=cfg.force) as tmp:
        write_json(tmp / "routing.json", {"model": str(cfg.model), **stats.__dict__})
        write_text(tmp / "routing.md", table + "\n")
        plot_heatmap(stats, tmp / "routing_heatmap.png")
        plot_layers(stats, tmp / "routing_layers.png")
    return RoutingResult(out=cfg.out, stats=stats, table=table)
