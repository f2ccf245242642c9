"""Which initialisation of the new vocabulary rows is best? subword-mean vs mean vs random, on a tiny model.

1. A tiny Llama (hidden 128, 2 layers, Llama-2's 32,000-piece vocabulary) is pretrained briefly on the
   four Korean corpora, so its embeddings mean something.
2. Llama-2's tokenizer is extended with Hangul pieces (the test suite's builder: frequent syllables,
   `▁`+syllable and syllable bigrams appended to the SentencePiece proto).
3. The base is expanded four times (`--init subword-mean` with EEVE's first-subword head rows, and with
   mean head rows; `--init mean`; `--init random`), and each copy is trained the same short run. Reported: Korean held-out bits per character (all four domains' held-out text) at step 0
   and after the run, next to the base model's own bits/char with the old tokenizer.

    python bench/expand.py [--base-steps 300] [--steps 60] [--pieces 1500] [--trainable all]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import markdown_table, write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-steps", type=int, default=300)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--pieces", type=int, default=1500)
    ap.add_argument("--trainable", default="all")
    ap.add_argument("--eval-tokens", type=int, default=8192)
    args = ap.parse_args()

    import torch
    from tests.test_expand import build_extended_tokenizer
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from mixnu.datasets import corpus_files, heldout_files, llama2_tokenizer_model
    from mixnu.expand import ExpandConfig, expand_model
    from mixnu.io import read_corpus
    from mixnu.train import TrainConfig, train

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mixed = work / "mixed.txt"
        lines = [ln for path in corpus_files().values() for ln in read_corpus(path, max_lines=4000)]
        mixed.write_text("\n".join(lines) + "\n", encoding="utf-8")
        heldout = list(heldout_files().values())
        base_tok = work / "llama2-tok"
        base_tok.mkdir()
        shutil.copy(llama2_tokenizer_model(), base_tok / "tokenizer.model")
        tok = AutoTokenizer.from_pretrained(base_tok)
        tok.save_pretrained(base_tok)
        ext_tok = build_extended_tokenizer(work / "ext-tok", llama2_tokenizer_model(), mixed, n_pieces=args.pieces)
        n_ext = len(AutoTokenizer.from_pretrained(ext_tok))

        init_dir = work / "base-init"
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=512, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
        torch.manual_seed(0)
        LlamaForCausalLM(cfg).save_pretrained(init_dir)
        tok.save_pretrained(init_dir)
        shutil.copy(base_tok / "tokenizer.model", init_dir / "tokenizer.model")
        common = dict(eval_data=heldout, eval_tokens=args.eval_tokens, seq_len=256, batch_size=4, quiet=True,
                      cache_dir=work / "cache", seed=0, log_every=10)
        t0 = time.perf_counter()
        base = train(TrainConfig(model=init_dir, data=[mixed], out=work / "base", steps=args.base_steps, lr=3e-3,
                                 warmup_steps=20, **common))
        print(f"base: {args.base_steps} steps in {time.perf_counter() - t0:.0f} s, held-out "
              f"{base.eval['all']['bpc']:.4f} bits/char", file=sys.stderr)
        rows = [{"model": "base (Llama-2 tokenizer)", "init": "-", "bpc_step0": base.eval["all"]["bpc"],
                 f"bpc_after_{args.steps}": None}]
        for init, output_init in (("subword-mean", "first"), ("subword-mean", "mean"), ("mean", "first"),
                                  ("random", "first")):
            label = init if init != "subword-mean" else f"subword-mean, head rows: {output_init}"
            out = work / f"exp-{init}-{output_init}"
            expand_model(ExpandConfig(model=work / "base", tokenizer=ext_tok, out=out, init=init,
                                      output_init=output_init, quiet=True))
            r = train(TrainConfig(model=out, data=[mixed], out=work / f"trained-{init}-{output_init}",
                                  steps=args.steps, lr=1e-3, warmup_steps=5, trainable=args.trainable,
                                  eval_at_start=True, **common))
            rows.append({"model": f"expanded ({n_ext:,} pieces)", "init": label,
                         "bpc_step0": r.initial_eval["all"]["bpc"], f"bpc_after_{args.steps}": r.eval["all"]["bpc"]})
            print(rows[-1], file=sys.stderr)
    table = markdown_table(rows)
    print(table)
    exp = rows[1:]
    best0 = min(exp, key=lambda r: r["bpc_step0"])["init"]
    best1 = min(exp, key=lambda r: r[f"bpc_after_{args.steps}"])["init"]
    won = best0.startswith("subword-mean") and best1.startswith("subword-mean")
    verdict = (f"lowest bits/char at step 0: {best0}; after {args.steps} steps ({args.trainable}): {best1}"
               + ("" if won else "  (subword-mean did NOT win everywhere)"))
    print("\n" + verdict)
    write_result("expand", {"rows": rows, "verdict": verdict, "base_steps": args.base_steps, "steps": args.steps,
                            "pieces_added": n_ext - 32000, "trainable": args.trainable,
                            "eval": "all four *_heldout.txt files, first ~eval_tokens tokens (whole documents) each",
                            "wall_s": round(time.perf_counter() - t_start, 1)})


if __name__ == "__main__":
    main()
