"""The one definition of bits per character, and the code that computes it (see `mixnu.perplexity`).

Each document is scored as `BOS + text`: every text token exactly once (sliding windows of
`max_length` tokens, each later window starting `stride` tokens on and scoring only tokens not yet
scored), BOS as context only, no EOS appended or scored, no document seeing the one before. Bits
per character = summed NLL in nats / ln 2 / NFC characters (newlines not counted). `mixnu ppl`
(`mixnu.perplexity.score_model`) and the training loop's held-out evaluation (`mixnu.train.evaluate`)
both call `tokenize_domain` -> `run_windows` -> `bits_per_char`; it sits in this leaf module so the
training stage can use it without importing the evaluation stage. Nothing is written to disk.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mixnu.console import progress
from mixnu.text import document_ids


@dataclass(frozen=True)
class Window:
    """Token ids of one forward pass; `labels` are -100 where a token is context only."""

    domain: str
    input_ids: list[int]
    labels: list[int]


def make_windows(domain: str, token_lists: Sequence[Sequence[int]], bos_id: int | None, max_length: int,
                 stride: int) -> list[Window]:
    """Cut each tokenized document (`bos + ids`) into windows that score every id exactly once."""
    windows: list[Window] = []
    for ids in token_lists:
        seq = ([bos_id] if bos_id is not None else []) + list(ids)
        scored_until = 1  # position 0 has no context and is never scored; [1, scored_until) are done
        start = 0
        while scored_until < len(seq):
            end = min(start + max_length, len(seq))
            chunk = seq[start:end]
            labels = [-100] * len(chunk)
            for pos in range(max(scored_until, start + 1), end):
                labels[pos - start] = seq[pos]
            windows.append(Window(domain, chunk, labels))
            scored_until = end
            if end == len(seq):
                break
            start += stride
            if start + 1 > scored_until:  # never leave a gap (stride <= max_length - 1 guarantees this)
                start = scored_until - 1
    return windows


def tokenize_domain(tokenizer: Any, domain: str, texts: Sequence[str], max_length: int, stride: int) -> list[Window]:
    """Tokenize texts as `[BOS] body` (`mixnu.text.document_ids`) and make their scoring windows."""
    return make_windows(domain, document_ids(tokenizer, list(texts)), None, max_length, stride)


def run_windows(model: Any, windows: Sequence[Window], batch_size: int, quiet: bool = True,
                on_batch: Callable[[Any, Any, list[str]], None] | None = None,
                description: str = "scoring") -> dict[str, tuple[float, int]]:
    """Forward every window once; return domain -> (summed NLL in nats, scored tokens).

    Windows are sorted by length to minimise padding. `on_batch(attention_mask, labels,
    domains)` is called after each forward (the routing analysis reads its hooks there).
    """
    import torch
    import torch.nn.functional as F

    device = next(model.parameters()).device
    order = sorted(range(len(windows)), key=lambda i: len(windows[i].input_ids))
    totals: dict[str, list[float]] = {}
    n_tokens = sum(sum(1 for x in w.labels if x != -100) for w in windows)
    with progress(quiet, "tok") as bar, torch.no_grad():
        task = bar.add_task(description, total=n_tokens)
        for b in range(0, len(order), batch_size):
            batch = [windows[i] for i in order[b:b + batch_size]]
            width = max(len(w.input_ids) for w in batch)
            ids = torch.zeros(len(batch), width, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros(len(batch), width, dtype=torch.long)
            for r, w in enumerate(batch):
                ids[r, : len(w.input_ids)] = torch.tensor(w.input_ids)
                labels[r, : len(w.labels)] = torch.tensor(w.labels)
                mask[r, : len(w.input_ids)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            # logits (B, T, V) predict the next token: position t scores labels[t + 1]
            nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:].to(device), reduction="none",
                                  ignore_index=-100)  # (B, T-1)
            scored = labels[:, 1:] != -100
            for r, w in enumerate(batch):
                acc = totals.setdefault(w.domain, [0.0, 0])
                acc[0] += float(nll[r].sum())
                acc[1] += int(scored[r].sum())
            if on_batch is not None:
                on_batch(mask, labels, [w.domain for w in batch])
            bar.advance(task, int(scored.sum()))
    return {d: (v[0], int(v[1])) for d, v in totals.items()}


def bits_per_char(nll_nats: float, chars: int) -> float:
    """Bits per character: summed NLL in nats (from `run_windows`) / ln 2 / characters (see the module docstring)."""
    return nll_nats / math.log(2) / max(chars, 1)
