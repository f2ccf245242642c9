"""`mixnu merge` against mergekit-moe 0.1.5 at Llama-2-7B's tensor sizes (hidden 4096, MLP 11008, 46,272 rows).

    nice .venv/bin/python bench/merge7b.py [--layers 2 4] [--repeats 1] [--work /tmp/mixnu-merge7b]

For each layer count, builds a base and 4 experts with Llama-2-7B's tensor shapes (32 heads, 32 KV
heads, untied head, vocabulary padded to 46,272 rows as in recipes/mixnu-19b) but only that many
decoder layers: 2 layers = 0.79 B parameters, 1.58 GB bf16 per model. The models are written tensor
by tensor straight into safetensors (`mixnu.merge.ShardWriter`, random bf16 values of magnitude
0.002-0.03 for the base,
experts = the base with the lowest mantissa bits redrawn); no model is instantiated. They go under `--work` (default in /tmp,
not the repository) and are deleted at the end, outputs included.

Then, one process at a time (never two merges at once: the machine's RAM is shared), each tool runs
under `/usr/bin/time -v`, alternating, `--repeats` times: mergekit-moe 0.1.5 with defaults and with
`--out-shard-size 100M` (its lowest-memory setting, see bench/merge.py), mixnu with `shared: base`
(mergekit's job) and `shared: average`. Peak RSS is `/usr/bin/time -v`'s "Maximum resident set size"
(resident anonymous and file-backed pages, so mmapped inputs count). Inputs are in the page cache
(just written or read) for every run. Parity of mixnu's `shared: base` output with mergekit's is
checked tensor by tensor (bit for bit), as in bench/merge.py.

Extrapolation to Llama-2-7B's 32 layers (per-layer cost x 32 + embeddings): wall time is scaled by
the bytes each merge reads and writes (5 input models + the MoE, exact at any layer count), one
estimate per measured layer count; peak RSS is fitted as a + b * L through two layer counts. The
MoE's size at 32 layers is `mixnu plan`'s parameter count. `--recompute RESULTS.json` redoes the
tables from a finished run.

Writes bench/results/merge7b.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np

from _common import markdown_table, write_result
from merge import REPO, ensure_mergekit, merge_setups, parity, timed

SHAPE = {"vocab_size": 46272, "hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32,
         "num_key_value_heads": 32}
N_EXPERTS = 4
FULL_LAYERS = 32  # Llama-2-7B
CHUNK = 8 * 2**20  # elements generated at once (32 MB of float32)


def tensor_shape(name: str) -> tuple[int, ...]:
    h, i = SHAPE["hidden_size"], SHAPE["intermediate_size"]
    if "norm" in name:
        return (h,)
    if "embed" in name or "lm_head" in name:
        return (SHAPE["vocab_size"], h)
    if "gate_proj" in name or "up_proj" in name:
        return (i, h)
    if "down_proj" in name:
        return (h, i)
    return (h, h)  # q, k, v, o (32 KV heads: no GQA in Llama-2-7B)


def random_bf16(rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` random bfloat16 bit patterns: random sign and mantissa, magnitudes in [2^-9, 2^-5) (about 0.002-0.03).

    Drawn as integers, which is ~10x faster than normal samples on these loaded cores; the merge's cost
    does not depend on the values, and no value is NaN or infinite (parity is checked bit for bit).
    """
    bits = rng.integers(0, 1 << 16, n, dtype=np.uint16)
    exponent = (bits >> np.uint16(7)) % np.uint16(4) + np.uint16(127 - 9)  # 4 binades from 2^-9
    return (bits & np.uint16(0x807F)) | (exponent << np.uint16(7))


