"""Training data for `mixnu train`: tokenise corpus files, pack them into blocks, and score text in bits/char.

- `tokenize_docs` tokenises a corpus file with the model's tokenizer through `datasets.map`, caching the
  result as an Arrow file keyed by (file sha256, tokenizer fingerprint, line range), so a second run on the
  same data starts in milliseconds.
- `pack_blocks` concatenates documents (each `[BOS] ids [EOS]`) into one stream and cuts it into
  fixed-length blocks `(N, L)`; the tail shorter than a block is dropped.
- `eval_windows` cuts a held-out stream into windows that overlap by one token, so that every token after
  the first is predicted exactly once: total nats / ln 2 / characters is the text's bits per character.
- `batch_indices` is the data order: a seeded permutation of all blocks per epoch, a pure function of
  (seed, position), so a resumed run reads exactly the blocks the uninterrupted run would have read.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mixnu.errors import DataError
from mixnu.io import read_corpus, sha256_file
from mixnu.text import document_ids

CACHE_VERSION = "2"  # 2: special-token spellings in text are text (issue #11)


def default_cache_dir() -> Path:
    """`$MIXNU_CACHE/tokenized`, else `~/.cache/mixnu/tokenized`."""
    root = os.environ.get("MIXNU_CACHE") or Path.home() / ".cache" / "mixnu"
    return Path(root) / "tokenized"


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of the tokenizer's full vocabulary, merges and special tokens (its `tokenizer.json`)."""
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    blob = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    extra = f"{len(tokenizer)}|{tokenizer.bos_token_id}|{tokenizer.eos_token_id}"
    return hashlib.sha256((blob + extra).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class TokenizedDocs:
    """Documents of one corpus file (or part of it) as token ids.

    `ids`: 1-D int64 stream of every document's `[BOS] ids [EOS]` in file order;
    `doc_lens`: tokens per document; `doc_chars`: characters per document (NFC, without the newline).
    """

    ids: np.ndarray
    doc_lens: np.ndarray
    doc_chars: np.ndarray

    @property
    def n_tokens(self) -> int:
        return int(self.ids.shape[0])

    def first_docs(self, max_tokens: int) -> TokenizedDocs:
        """The leading whole documents holding at most `max_tokens` tokens (at least one document)."""
        ends = np.cumsum(self.doc_lens)
        k = max(1, int(np.searchsorted(ends, max_tokens, side="right")))
        return TokenizedDocs(self.ids[: int(ends[k - 1])], self.doc_lens[:k], self.doc_chars[:k])


def _split_docs(docs: list[str], part: str, eval_fraction: float) -> list[str]:
    """`all`, or the `train` head / `eval` tail (last `eval_fraction` of the documents, at least one)."""
    if part == "all":
        return docs
    n_eval = max(1, int(round(len(docs) * eval_fraction)))
    if len(docs) < 2:
        raise DataError("a corpus with a single document cannot be split for evaluation; pass --eval-data")
    return docs[:-n_eval] if part == "train" else docs[-n_eval:]


def tokenize_docs(path: Path, tokenizer, *, part: str = "all", eval_fraction: float = 0.0,
                  max_lines: int | None = None, cache_dir: Path | None = None) -> TokenizedDocs:
    """Tokenise the documents of `path` (a `.txt`/`.jsonl`[.gz] corpus) with `tokenizer`, with caching.

    `part` is `all`, `train` or `eval` (see `_split_docs`). The tokenised documents are written by
    `datasets.Dataset.map` to `<cache_dir>/<key>.arrow`; a later call with the same file contents,
    tokenizer and split reads that file instead of tokenising again.
    """
    import datasets

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found; check the path")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = hashlib.sha256(
        "|".join([CACHE_VERSION, sha256_file(path), tokenizer_fingerprint(tokenizer), part,
                  f"{eval_fraction:.6g}", str(max_lines)]).encode()
    ).hexdigest()[:24]
    cache_file = cache_dir / f"{key}.arrow"
    if cache_file.is_file():
        try:
            ds = datasets.Dataset.from_file(str(cache_file))
        except Exception:  # a torn cache file: rebuild it
            cache_file.unlink(missing_ok=True)
            ds = None
    else:
        ds = None
    if ds is None:
        docs = _split_docs(read_corpus(path, max_lines=max_lines), part, eval_fraction)

        def encode(batch: dict[str, list[str]]) -> dict[str, list]:
            # `[BOS] body [EOS]`, special-token spellings in the text encoded as text (mixnu.text)
            ids = document_ids(tokenizer, batch["text"], eos=True)
            return {"input_ids": ids, "n_chars": [len(t) for t in batch["text"]]}

        cache_dir.mkdir(parents=True, exist_ok=True)
        was_enabled = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        try:
            ds = datasets.Dataset.from_dict({"text": docs}).map(
                encode, batched=True, batch_size=1000, remove_columns=["text"],
                cache_file_name=str(cache_file), load_from_cache_file=True,
            )
        finally:
            if was_enabled:
                datasets.enable_progress_bars()
    table = ds.data
    col = table.column("input_ids").combine_chunks()
    ids = col.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = col.offsets.to_numpy()
    doc_lens = np.diff(offsets).astype(np.int64)
    doc_chars = table.column("n_chars").to_numpy().astype(np.int64)
    return TokenizedDocs(ids, doc_lens, doc_chars)


