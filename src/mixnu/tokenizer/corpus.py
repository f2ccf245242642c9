"""Reading the corpus for `mixnu tokenizer extend`: one counting pass, then an evenly spaced sample.

Shared by both extenders (`mixnu.tokenizer.sentencepiece` via `mixnu.tokenizer.extend`, and
`mixnu.tokenizer.bytelevel`). Leaf of the package: imports nothing from `mixnu.tokenizer`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mixnu.console import progress
from mixnu.io import iter_corpus, sha256_file


def corpus_stats(paths: list[Path], quiet: bool) -> tuple[Counter, list[dict[str, Any]], int]:
    """(character counts, one dict per file, total lines) over every corpus file, in one streaming pass.

    Each dict: `path`, `bytes`, `lines`, `sha256` (what provenance records). Lines come from
    `io.iter_corpus` (NFC, blank lines skipped; `.txt` / `.jsonl`, optionally gzipped).
    """
    chars: Counter = Counter()
    info, total = [], 0
    with progress(quiet, "lines") as bar:
        task = bar.add_task("reading corpus", total=None)
        for path in paths:
            n = 0
            for line in iter_corpus(path):
                chars.update(line)
                n += 1
            bar.advance(task, n)
            info.append({"path": str(path), "bytes": path.stat().st_size, "lines": n, "sha256": sha256_file(path)})
            total += n
    return chars, info, total


def corpus_sample(paths: list[Path], total: int, cap: int) -> Iterator[str]:
    """Every k-th line over all files, so that at most `cap` of their `total` lines come out.

    Deterministic (no RNG): the same files and `cap` give the same lines, in file order.
    """
    step = max(1, -(-total // cap))
    i = 0
    for path in paths:
        for line in iter_corpus(path):
            if i % step == 0:
                yield line
            i += 1