def build_workload(work: Path, layers: int) -> tuple[Path, list[Path], int]:
    """Write base + 4 experts (bf16 safetensors, streamed chunk by chunk); return dirs and parameters per model."""
    from transformers import AutoTokenizer, LlamaConfig

    from mixnu.arch import llama_tensor_names
    from mixnu.console import progress
    from mixnu.datasets import llama2_tokenizer_model
    from mixnu.merge import ShardWriter

    shutil.rmtree(work, ignore_errors=True)
    tok_dir = work / "tokenizer"
    tok_dir.mkdir(parents=True)
    shutil.copy(llama2_tokenizer_model(), tok_dir / "tokenizer.model")
    AutoTokenizer.from_pretrained(tok_dir).save_pretrained(tok_dir)
    config = LlamaConfig(**SHAPE, num_hidden_layers=layers, max_position_embeddings=4096, rms_norm_eps=1e-5,
                         rope_theta=10000.0, tie_word_embeddings=False, dtype="bfloat16",
                         architectures=["LlamaForCausalLM"])
    names = llama_tensor_names(layers, tied=False)
    entries = [(n, "bfloat16", tensor_shape(n)) for n in names]
    dirs = [work / n for n in ["base"] + [f"expert{k}" for k in range(N_EXPERTS)]]
    writers = []
    for d in dirs:
        d.mkdir()
        config.save_pretrained(d)
        for f in tok_dir.iterdir():
            shutil.copy(f, d / f.name)
        writers.append(ShardWriter(d / "model.safetensors", entries))
    rng = np.random.default_rng(layers)
    total = sum(int(np.prod(s)) for _, _, s in entries)
    with progress(False, "param") as bar:
        task = bar.add_task(f"build {layers}-layer models", total=total)
        for _, _, shape in entries:
            numel = int(np.prod(shape))
            for start in range(0, numel, CHUNK):
                n = min(CHUNK, numel - start)
                base = random_bf16(rng, n)
                writers[0].write(base)
                for w in writers[1:]:  # an expert: the base with its 3 lowest mantissa bits redrawn
                    w.write((base & np.uint16(0xFFF8)) | rng.integers(0, 8, n, dtype=np.uint16))
                bar.advance(task, n)
    for w in writers:
        w.close()
    return dirs[0], dirs[1:], total


def run_layers(layers: int, work: Path, repeats: int, mergekit: Path) -> dict:
    """Build the workload, run every setting `repeats` times (one process at a time), check parity, clean up."""
    base, experts, params = build_workload(work, layers)
    outs = work / "outputs"
    outs.mkdir()
    setups = merge_setups(mergekit, base, experts, outs)
    runs: dict[str, list[dict[str, float]]] = {f"{t} [{s}]": [] for t, s, _ in setups}
    for r in range(repeats):
        for tool, setting, make in setups:
            m = timed(make())
            print(f"{layers} layers, run {r + 1}: {tool} [{setting}] {m['wall_s']:.1f} s, {m['rss_gb']:.3f} GB",
                  file=sys.stderr)
            runs[f"{tool} [{setting}]"].append(m)
    shape = {**SHAPE, "num_hidden_layers": layers}
    checked = parity(outs / "mixnu-base", outs / "mergekit", shape, N_EXPERTS)
    in_gb = sum(f.stat().st_size for d in [base, *experts] for f in d.glob("*.safetensors")) / 1e9
    out_gb = sum(f.stat().st_size for f in (outs / "mixnu-base").glob("*.safetensors")) / 1e9
    shutil.rmtree(work)
    medians = {k: {"wall_s": statistics.median(x["wall_s"] for x in v),
                   "rss_gb": statistics.median(x["rss_gb"] for x in v)} for k, v in runs.items()}
    return {"layers": layers, "params_per_model": params, "inputs_gb": round(in_gb, 3), "output_gb": round(out_gb, 3),
            "runs": runs, "medians": medians, "parity": checked}


def ratio_rows(res: dict) -> list[dict]:
    """One row per setting: median wall and RSS, against mergekit's defaults (wall) and its lowest RSS."""
    med = res["medians"]
    mk_wall = med["mergekit-moe 0.1.5 [defaults]"]["wall_s"]
    mk_rss = min(v["rss_gb"] for k, v in med.items() if k.startswith("mergekit"))
    return [{"layers": res["layers"], "setting": k, "wall_s": round(v["wall_s"], 1), "peak_rss_gb": round(v["rss_gb"], 3),
             "wall_vs_mergekit": round(v["wall_s"] / mk_wall, 2), "rss_vs_mergekit_best": round(v["rss_gb"] / mk_rss, 3)}
            for k, v in med.items()]


def moved_gb(layers: int) -> float:
    """GB read and written by a merge of this workload at `layers` layers: 5 input models + the bf16 MoE."""
    from mixnu.plan import Architecture, param_counts

    a = Architecture(**SHAPE, num_hidden_layers=layers)
    return 2 * ((1 + N_EXPERTS) * param_counts(a, SHAPE["vocab_size"]) + param_counts(a, SHAPE["vocab_size"], N_EXPERTS)) / 1e9


