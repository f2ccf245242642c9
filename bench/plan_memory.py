"""`mixnu plan`'s activation formula against the measured peak memory of a CPU training step.

    nice .venv/bin/python bench/plan_memory.py [--seq-lens 1024 2048] [--batch 1]

For each sequence length, a fresh process builds a small Llama (hidden 512, MLP 1376, 4 layers, 8
heads, 5,792 vocabulary rows: Llama-2-7B's MLP/hidden and vocabulary/hidden ratios), with gradient
checkpointing (`use_reentrant=False`, as `mixnu train` sets it) and AdamW, and runs one warm-up step
at 16 tokens with gradients kept allocated afterwards (`zero_grad(set_to_none=False)`), so weights,
gradients and optimizer states are all resident. It then records the process's peak RSS
(`ru_maxrss`), runs one training step at the sequence length, and records the peak again: the
difference is the step's activation memory (plus whatever else the step allocates).

The plan's formula (`mixnu.plan.activation_bytes`) is for bf16 on GPUs: element counts times 2 bytes,
plus 10 bytes per logit (bf16 logits, their fp32 copy, the fp32 gradient). bf16 matmuls are ~30x
slower than fp32 on these CPUs (no native bf16), so the run is fp32 and is compared with the same
element counts at fp32 sizes: 4 bytes per activation element, 8 per logit (fp32 logits and their
gradient; the fp32 copy is a no-op in fp32). Reported: predicted and measured bytes per length,
the relative error, and the same for the difference between the two lengths (which cancels any fixed
cost of the step).

Writes bench/results/plan_memory.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from _common import markdown_table, write_result

ARCH = {"hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 4, "num_attention_heads": 8,
        "num_key_value_heads": 8, "vocab_size": 5792, "tie_word_embeddings": False}


def child(seq_len: int, batch: int) -> dict:
    """Measure one step in this process (run as a fresh subprocess per length); returns bytes."""
    import resource

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**ARCH, max_position_embeddings=8192))
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(n: int) -> None:
        x = torch.randint(0, ARCH["vocab_size"], (batch, n))
        model(input_ids=x, labels=x, use_cache=False).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)  # gradients stay allocated: part of the baseline

    step(16)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    step(seq_len)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seq_len": seq_len, "batch": batch, "baseline_peak_bytes": before, "step_peak_bytes": after,
            "measured_bytes": after - before}


def predicted(seq_len: int, batch: int) -> dict:
    """The plan's bf16 formula, and the same element counts at fp32 sizes (what this CPU run holds)."""
    from mixnu.plan import Architecture, activation_bytes

    a = Architecture(**ARCH)
    bf16 = activation_bytes(a, ARCH["vocab_size"], top_k=1, micro_batch=batch, seq_len=seq_len)
    logits = batch * seq_len * ARCH["vocab_size"]
    fp32 = 2 * (bf16 - 10 * logits) + 8 * logits
    return {"plan_bf16_bytes": bf16, "plan_fp32_bytes": fp32, "logit_elements": logits}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seq-lens", type=int, nargs=2, default=[1024, 2048])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.batch)))
        return
    rows = []
    for n in args.seq_lens:
        proc = subprocess.run([sys.executable, __file__, "--child", str(n), "--batch", str(args.batch)],
                              capture_output=True, text=True, check=True)
        m = json.loads(proc.stdout.strip().splitlines()[-1])
        p = predicted(n, args.batch)
        rows.append({**m, **p, "error": round(m["measured_bytes"] / p["plan_fp32_bytes"] - 1, 3)})
        print(f"seq {n}: measured {m['measured_bytes'] / 2**20:.1f} MiB, formula (fp32 sizes) "
              f"{p['plan_fp32_bytes'] / 2**20:.1f} MiB", file=sys.stderr)
    lo, hi = rows
    slope_m = hi["measured_bytes"] - lo["measured_bytes"]
    slope_p = hi["plan_fp32_bytes"] - lo["plan_fp32_bytes"]
    table = [{"seq_len": r["seq_len"], "measured_MiB": round(r["measured_bytes"] / 2**20, 1),
              "formula_fp32_MiB": round(r["plan_fp32_bytes"] / 2**20, 1), "error": r["error"],
              "formula_bf16_MiB": round(r["plan_bf16_bytes"] / 2**20, 1)} for r in rows]
    table.append({"seq_len": f"{hi['seq_len']} - {lo['seq_len']}", "measured_MiB": round(slope_m / 2**20, 1),
                  "formula_fp32_MiB": round(slope_p / 2**20, 1), "error": round(slope_m / slope_p - 1, 3),
                  "formula_bf16_MiB": round((hi["plan_bf16_bytes"] - lo["plan_bf16_bytes"]) / 2**20, 1)})
    print(markdown_table(table))
    write_result("plan_memory", {
        "architecture": ARCH, "batch": args.batch, "dtype": "float32", "gradient_checkpointing": True,
        "method": "fresh process per length; ru_maxrss after a 16-token warm-up step (weights, gradients, AdamW "
                  "states resident) subtracted from ru_maxrss after one step at the length",
        "rows": rows, "table": table, "slope_error": round(slope_m / slope_p - 1, 3),
    })


if __name__ == "__main__":
    main()
