"""Benchmark `mixnu merge` against mergekit-moe 0.1.5 on 4 experts of ~300M parameters (bf16).

    .venv/bin/python bench/merge.py [--repeats 2] [--work bench/.peers/merge-work]

Builds the workload (a random Llama base of ~301M parameters, 20 layers, hidden 1024,
intermediate 2816, vocab 32000, and 4 experts = base + noise, all bf16 safetensors), installs
mergekit 0.1.5 into its own venv under bench/.peers/ (git-ignored; a peer, not a dependency),
then runs each tool as a separate process under `/usr/bin/time -v`, alternating, `--repeats`
times. Reported per run: wall clock, and "Maximum resident set size" as `/usr/bin/time -v`
prints it (the kernel's peak RSS of the process: anonymous memory plus resident file-backed
pages, so memory-mapped input pages count). Inputs are in the page cache for every run (both
tools read the same files that were just written or read; caches are not dropped).

Parity: with shared=base, every expert tensor and every non-MLP tensor of mixnu's output equals
mergekit's (its fused `mlp.experts.gate_up_proj` [E, 2I, H] is split into w1 = gate, w3 = up,
`down_proj` [E, H, I] gives w2), bit for bit.

Writes bench/results/merge.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import markdown_table, write_result

REPO = Path(__file__).resolve().parents[1]
PEERS = REPO / "bench" / ".peers"
MERGEKIT_VENV = PEERS / "mergekit-0.1.5"
SHAPE = {"vocab_size": 32000, "hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 20,
         "num_attention_heads": 16, "num_key_value_heads": 8}
N_EXPERTS = 4


def ensure_mergekit() -> Path:
    """mergekit-moe 0.1.5 in bench/.peers/mergekit-0.1.5 (torch pinned to the same CPU wheel)."""
    exe = MERGEKIT_VENV / "bin" / "mergekit-moe"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(MERGEKIT_VENV)], check=True)
        subprocess.run([str(MERGEKIT_VENV / "bin" / "pip"), "install", "-q", "torch==2.13.0", "mergekit==0.1.5"],
                       check=True)
    return exe


def build_workload(work: Path) -> tuple[Path, list[Path]]:
    """Random base + 4 noisy experts, bf16, one safetensors file each (reused if already built)."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from mixnu.arch import llama_tensor_names
    from mixnu.datasets import llama2_tokenizer_model

    names = ["base"] + [f"expert{i}" for i in range(N_EXPERTS)]
    dirs = [work / n for n in names]
    if all((d / "model.safetensors").is_file() for d in dirs):
        return dirs[0], dirs[1:]
    shutil.rmtree(work, ignore_errors=True)
    tok_dir = work / "tokenizer"
    tok_dir.mkdir(parents=True)
    shutil.copy(llama2_tokenizer_model(), tok_dir / "tokenizer.model")
    AutoTokenizer.from_pretrained(tok_dir).save_pretrained(tok_dir)
    config = LlamaConfig(**SHAPE, max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
                         tie_word_embeddings=False, dtype="bfloat16", architectures=["LlamaForCausalLM"])
    with torch.device("meta"):  # shapes only: no memory, no init
        shapes = {n: tuple(t.shape) for n, t in LlamaForCausalLM(config).state_dict().items()}

    def shape(name: str) -> tuple[int, ...]:
        return shapes[name]

    gen = torch.Generator().manual_seed(0)
    base = {n: (torch.randn(shape(n), generator=gen) * 0.02).to(torch.bfloat16)
            for n in llama_tensor_names(SHAPE["num_hidden_layers"], tied=False)}
    for k, d in enumerate(dirs):
        d.mkdir()
        config.save_pretrained(d)
        for f in tok_dir.iterdir():
            shutil.copy(f, d / f.name)
        sd = base if k == 0 else {n: (t.float() + 0.002 * torch.randn(t.shape, generator=gen)).to(torch.bfloat16)
                                  for n, t in base.items()}
        save_file(sd, d / "model.safetensors", metadata={"format": "pt"})
        del sd
    params = sum(t.numel() for t in base.values())
    print(f"workload: {params / 1e6:.1f}M parameters per model, {len(dirs)} models in {work}", file=sys.stderr)
    return dirs[0], dirs[1:]


def timed(cmd: list[str]) -> dict[str, float]:
    """Run `cmd` under /usr/bin/time -v; return wall seconds and peak RSS (GB)."""
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed:\n{proc.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", proc.stderr).group(1)
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part)
    return {"wall_s": secs, "rss_gb": rss * 1024 / 1e9}


