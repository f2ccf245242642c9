"""Training data for `mixnu train`: tokenise corpus files and pack them into blocks.

- `tokenize_docs` tokenises a corpus file with the model's tokenizer through `datasets.map`, caching the
  result as an Arrow file keyed by (file sha256, tokenizer fingerprint, line range), so a second run on the
  same data starts in milliseconds.
- `pack_blocks` concatenates documents (each `[BOS] ids [EOS]`) into one stream and cuts it into
  fixed-length blocks `(N, L)`; the tail shorter than a block is dropped.
- Held-out text is not scored here: `mixnu.train.evaluate` uses `mixnu.perplexity`'s one definition of
  bits per character (each document BOS + text, EOS not scored), the same code as `mixnu ppl`.
- `batch_indices` is the data order: a seeded permutation of all blocks per epoch, a pure function of
  (seed, position), so a resumed run reads exactly the blocks the uninterrupted run would have read.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mixnu.errors import DataError
from mixnu.io import read_corpus, sha256_file
from mixnu.seeds import seed_for
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


def split_docs(docs: list[str], part: str, eval_fraction: float) -> list[str]:
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

    `part` is `all`, `train` or `eval` (see `split_docs`). The tokenised documents are written by
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
        docs = split_docs(read_corpus(path, max_lines=max_lines), part, eval_fraction)

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


def batch_indices(start: int, count: int, n_blocks: int, seed: int) -> torch.Tensor:
    """Block indices at global positions `[start, start+count)` of the data order.

    The order is epoch after epoch of a permutation of all blocks seeded by `(seed, epoch)`.
    """
    out = torch.empty(count, dtype=torch.long)
    pos, filled = start, 0
    while filled < count:
        epoch, offset = divmod(pos, n_blocks)
        gen = torch.Generator().manual_seed(seed_for(seed, epoch))
        perm = torch.randperm(n_blocks, generator=gen)
        take = min(count - filled, n_blocks - offset)
        out[filled: filled + take] = perm[offset: offset + take]
        filled += take
        pos += take
    return out
