"""Extend a tokenizer with pieces of a new script (Korean Hangul): `mixnu tokenizer extend`.

Entry point: `extend_tokenizer(ExtendConfig) -> ExtendResult`. A SentencePiece BPE base (Llama-2's)
is extended here (`extend_sentencepiece`); a byte-level BPE base (Llama-3, Qwen2: a folder with only
`tokenizer.json`, or a `.gguf` vocab file) by `mixnu.tokenizer.bytelevel`.

How the SentencePiece extension works, and why (see docs/tokenizer.md):
1. One streaming pass over the corpus counts characters and lines; a second keeps an evenly spaced
   sample of at most `sample_lines` lines (deterministic, no RNG; `mixnu.tokenizer.corpus`).
2. Single characters the base lacks are chosen by the coverage policy of `mixnu.tokenizer.coverage`:
   characters seen in the corpus (Hanja and symbols at least `*_min_count` times), then sets fixed by
   standards, whatever the corpus holds: KS X 1001's 2,350 syllables (or all 11,172), the
   compatibility and conjoining jamo, the first `hanja_prior` Hanja of a frequency-ranked KS X 1001
   list, and the punctuation and symbols Korean text uses. They take at most `char_share` (default
   half) of the budget.
3. A Korean SentencePiece BPE model is trained on the sample (identity normalisation, one thread,
   fixed seed), so the same inputs give the same pieces. Its multi-character pieces that hold Hangul
   (`piece_filter`) fill the rest of the budget, in the order the Korean model ranks them. Pieces
   without Hangul would change how English, code and punctuation tokenize, so they are never added.
4. Added pieces get strictly decreasing, distinct scores below the base's lowest ordinary score, so
   SentencePiece and the fast (merge-list) tokenizer agree on the merge order.
5. Every added piece must be reachable (its surface text encodes to that one piece); unreachable
   ones are dropped and the next candidates take their place until the vocabulary has exactly N pieces.
6. The output folder holds the extended `tokenizer.model`, a `tokenizer.json` whose merges are the
   base's merges with the added pieces' merges inserted where their scores fall (`mixnu.tokenizer.fast`),
   the base's tokenizer configs, and `mixnu_tokenizer.json` (provenance: base sha256, corpus files and
   sizes, settings, counts). It adds BOS like Llama-2's published tokenizer
   (`mixnu.tokenizer.special.set_special_tokens`); a base folder with tokens added after its pieces
   (`<pad>` at 32000) is refused before any work.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mixnu.errors import TokenizerError
from mixnu.io import atomic_dir, check_output, sha256_file
from mixnu.tokenizer.bytelevel import extend_byte_level_base
from mixnu.tokenizer.config import PROVENANCE_FILE, ExtendConfig, ExtendResult, write_provenance
from mixnu.tokenizer.corpus import corpus_sample, corpus_stats
from mixnu.tokenizer.coverage import select_chars
from mixnu.tokenizer.fast import base_hf_files, extended_tokenizer_json, verify_fast
from mixnu.tokenizer.sentencepiece import (
    build_proto,
    check_sp_bpe,
    load_sp_proto,
    resolve_base,
    train_and_choose,
)
from mixnu.tokenizer.special import check_no_added_tokens, set_special_tokens


def extend_tokenizer(cfg: ExtendConfig) -> ExtendResult:
    """Extend `cfg.base` with Korean pieces learnt from `cfg.corpus` to exactly `cfg.vocab_size` pieces.

    Inputs: a SentencePiece BPE base (folder or `tokenizer.model`), or a byte-level BPE base (a folder
    with only `tokenizer.json`, or a `.gguf` vocab file: new tokens and merges appended to its
    tokenizer.json, `mixnu.tokenizer.bytelevel`); UTF-8 corpus files. Writes the folder `cfg.out`
    atomically (nothing is written on any error): `tokenizer.model` (SentencePiece bases),
    `tokenizer.json`, `tokenizer_config.json` (+ the base's other configs), `mixnu_tokenizer.json`.
    Returns counts and timings. Same inputs and settings give byte-identical files. Raises
    `OutputExistsError`, `TokenizerError` (base), `DataError` (corpus).
    """
    t0 = time.perf_counter()
    check_output(cfg.out, cfg.force)
    if is_byte_level_base(cfg.base):
        return extend_byte_level_base(cfg, t0)
    return extend_sentencepiece(cfg, t0)


def is_byte_level_base(base: str | Path) -> bool:
    """A `.gguf` file, or a folder with `tokenizer.json` but no `tokenizer.model` (byte-level BPE candidates)."""
    given = Path(base)
    return given.suffix == ".gguf" or (given.is_dir() and not (given / "tokenizer.model").is_file()
                                       and (given / "tokenizer.json").is_file())


def extend_sentencepiece(cfg: ExtendConfig, t0: float) -> ExtendResult:
    """`extend_tokenizer` for a SentencePiece BPE base (steps 1–6 of the module docstring)."""
    model_path, base_dir = resolve_base(cfg.base)
    base = load_sp_proto(model_path)
    check_sp_bpe(base, model_path)
    n_base = len(base.pieces)
    check_no_added_tokens(base_dir, n_base)
    if cfg.vocab_size <= n_base:
        raise TokenizerError(f"--vocab-size {cfg.vocab_size} must be larger than the base's {n_base} pieces")
    chars, corpus_info, total = corpus_stats(list(cfg.corpus), cfg.quiet)
    budget = cfg.vocab_size - n_base
    new_chars, char_counts = select_chars(chars, {p.piece for p in base.pieces}, cfg, budget)
    lines = list(corpus_sample(list(cfg.corpus), total, cfg.sample_lines))
    # Korean model size: the pieces still needed, with headroom, plus one per distinct character of
    # the corpus (a sentencepiece vocabulary holds its characters too).
    train_vocab = int((budget - len(new_chars)) * cfg.train_vocab_factor) + len({c for c in chars if not c.isspace()}) + 16
    pieces, dropped, korean, train_vocab = train_and_choose(cfg, base, lines, new_chars, budget, train_vocab)
    proto = build_proto(base, pieces)
    added_by_kind = {"hangul_pieces": len(pieces) - len(new_chars), **char_counts}

    with atomic_dir(cfg.out, force=cfg.force) as stage:
        special = _write_tokenizer_files(stage, cfg, model_path, base_dir, base, proto, lines)
        write_provenance(
            stage / PROVENANCE_FILE, cfg, tool="tokenizer extend",
            base={"path": str(model_path), "sha256": sha256_file(model_path), "pieces": n_base},
            corpus=corpus_info, library="sentencepiece", special_tokens=special,
            korean_model={"requested_vocab": train_vocab, "pieces": len(korean.pieces), "sample_lines": len(lines)},
            result={"pieces": len(proto.pieces), "added": len(pieces), "added_by_kind": added_by_kind,
                    "unreachable_dropped": dropped, "tokenizer_model_sha256": sha256_file(stage / "tokenizer.model")},
        )
        files = sorted(p.name for p in stage.iterdir())
    return ExtendResult(
        out=Path(cfg.out), vocab_size=len(proto.pieces), base_vocab_size=n_base, added=len(pieces),
        added_by_kind=added_by_kind, unreachable_dropped=dropped, korean_model_vocab=len(korean.pieces),
        sample_lines=len(lines), seconds=round(time.perf_counter() - t0, 2), files=files,
    )


def _write_tokenizer_files(stage: Path, cfg: ExtendConfig, model_path: Path, base_dir: Path | None, base: Any,
                           proto: Any, lines: list[str]) -> dict[str, Any]:
    """Write tokenizer.json, tokenizer.model and the configs into `stage`; check fast == sentencepiece
    on up to `cfg.verify_lines` sample lines. Returns the special-token settings written."""
    base_json = base_hf_files(model_path, base_dir, stage)
    data = extended_tokenizer_json(base_json, base, proto)
    special = set_special_tokens(stage, data, base)
    (stage / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (stage / "tokenizer.model").write_bytes(proto.SerializeToString())
    if cfg.verify_lines:
        verify_fast(stage, proto, lines[:: max(1, len(lines) // cfg.verify_lines)])
    return special
