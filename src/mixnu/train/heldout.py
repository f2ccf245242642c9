"""Held-out evaluation during training: the eval windows (`load_eval`) and `evaluate` (loss and bits/char
per file, `mixnu.perplexity`'s one definition, windows sharded over processes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mixnu.io import read_corpus
from mixnu.scoring import Window, bits_per_char, run_windows, tokenize_domain
from mixnu.text import body_ids
from mixnu.train.config import TrainConfig
from mixnu.train.data import split_docs


@dataclass(frozen=True)
class EvalSet:
    """One held-out file as `mixnu.perplexity` scores it: its windows and its character count."""

    windows: list[Window]
    chars: int


def _leading_docs(tokenizer, docs: list[str], max_tokens: int) -> list[str]:
    """The leading documents whose scored tokens (text + BOS) add up to at most `max_tokens` (at least one)."""
    kept, n = [], 0
    for i in range(0, len(docs), 64):
        chunk = docs[i: i + 64]
        for text, ids in zip(chunk, body_ids(tokenizer, chunk), strict=True):
            n += len(ids) + 1
            if kept and n > max_tokens:
                return kept
            kept.append(text)
    return kept


def load_eval(cfg: TrainConfig, tokenizer) -> dict[str, EvalSet]:
    """Held-out documents per eval file (`eval_data`, else the tail of each data file), cut into windows of
    `seq_len` tokens with stride `seq_len // 2` exactly as `mixnu ppl --max-length seq_len` cuts them."""
    out = {}
    for f in cfg.eval_data or cfg.data:
        docs = read_corpus(f, max_lines=None if cfg.eval_data else cfg.max_lines)
        if not cfg.eval_data:
            docs = split_docs(docs, "eval", cfg.eval_fraction)
        docs = _leading_docs(tokenizer, docs, cfg.eval_tokens)
        name = Path(f).name
        out[name] = EvalSet(tokenize_domain(tokenizer, name, docs, cfg.seq_len, cfg.seq_len // 2),
                            sum(len(d) for d in docs))
    return out


def evaluate(model, evals: dict[str, EvalSet], cfg: TrainConfig, pad_id: int, accelerator) -> dict:
    """Loss (nats per scored token) and bits/char per eval file and overall.

    Bits/char is `mixnu.perplexity`'s one definition (each document scored as BOS + text, EOS not
    scored, characters without newlines), computed by the same `run_windows`, so the final figure
    equals `mixnu ppl --max-length <seq_len>` on the same text. Windows are sharded over processes
    and the sums reduced.
    """
    model.eval()
    out, tot_nats, tot_tok, tot_chars = {}, 0.0, 0, 0
    r, p = accelerator.process_index, accelerator.num_processes
    for name, ev in evals.items():
        per = -(-len(ev.windows) // p)
        mine = ev.windows[r * per: (r + 1) * per]
        # every process runs the same number of batches (FSDP/ZeRO-3 gather weights in each forward):
        # fill up with windows that score nothing
        mine += [Window(name, [pad_id, pad_id], [-100, -100])] * (per - len(mine))
        nats, count = run_windows(model, mine, cfg.eval_batch_size).get(name, (0.0, 0))
        sums = accelerator.reduce(torch.tensor([nats, float(count)], dtype=torch.float64,
                                               device=accelerator.device), reduction="sum")
        nats, count = float(sums[0]), int(sums[1])
        out[name] = {"loss": nats / max(count, 1), "bpc": bits_per_char(nats, ev.chars)}
        tot_nats, tot_tok, tot_chars = tot_nats + nats, tot_tok + count, tot_chars + ev.chars
    out["all"] = {"loss": tot_nats / max(tot_tok, 1), "bpc": bits_per_char(tot_nats, tot_chars)}
    model.train()
    return out
