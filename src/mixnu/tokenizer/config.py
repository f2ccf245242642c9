"""What `mixnu tokenizer extend` takes, returns and records, shared by both extenders.

- `ExtendConfig` / `ExtendResult`: the settings and the result of `extend_tokenizer` (`mixnu.tokenizer.extend`),
  for SentencePiece BPE bases (`mixnu.tokenizer.sentencepiece`) and byte-level BPE bases
  (`mixnu.tokenizer.bytelevel`) alike.
- `write_provenance`: `mixnu_tokenizer.json` (`PROVENANCE_FILE`) in the output folder: mixnu's version,
  the base (path, sha256, size), every corpus file (path, bytes, lines, sha256), the settings, the
  library version, and what each extender adds (counts, the Korean model's size).
- `copy_base_configs`: the base folder's configs that the output keeps as they are.

Leaf of the package: imports nothing from `mixnu.tokenizer`.
"""

from __future__ import annotations

import importlib.metadata as md
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

import mixnu
from mixnu.config import StageConfig
from mixnu.io import write_json

PROVENANCE_FILE = "mixnu_tokenizer.json"
# Configs of a base folder copied unchanged into the output (special tokens, chat template).
BASE_CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
# Fields of ExtendConfig that are paths or switches of this run, not settings of the extension.
_NOT_SETTINGS = {"out", "force", "quiet", "base", "corpus"}


class ExtendConfig(StageConfig):
    """Settings of `extend_tokenizer` (CLI: `mixnu tokenizer extend`)."""

    base: Path = Field(description="Base: tokenizer folder or tokenizer.model (SentencePiece BPE), or a "
                                   "tokenizer.json-only folder or .gguf file (byte-level BPE).")
    corpus: list[Path] = Field(min_length=1, description="Training text: .txt / .jsonl (optionally .gz) files.")
    vocab_size: int = Field(46262, gt=0, description="Total pieces in the result (base + added), exactly.")
    out: Path = Field(description="Output tokenizer folder.")
    force: bool = False
    sample_lines: int = Field(200_000, gt=0, description="At most this many corpus lines train the Korean BPE.")
    train_vocab_factor: float = Field(1.4, ge=1.0, description="Korean model size = factor × pieces needed.")
    piece_filter: Literal["hangul", "with-hangul"] = Field(
        "with-hangul", description="hangul: only Hangul (+ leading ▁); with-hangul: any piece holding Hangul.")
    cross_words: bool = Field(True, description="Let pieces span spaces (frequent Korean phrases).")
    cross_scripts: bool = Field(True, description="Let pieces mix Hangul with punctuation ('다.', '(이').")
    syllables: Literal["seen", "ksx1001+seen", "all", "none"] = Field(
        "ksx1001+seen", description="Syllables added as single pieces: seen in the corpus, also all 2,350 of "
                                    "KS X 1001, or all 11,172 modern syllables.")
    jamo: bool = Field(True, description="Add all Hangul compatibility jamo (ㅋ, ㅠ, ㆍ …) as single pieces.")
    conjoining_jamo: Literal["modern", "all", "none"] = Field(
        "modern", description="Conjoining jamo added as single pieces: the 67 of modern Hangul (ᄏ, ᅲ …), all 256 "
                              "of U+1100–11FF (with Old Hangul), or none.")
    hanja_prior: int = Field(1800, ge=0, description="Add the first N Hanja of the frequency prior "
                                                     "(KS X 1001, education list first; 0 = none).")
    korean_symbols: bool = Field(True, description="Add the punctuation and symbols Korean text uses "
                                                   "(KS X 1001's, CJK, half/full-width: ｢ ｣ ․ ◯ ㎏ …).")
    hanja_min_count: int = Field(2, ge=0, description="Also add Hanja seen at least this often (0 = none seen).")
    symbols_min_count: int = Field(
        2, ge=0, description="Also add other characters the base lacks (①, ㎡ …) seen this often (0 = none).")
    char_share: float = Field(0.5, gt=0, le=1, description="Single characters take at most this share of "
                                                          "the added pieces (the policy's last ones are cut).")
    max_piece_length: int = Field(16, ge=2, le=64)
    seed: int = 0
    num_threads: int = Field(1, ge=1, description="sentencepiece training threads (1 = reproducible).")
    verify_lines: int = Field(2000, ge=0, description="Sample lines checked slow == fast before writing.")
    quiet: bool = True

    @field_validator("conjoining_jamo", mode="before")
    @classmethod
    def _jamo_switch(cls, v: object) -> object:
        # `true` / `false` from configs written before the three-way choice: all 256 / none.
        return {True: "all", False: "none"}.get(v, v) if isinstance(v, bool) else v

    @field_validator("corpus")
    @classmethod
    def _no_duplicates(cls, v: list[Path]) -> list[Path]:
        if len({str(p) for p in v}) != len(v):
            raise ValueError("the same corpus file is listed twice")
        return v


@dataclass(frozen=True)
class ExtendResult:
    """What `extend_tokenizer` built."""

    out: Path
    vocab_size: int
    base_vocab_size: int
    added: int
    added_by_kind: dict[str, int]
    unreachable_dropped: int
    korean_model_vocab: int
    sample_lines: int
    seconds: float
    files: list[str] = field(default_factory=list)



def copy_base_configs(base_dir: Path | None, stage: Path) -> None:
    """Copy the `BASE_CONFIG_FILES` that the base folder `base_dir` holds into `stage` (None: nothing)."""
    for name in BASE_CONFIG_FILES:
        if base_dir is not None and (base_dir / name).is_file():
            shutil.copy(base_dir / name, stage / name)


def write_provenance(path: Path, cfg: ExtendConfig, *, tool: str, base: dict[str, Any],
                     corpus: list[dict[str, Any]], library: str, **sections: Any) -> None:
    """Write `mixnu_tokenizer.json` at `path` (atomically), keys in this order:

    `tool` ("mixnu VERSION " + `tool`), `base`, `corpus` (`corpus.corpus_stats`' file list), `settings`
    (`cfg` without paths and switches), `library` -> its installed version (None if absent), then
    `sections` in the order given (e.g. `special_tokens`, `korean_model`, `result`).
    """
    write_json(path, {
        "tool": f"mixnu {mixnu.__version__} {tool}",
        "base": base,
        "corpus": corpus,
        "settings": cfg.model_dump(mode="json", exclude=_NOT_SETTINGS),
        library: library_version(library),
        **sections,
    })


def library_version(lib: str) -> str | None:
    """The installed version of the distribution `lib`, or None if it is not installed."""
    try:
        return md.version(lib)
    except md.PackageNotFoundError:
        return None