def pack_blocks(docs: TokenizedDocs, seq_len: int, source: str = "data") -> torch.Tensor:
    """Cut the token stream into `(N, seq_len)` int64 blocks; `DataError` if it is shorter than one block."""
    n = docs.n_tokens // seq_len
    if n == 0:
        raise DataError(
            f"{source}: only {docs.n_tokens} tokens, shorter than one block of {seq_len}; "
            "give more text or a smaller --seq-len"
        )
    return torch.from_numpy(docs.ids[: n * seq_len].reshape(n, seq_len).copy())


def eval_windows(docs: TokenizedDocs, seq_len: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows `(W, seq_len)` and labels over the stream, overlapping by one token.

    Window k holds tokens `[k(L-1), k(L-1)+L)`; its labels mask nothing but the padding of the last
    window (-100), so over all windows each token 1..T-1 is a prediction target exactly once.
    """
    stream = torch.from_numpy(docs.ids)
    stride = seq_len - 1
    n_win = max(1, math.ceil((stream.numel() - 1) / stride))
    inputs = torch.full((n_win, seq_len), pad_id, dtype=torch.long)
    labels = torch.full((n_win, seq_len), -100, dtype=torch.long)
    for k in range(n_win):
        chunk = stream[k * stride: k * stride + seq_len]
        inputs[k, : chunk.numel()] = chunk
        labels[k, : chunk.numel()] = chunk
    return inputs, labels


def batch_indices(start: int, count: int, n_blocks: int, seed: int) -> torch.Tensor:
    """Block indices at global positions `[start, start+count)` of the data order.

    The order is epoch after epoch of a permutation of all blocks seeded by `(seed, epoch)`.
    """
    out = torch.empty(count, dtype=torch.long)
    pos, filled = start, 0
    while filled < count:
        epoch, offset = divmod(pos, n_blocks)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(n_blocks, generator=gen)
        take = min(count - filled, n_blocks - offset)
        out[filled: filled + take] = perm[offset: offset + take]
        filled += take
        pos += take
    return out


@torch.no_grad()
def sum_nats(model, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int, device) -> tuple[float, int]:
    """Sum of next-token cross-entropy (nats) and number of predicted tokens over windows."""
    total, count = 0.0, 0
    for i in range(0, inputs.shape[0], batch_size):
        x = inputs[i: i + batch_size].to(device)
        y = labels[i: i + batch_size].to(device)
        logits = model(input_ids=x, use_cache=False).logits.float()  # (B, L, V)
        tgt = y[:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100, reduction="sum"
        )
        total += float(nll)
        count += int((tgt != -100).sum())
    return total, count


def bits_per_char(model, docs: TokenizedDocs, seq_len: int, pad_id: int, batch_size: int = 8,
                  device="cpu") -> dict[str, float]:
    """Bits per character of `docs` under `model`: total nats / ln 2 / characters (see `eval_windows`)."""
    was_training = model.training
    model.eval()
    inputs, labels = eval_windows(docs, seq_len, pad_id)
    nats, count = sum_nats(model, inputs, labels, batch_size, device)
    if was_training:
        model.train()
    chars = int(docs.doc_chars.sum())
    return {"loss": nats / max(count, 1), "bpc": nats / math.log(2) / max(chars, 1), "tokens": count,
            "chars": chars}