def parity(ours: Path, theirs: Path, shape: dict | None = None, n_experts: int = N_EXPERTS) -> dict[str, int]:
    """Compare mixnu's hub-named tensors with mergekit's fused ones, bit for bit, tensor by tensor."""
    import torch
    from safetensors import safe_open

    def index(folder: Path) -> dict[str, Path]:
        idx = folder / "model.safetensors.index.json"
        if idx.is_file():
            return {k: folder / v for k, v in json.loads(idx.read_text())["weight_map"].items()}
        out = {}
        for f in folder.glob("*.safetensors"):
            with safe_open(f, "pt") as fh:
                out.update({k: f for k in fh.keys()})  # noqa: SIM118
        return out

    def get(where: dict[str, Path], name: str):
        with safe_open(where[name], "pt") as fh:
            return fh.get_tensor(name)

    from mixnu import arch

    a, b = index(ours), index(theirs)
    checked = {"expert": 0, "shared": 0, "mismatch": 0}
    shape = shape or SHAPE
    i = shape["intermediate_size"]
    moe = arch.load("mixtral")
    fused = set()
    for layer in range(shape["num_hidden_layers"]):
        gate_up_name, down_name = (t.format(layer=layer) for t in moe.module["experts"])
        fused |= {gate_up_name, down_name}
        gate_up, down = get(b, gate_up_name), get(b, down_name)
        for e in range(n_experts):
            def ours_name(w: str, e: int = e, layer: int = layer) -> str:
                return moe.checkpoint["expert"].format(layer=layer, expert=e, w=w)
            # w1 = gate (first half of gate_up), w3 = up (second half), w2 = down
            for w, theirs_t in (("w1", gate_up[e, :i]), ("w3", gate_up[e, i:]), ("w2", down[e])):
                checked["expert"] += 1
                checked["mismatch"] += not torch.equal(get(a, ours_name(w)), theirs_t)
    for name in b:
        if name in fused or arch.is_router_param(name):
            continue
        checked["shared"] += 1
        checked["mismatch"] += name not in a or not torch.equal(get(a, name), get(b, name))
    return checked


def merge_setups(mergekit: Path, base: Path, experts: list[Path], outs: Path) -> list[tuple[str, str, Any]]:
    """The four settings both merge benches compare: (tool, setting, () -> command line), side by side."""
    import yaml

    mk_cfg = outs / "mergekit.yml"
    mk_cfg.write_text(yaml.safe_dump({
        "base_model": str(base), "gate_mode": "random", "dtype": "bfloat16", "experts_per_token": 2,
        "experts": [{"source_model": str(e), "positive_prompts": ["x"]} for e in experts]}))
    mixnu = str(REPO / ".venv" / "bin" / "mixnu")

    def mixnu_cmd(shared: str) -> list[str]:
        cmd = [mixnu, "merge", "--base", str(base), "--out", str(outs / f"mixnu-{shared}"), "--force", "-q",
               "--shared", shared, "--router-init", "random", "--dtype", "bfloat16"]
        return cmd + [a for k, e in enumerate(experts) for a in ("--expert", f"e{k}={e}")]

    def mk_cmd(*flags: str) -> list[str]:
        out = outs / "mergekit"
        shutil.rmtree(out, ignore_errors=True)
        return [str(mergekit), str(mk_cfg), str(out), "--i-understand-this-is-not-useful-without-training",
                "--quiet", *flags]

    return [
        ("mergekit-moe 0.1.5", "defaults", lambda: mk_cmd()),
        ("mergekit-moe 0.1.5", "--out-shard-size 100M", lambda: mk_cmd("--out-shard-size", "100M")),
        ("mixnu merge", "shared=base", lambda: mixnu_cmd("base")),
        ("mixnu merge", "shared=average", lambda: mixnu_cmd("average")),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--work", type=Path, default=PEERS / "merge-work")
    args = ap.parse_args()
    mergekit = ensure_mergekit()
    base, experts = build_workload(args.work)
    outs = args.work / "outputs"
    outs.mkdir(exist_ok=True)
    setups = merge_setups(mergekit, base, experts, outs)
    runs: dict[tuple[str, str], list[dict[str, float]]] = {(t, s): [] for t, s, _ in setups}
    for r in range(args.repeats):
        for tool, setting, make in setups:
            m = timed(make())
            print(f"run {r + 1}: {tool} [{setting}] {m['wall_s']:.2f} s, {m['rss_gb']:.3f} GB", file=sys.stderr)
            runs[(tool, setting)].append(m)
    checked = parity(outs / "mixnu-base", outs / "mergekit")
    mk_wall = statistics.median(x["wall_s"] for x in runs[("mergekit-moe 0.1.5", "defaults")])
    mk_rss = min(statistics.median(x["rss_gb"] for x in v) for (t, _), v in runs.items() if t.startswith("mergekit"))
    rows = []
    for (tool, setting), ms in runs.items():
        wall = statistics.median(x["wall_s"] for x in ms)
        rss = statistics.median(x["rss_gb"] for x in ms)
        rows.append({"tool": tool, "setting": setting, "wall_s": round(wall, 2), "peak_rss_gb": round(rss, 3),
                     "wall_vs_mergekit": round(wall / mk_wall, 2), "rss_vs_mergekit_best": round(rss / mk_rss, 2)})
    in_gb = sum(f.stat().st_size for d in [base, *experts] for f in d.glob("*.safetensors")) / 1e9
    out_gb = sum(f.stat().st_size for f in (outs / "mixnu-base").glob("*.safetensors")) / 1e9
    table = markdown_table(rows)
    print(table)
    print(f"\ninputs {in_gb:.2f} GB, output {out_gb:.2f} GB; parity with mergekit (shared=base): "
          f"{checked['expert']} expert + {checked['shared']} shared tensors compared, {checked['mismatch']} differ")
    write_result("merge", {
        "workload": {**SHAPE, "experts": N_EXPERTS, "dtype": "bfloat16", "inputs_gb": round(in_gb, 3),
                     "output_gb": round(out_gb, 3)},
        "method": "median of --repeats runs per setting, each a separate process under /usr/bin/time -v; peak RSS "
                  "is its 'Maximum resident set size' (includes resident file-backed/mmapped pages); warm page cache",
        "repeats": args.repeats, "rows": rows, "runs": {f"{t} [{s}]": v for (t, s), v in runs.items()},
        "parity": checked, "targets": {"peak_rss_gb_max": 0.55, "wall_vs_mergekit_max": 0.7},
    })


if __name__ == "__main__":
    main()