def extrapolate(results: list[dict]) -> list[dict]:
    """Each setting at 32 layers: wall scaled by bytes moved (per run), RSS fitted as a + b * layers.

    Wall: a streaming merge's time is taken as proportional to the bytes it reads and writes, so the
    per-layer cost x 32 + the embeddings' cost is wall(L) * moved(32) / moved(L), one estimate per
    measured layer count (runs at different layer counts saw different machine load, so a fit across
    them is not used for wall). RSS: a + b * layers through the two smallest layer counts.
    """
    lo, hi = sorted(results, key=lambda r: r["layers"])[:2]
    rows = []
    for key in lo["medians"]:
        row = {"setting": key}
        for r in (lo, hi):
            row[f"wall_s_at_32_from_{r['layers']}"] = round(r["medians"][key]["wall_s"] * moved_gb(FULL_LAYERS)
                                                          / moved_gb(r["layers"]), 1)
        b = (hi["medians"][key]["rss_gb"] - lo["medians"][key]["rss_gb"]) / (hi["layers"] - lo["layers"])
        a = lo["medians"][key]["rss_gb"] - b * lo["layers"]
        row["rss_gb_per_layer"] = round(b, 3)
        row["rss_gb_at_32"] = round(a + b * FULL_LAYERS, 2)
        rows.append(row)
    return rows


def recompute(path: Path) -> None:
    """Redo the tables and the extrapolation from a results JSON (its command, machine and runs kept)."""
    import json

    from mixnu.io import write_json

    data = json.loads(path.read_text())
    data["rows"] = [row for r in data["results"] for row in ratio_rows(r)]
    data["extrapolated_32_layers"] = extrapolate(data["results"])
    data["moved_gb"] = {L: round(moved_gb(L), 2) for L in (*data["workload"]["layers"], FULL_LAYERS)}
    data["recomputed_by"] = "python " + " ".join([str(Path(sys.argv[0]))] + sys.argv[1:])
    write_json(path, data)
    print(markdown_table(data["rows"]))
    print(markdown_table(data["extrapolated_32_layers"]))


def plan_params() -> dict:
    """`mixnu plan`'s parameter counts for the recipe, and the same formula at this bench's shapes."""
    from mixnu.plan import load_plan, make_plan, param_counts

    cfg = load_plan(REPO / "recipes" / "mixnu-19b" / "plan.yaml")
    p = make_plan(cfg).params
    a = cfg.architecture
    assert a.hidden_size == SHAPE["hidden_size"] and a.intermediate_size == SHAPE["intermediate_size"]
    assert p.vocab_rows == SHAPE["vocab_size"] and a.num_hidden_layers == FULL_LAYERS
    return {"moe_total": p.moe_total, "moe_bf16_gb": round(2 * p.moe_total / 1e9, 2),
            "expert_params": p.dense_expanded, "expert_bf16_gb": round(2 * p.dense_expanded / 1e9, 2),
            "moe_params_at": {L: param_counts(a.model_copy(update={"num_hidden_layers": L}), p.vocab_rows, N_EXPERTS)
                              for L in (2, 4)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, nargs="+", default=[2, 4], help="decoder layers per workload (2-4)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("/tmp/mixnu-merge7b"))
    ap.add_argument("--recompute", type=Path, help="only redo tables and extrapolation from this results JSON")
    args = ap.parse_args()
    if args.recompute:
        recompute(args.recompute)
        return
    mergekit = ensure_mergekit()
    plan = plan_params()
    results = []
    try:
        for layers in args.layers:
            results.append(run_layers(layers, args.work, args.repeats, mergekit))
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    rows = [row for r in results for row in ratio_rows(r)]
    print(markdown_table(rows))
    for r in results:
        c = r["parity"]
        print(f"\n{r['layers']} layers: {r['params_per_model'] / 1e9:.3f} B parameters per model, inputs "
              f"{r['inputs_gb']:.2f} GB, output {r['output_gb']:.2f} GB; parity (shared=base): {c['expert']} expert + "
              f"{c['shared']} shared tensors compared, {c['mismatch']} differ")
    extra = extrapolate(results) if len(results) >= 2 else []
    if extra:
        print("\nExtrapolated to 32 layers (wall scaled by bytes moved; RSS a + b * layers):\n")
        print(markdown_table(extra))
    print(f"\nmixnu plan: MoE {plan['moe_total']:,} parameters ({plan['moe_bf16_gb']} GB bf16), "
          f"expert {plan['expert_params']:,} ({plan['expert_bf16_gb']} GB bf16)")
    write_result("merge7b", {
        "workload": {**SHAPE, "experts": N_EXPERTS, "dtype": "bfloat16", "layers": args.layers},
        "method": "median of --repeats runs per setting, each a separate process under /usr/bin/time -v, one at a "
                  "time; peak RSS is its 'Maximum resident set size' (includes resident file-backed/mmapped pages); "
                  "warm page cache; extrapolation: wall scaled by GB moved, RSS a + b * layers",
        "repeats": args.repeats, "rows": rows, "results": results, "extrapolated_32_layers": extra, "plan": plan,
        "targets": {"peak_rss_gb_max": 1.0, "rss_vs_mergekit_best_max": 0.1, "wall_vs_mergekit_max": 0.7},
    })


if __name__ == "__main__":
    main()
