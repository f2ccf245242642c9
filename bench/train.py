"""Training throughput on this CPU: `mixnu train` vs Hugging Face `Trainer`, side by side.

Same tiny Llama (hidden 256, 4 layers, 8k byte-level BPE vocab trained here on the law corpus: ~8.3M
parameters), same packed blocks (seq len 256, batch 8), same optimizer settings (AdamW, warmup + cosine,
clipping 1.0, fp32), no evaluation. Each run is its own process (so peak RSS is its own). By default the
two run side by side, concurrently with one thread each, so that both see the same load on a shared
machine; `--sequential` runs them one after the other. `--reps` pairs; the table reports medians.

    python bench/train.py [--steps 40] [--reps 2] [--sequential]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import markdown_table, write_result

SEQ, BATCH, LR, WARMUP = 256, 8, 1e-3, 5


def build(work: Path) -> tuple[Path, Path]:
    """An 8k BPE tokenizer + tiny Llama folder, and the law corpus sample, under `work`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from mixnu.datasets import corpus_files
    from mixnu.io import read_corpus

    lines = read_corpus(corpus_files()["law"], max_lines=6000)
    data = work / "law.txt"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=8000, special_tokens=["<s>", "</s>", "<pad>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    model_dir = work / "model"
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=SEQ,
                      bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(model_dir)
    fast.save_pretrained(model_dir)
    return model_dir, data


def worker_mixnu(model: Path, data: Path, steps: int, work: Path) -> dict:
    from mixnu.train import TrainConfig, train

    t0 = time.perf_counter()
    r = train(TrainConfig(model=model, data=[data], out=work / "out-mixnu", steps=steps, seq_len=SEQ,
                          batch_size=BATCH, lr=LR, warmup_steps=WARMUP, weight_decay=0.1, grad_clip=1.0,
                          precision="fp32", eval_tokens=16, log_every=10, cache_dir=work / "cache", quiet=True,
                          force=True))
    return {"tokens_per_s": r.tokens_per_s, "call_wall_s": time.perf_counter() - t0, "final_loss": r.train_loss}


def worker_trainer(model: Path, data: Path, steps: int, work: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from mixnu.train.data import pack_blocks, tokenize_docs

    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(model)
    blocks = pack_blocks(tokenize_docs(data, tok, part="train", eval_fraction=0.02, cache_dir=work / "cache"), SEQ)

    class Blocks(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return blocks.shape[0]

        def __getitem__(self, i: int) -> dict:
            return {"input_ids": blocks[i], "labels": blocks[i]}

    m = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    args = TrainingArguments(output_dir=str(work / "out-trainer"), per_device_train_batch_size=BATCH,
                             max_steps=steps, learning_rate=LR, warmup_steps=WARMUP, lr_scheduler_type="cosine",
                             weight_decay=0.1, max_grad_norm=1.0, adam_beta2=0.95, logging_steps=10,
                             save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0,
                             disable_tqdm=True, seed=0)
    trainer = Trainer(model=m, args=args, train_dataset=Blocks())
    out = trainer.train()
    tokens = steps * BATCH * SEQ
    return {"tokens_per_s": tokens / out.metrics["train_runtime"], "call_wall_s": time.perf_counter() - t0,
            "final_loss": trainer.state.log_history[-2].get("loss")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--sequential", dest="concurrent", action="store_false",
                    help="run one after the other with all threads (default: concurrently, 1 thread each)")
    ap.add_argument("--worker", choices=["mixnu", "trainer"])
    ap.add_argument("--work", type=Path)
    args = ap.parse_args()
    if args.worker:
        fn = worker_mixnu if args.worker == "mixnu" else worker_trainer
        res = fn(args.work / "model", args.work / "law.txt", args.steps, args.work)
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print("RESULT " + json.dumps(res))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model, _ = build(work)
        n_params = sum(p.numel() for p in __import__("transformers").AutoModelForCausalLM.from_pretrained(model)
                       .parameters())
        runs: dict[str, list[dict]] = {"mixnu": [], "trainer": []}
        # warm the tokenised-data cache so neither side pays for tokenising
        subprocess.run([sys.executable, __file__, "--worker", "mixnu", "--work", str(work), "--steps", str(WARMUP + 1)],
                       check=True, capture_output=True)
        # The machine is shared: run the two side by side (concurrently, one thread each), so that both see
        # the same outside load; alternate which one starts first.
        env = {**os.environ, "OMP_NUM_THREADS": "1"} if args.concurrent else os.environ.copy()
        for rep in range(args.reps):
            order = ("mixnu", "trainer") if rep % 2 == 0 else ("trainer", "mixnu")
            procs = {}
            for tool in order:
                cmd = [sys.executable, __file__, "--worker", tool, "--work", str(work), "--steps", str(args.steps)]
                procs[tool] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                if not args.concurrent:
                    procs[tool].wait()
            for tool, proc in procs.items():
                out, err = proc.communicate()
                if proc.returncode != 0:
                    sys.exit(f"{tool} run failed:\n{err[-3000:]}")
                line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
                runs[tool].append(json.loads(line[7:]))
                print(f"{tool} rep {rep}: {runs[tool][-1]}", file=sys.stderr)
    rows = []
    for tool, rs in runs.items():
        rows.append({"tool": "mixnu train" if tool == "mixnu" else "HF Trainer",
                     "tokens_per_s": statistics.median(r["tokens_per_s"] for r in rs),
                     "call_wall_s": statistics.median(r["call_wall_s"] for r in rs),
                     "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rs),
                     "final_loss": statistics.median(r["final_loss"] for r in rs if r["final_loss"] is not None)})
    ratio = rows[0]["tokens_per_s"] / rows[1]["tokens_per_s"]
    print(markdown_table(rows))
    mode = "concurrent pairs, 1 thread each" if args.concurrent else "sequential, alternating"
    print(f"\nmixnu / Trainer tokens/s: {ratio:.3f}x  (model {n_params / 1e6:.2f}M params, seq {SEQ}, batch {BATCH}, "
          f"{args.steps} steps, medians of {args.reps} runs, {mode}; target >= 1.0x)")
    write_result("train", {"rows": rows, "ratio_tokens_per_s": ratio, "params": n_params, "seq_len": SEQ,
                           "batch_size": BATCH, "steps": args.steps, "reps": args.reps, "runs": runs,
                           "mode": "concurrent, OMP_NUM_THREADS=1 each" if args.concurrent else "sequential",
                           "note": "tokens/s: mixnu = its training-loop time; Trainer = train_runtime. "
                                   "peak_rss_mb = ru_maxrss of the run's own process."})


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
