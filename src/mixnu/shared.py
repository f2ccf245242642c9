"""Where the shared, read-only data lives (real corpora, eval text, real tokenizers).

`MIXNU_SHARED`, when set, replaces the default `../shared` (beside the repository root) everywhere:
tests, the demo and the benchmarks. The data is never copied into the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

from mixnu.errors import DataError

DOMAINS = ("law", "tech", "daily", "literature")


def shared_dir() -> Path:
    """The shared folder: `$MIXNU_SHARED`, else `../shared` beside the repo, else `./../shared`."""
    env = os.environ.get("MIXNU_SHARED")
    if env:
        return Path(env).expanduser().resolve()
    repo_root = Path(__file__).resolve().parents[2]
    for candidate in (repo_root.parent / "shared", Path.cwd().parent / "shared"):
        if candidate.is_dir():
            return candidate.resolve()
    return (repo_root.parent / "shared").resolve()


def data_dir() -> Path:
    """`<shared>/data`, or a `DataError` saying where it was expected and how to point elsewhere."""
    path = shared_dir() / "data"
    if not path.is_dir():
        raise DataError(
            f"shared data not found at {path}; put the shared folder beside the repository "
            "or set MIXNU_SHARED to its path"
        )
    return path


def llama2_tokenizer_model() -> Path:
    """The real Llama-2 SentencePiece model in the shared data."""
    return data_dir() / "tokenizers" / "llama-2" / "tokenizer.model"


def corpus_files(folder: str | Path | None = None) -> dict[str, Path]:
    """Map domain -> corpus file in `folder` (default `<shared>/data/corpus`).

    A domain file is any `NAME.txt`, `NAME.jsonl` (optionally `.gz`) in the folder.
    """
    folder = Path(folder) if folder is not None else data_dir() / "corpus"
    if not folder.is_dir():
        raise DataError(f"{folder}: data folder not found")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        name = path.name[:-3] if path.name.endswith(".gz") else path.name
        for ext in (".txt", ".jsonl"):
            if name.endswith(ext) and path.is_file():
                found[name[: -len(ext)]] = path
    if not found:
        raise DataError(f"{folder}: no domain files (NAME.txt or NAME.jsonl, optionally .gz) in this folder")
    return found


def heldout_files(folder: str | Path | None = None) -> dict[str, Path]:
    """Map domain -> held-out eval file (`<shared>/data/eval/<domain>_heldout.txt`)."""
    folder = Path(folder) if folder is not None else data_dir() / "eval"
    out = {p.name[: -len("_heldout.txt")]: p for p in sorted(folder.glob("*_heldout.txt"))}
    if not out:
        raise DataError(f"{folder}: no *_heldout.txt files")
    return out
