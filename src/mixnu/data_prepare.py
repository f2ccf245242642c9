"""Turn a user's text into mixnu's data folder layout: `prepare_data(PrepareConfig) -> PrepareResult`.

CLI: `mixnu data prepare OUT DOMAIN=SOURCE ...`. Each domain takes one or more sources, read in the
order given:
- a text file: `.txt` (one document per line) or `.jsonl` (text in `text_field`), optionally `.gz`;
- a Hugging Face `datasets` dataset: a folder (written by `save_to_disk`, or one `load_dataset`
  reads) or `hf:NAME` (loaded with `datasets.load_dataset(NAME, split=split)`), text in `text_field`.
Text is NFC-normalised; a document holding line breaks becomes one line per non-blank paragraph.

The split is deterministic and keeps neighbouring lines together, as in the built-in data: the
last `heldout` fraction of each domain's lines (in source order) is held out, the rest trains.

Writes `out/` atomically: `corpus/<domain>.txt`, `eval/<domain>_heldout.txt`,
`eval/dev_sentences.tsv` (`domain<TAB>text`, up to `dev_lines` evenly spaced held-out lines per
domain) and `data.json` (sources, line and character counts, sha256 of each file). `mixnu demo
--data OUT` takes the folder as it is. Raises `DataError` (one line) for a missing source, a field
that does not exist, a domain with no text, or a domain too small to split.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from mixnu.config import StageConfig
from mixnu.errors import DataError
from mixnu.hf import first_line
from mixnu.io import atomic_dir, iter_corpus, sha256_file, write_json, write_text
from mixnu.text import normalize_text

_FILE_SUFFIXES = (".txt", ".jsonl", ".txt.gz", ".jsonl.gz")


class PrepareConfig(StageConfig):
    """Settings of `prepare_data` (CLI: `mixnu data prepare`)."""

    out: Path = Field(description="Output data folder (corpus/, eval/, data.json).")
    sources: dict[str, list[str]] = Field(min_length=1, description="domain -> text files or datasets, in order")
    text_field: str = Field("text", min_length=1, description="JSONL field / dataset column holding the text")
    split: str = Field("train", description="split of a Hugging Face dataset to read")
    heldout: float = Field(0.05, gt=0, lt=0.5, description="fraction of each domain's lines held out (the tail)")
    dev_lines: int = Field(250, ge=0, description="held-out lines per domain copied into dev_sentences.tsv")
    max_lines: int | None = Field(None, ge=2, description="read at most this many lines per domain")
    force: bool = False

    @field_validator("sources")
    @classmethod
    def _domains(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, srcs in v.items():
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or name.endswith("_heldout"):
                raise ValueError(f"domain name {name!r}: use letters, digits, '_', '-', '.' (not ending in _heldout)")
            if not srcs:
                raise ValueError(f"domain {name!r} has no source")
        return v


@dataclass(frozen=True)
class PrepareResult:
    """What `prepare_data` wrote: per domain {sources, lines, train_lines, heldout_lines, chars}."""

    out: Path
    domains: dict[str, dict[str, Any]]
    files: list[str] = field(default_factory=list)


def parse_sources(items: list[str]) -> dict[str, list[str]]:
    """`["law=a.txt", "law=b.jsonl", "tech=hf:NAME"]` -> `{"law": ["a.txt", "b.jsonl"], "tech": ["hf:NAME"]}`."""
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, src = item.partition("=")
        if not sep or not name.strip() or not src.strip():
            raise DataError(f"{item!r}: expected DOMAIN=SOURCE (a .txt/.jsonl[.gz] file, a dataset folder or hf:NAME)")
        out.setdefault(name.strip(), []).append(src.strip())
    return out


def _paragraphs(text: str) -> Iterator[str]:
    for line in normalize_text(text).splitlines():
        if line.strip():
            yield line


def _iter_dataset(src: str, cfg: PrepareConfig) -> Iterator[str]:
    """Texts of a Hugging Face dataset (folder or `hf:NAME`), column `cfg.text_field`."""
    import datasets

    name = src[3:] if src.startswith("hf:") else src
    path = Path(name)
    try:
        if path.is_dir() and any((path / f).is_file() for f in ("dataset_info.json", "dataset_dict.json", "state.json")):
            ds = datasets.load_from_disk(str(path))
        else:
            ds = datasets.load_dataset(name, split=cfg.split)
    except Exception as exc:  # datasets raises many kinds (missing, offline, bad format)
        raise DataError(f"{src}: could not load the dataset ({first_line(exc)})") from None
    if isinstance(ds, datasets.DatasetDict):
        if cfg.split not in ds:
            raise DataError(f"{src}: no split '{cfg.split}' (splits: {', '.join(ds)}); choose one with --split")
        ds = ds[cfg.split]
    if cfg.text_field not in ds.column_names:
        raise DataError(f"{src}: no column '{cfg.text_field}' (columns: {', '.join(ds.column_names)}); "
                        "choose one with --text-field")
    for value in ds[cfg.text_field]:
        if isinstance(value, str):
            yield from _paragraphs(value)


def _iter_source(src: str, cfg: PrepareConfig) -> Iterator[str]:
    path = Path(src)
    if src.startswith("hf:") or path.is_dir():
        yield from _iter_dataset(src, cfg)
        return
    if not path.is_file():
        raise DataError(f"{src}: file not found (give a .txt/.jsonl[.gz] file, a dataset folder or hf:NAME)")
    if not path.name.endswith(_FILE_SUFFIXES):
        raise DataError(f"{src}: unknown file type; give .txt, .jsonl, .txt.gz or .jsonl.gz")
    for doc in iter_corpus(path, text_field=cfg.text_field, allow_empty=True):
        yield from _paragraphs(doc)


def _read_domain(domain: str, srcs: list[str], cfg: PrepareConfig) -> list[str]:
    lines: list[str] = []
    for src in srcs:
        for line in _iter_source(src, cfg):
            lines.append(line)
            if cfg.max_lines is not None and len(lines) >= cfg.max_lines:
                return lines
    if not lines:
        raise DataError(f"domain '{domain}': no text in {', '.join(srcs)} (only blank lines or no rows); "
                        "give it a source with text")
    return lines


def _split(domain: str, lines: list[str], frac: float) -> tuple[list[str], list[str]]:
    n_held = math.floor(len(lines) * frac)
    if n_held < 1 or len(lines) - n_held < 1:
        need = math.ceil(1 / frac)
        raise DataError(f"domain '{domain}': {len(lines)} line(s) is too few to hold out {frac:.0%} "
                        f"(at least {need} lines needed); add text or raise --heldout")
    return lines[:-n_held], lines[-n_held:]


def _dev_sample(held: list[str], k: int) -> list[str]:
    """Up to `k` evenly spaced lines (deterministic)."""
    if k >= len(held):
        return list(held)
    return [held[(i * len(held)) // k] for i in range(k)]


def prepare_data(cfg: PrepareConfig) -> PrepareResult:
    """Read every domain's sources, split off the held-out tail, and write the data folder (see module doc)."""
    split = {}
    for domain, srcs in cfg.sources.items():  # read everything before writing anything
        split[domain] = _split(domain, _read_domain(domain, srcs, cfg), cfg.heldout)
    info: dict[str, dict[str, Any]] = {}
    with atomic_dir(cfg.out, force=cfg.force) as tmp:
        dev: list[str] = []
        for domain, (train, held) in split.items():
            write_text(tmp / "corpus" / f"{domain}.txt", "\n".join(train) + "\n")
            write_text(tmp / "eval" / f"{domain}_heldout.txt", "\n".join(held) + "\n")
            dev += [f"{domain}\t{t.replace(chr(9), ' ')}" for t in _dev_sample(held, cfg.dev_lines)]
            info[domain] = {"sources": cfg.sources[domain], "lines": len(train) + len(held),
                            "train_lines": len(train), "heldout_lines": len(held),
                            "train_chars": sum(map(len, train)), "heldout_chars": sum(map(len, held))}
        if dev:
            write_text(tmp / "eval" / "dev_sentences.tsv", "\n".join(dev) + "\n")
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        write_json(tmp / "data.json", {
            "config": cfg.model_dump(mode="json", exclude={"force", "out"}), "domains": info,
            "sha256": {f: sha256_file(tmp / f) for f in files}})
    return PrepareResult(out=cfg.out, domains=info, files=[*files, "data.json"])
