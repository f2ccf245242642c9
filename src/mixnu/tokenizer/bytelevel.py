"""Extend a byte-level BPE tokenizer (GPT-2 style: Llama-3, Qwen2) with Korean tokens and merges.

Used by `mixnu.tokenizer.extend.extend_tokenizer` when the base is a `tokenizer.json`-only folder or a GGUF
vocab file whose model is byte-level BPE. The base's vocabulary and merges stay as they are; new
tokens get the next free ids and their merges go after the base's (lowest priority), so text that
never forms a new token keeps its ids exactly.

1. A byte-level BPE is trained on the corpus sample with the base's own normalizer and pre-tokenizer
   (`tokenizers`, so its words split exactly as the base's do).
2. Its merges, in rank order, are kept when the merged token holds a whole Hangul character and is
   new to the base, and when both parts are in the vocabulary (base or kept before).
3. A new token is kept only if encoding its text yields exactly that token; unreachable ones are
   dropped and the next candidates take their place, until the vocabulary has exactly N entries.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mixnu.charsets import byte_decoder, is_hangul_char
from mixnu.errors import DataError, TokenizerError
from mixnu.io import atomic_dir, sha256_file
from mixnu.tokenizer.config import (
    PROVENANCE_FILE,
    ExtendConfig,
    ExtendResult,
    copy_base_configs,
    write_provenance,
)
from mixnu.tokenizer.corpus import corpus_sample, corpus_stats


def is_byte_level(spec: dict[str, Any]) -> bool:
    """A BPE `tokenizer.json` whose pre-tokenizer or decoder is ByteLevel."""
    text = json.dumps({k: spec.get(k) for k in ("pre_tokenizer", "decoder")})
    return spec.get("model", {}).get("type") == "BPE" and '"ByteLevel"' in text


def _text_of(token: str, decoder: dict[str, int]) -> str | None:
    """The text of a byte-level token, or None if it is not whole UTF-8 characters."""
    try:
        return bytes(decoder[c] for c in token).decode("utf-8")
    except (KeyError, UnicodeDecodeError):
        return None


def hangul_bound(data: bytes) -> bool:
    """True if these bytes can only occur in text holding Hangul.

    Either they hold a whole Hangul character, or they are whole characters followed by the start
    of a Hangul syllable (lead byte EB–ED, or EA with a second byte ≥ B0: U+AC00–D7FF). Such partial
    tokens are the steps by which byte-level BPE builds a syllable from its three bytes.
    """
    text = data.decode("utf-8", errors="ignore")
    if any(is_hangul_char(c) for c in text):
        return True
    for cut in (1, 2):  # a trailing 1- or 2-byte prefix of a 3-byte character
        head, tail = data[:-cut], data[-cut:]
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if tail[0] in (0xEB, 0xEC, 0xED) and all(0x80 <= b <= 0xBF for b in tail[1:]):
            return tail[0] != 0xED or len(tail) == 1 or tail[1] <= 0x9F
        if tail[0] == 0xEA and len(tail) == 2 and 0xB0 <= tail[1] <= 0xBF:
            return True
    return False


def base_size(spec: dict[str, Any]) -> int:
    """Number of ids the base uses (model vocab and added tokens): new ids start here."""
    ids = list(spec["model"]["vocab"].values()) + [t["id"] for t in spec.get("added_tokens", [])]
    return max(ids) + 1


def train_korean_bpe(spec: dict[str, Any], lines: list[str], vocab_size: int) -> list[tuple[str, str]]:
    """Merges (rank order) of a byte-level BPE trained on `lines` with the base's pre-tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    shell = json.loads(tok.to_str())
    shell["normalizer"], shell["pre_tokenizer"] = spec.get("normalizer"), spec.get("pre_tokenizer")
    tok = Tokenizer.from_str(json.dumps(shell))
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer=trainer)
    merges = json.loads(tok.to_str())["model"]["merges"]
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges]


def extend_byte_level(spec: dict[str, Any], lines: list[str], vocab_size: int,
                      train_factor: float) -> tuple[dict[str, Any], int, int, int]:
    """(extended tokenizer.json dict, tokens added, unreachable dropped, merges trained)."""
    n_base = base_size(spec)
    budget = vocab_size - n_base
    decoder = byte_decoder()
    base_vocab = dict(spec["model"]["vocab"])
    train_vocab = int(budget * train_factor) + 512
    for _attempt in range(4):
        merges = train_korean_bpe(spec, lines, train_vocab)
        cands = []
        for a, b in merges:
            if a + b not in base_vocab and hangul_bound(bytes(decoder[c] for c in a + b)):
                cands.append((a, b))
        try:
            data, dropped = _choose(spec, cands, budget, n_base)
            return data, budget, dropped, len(merges)
        except DataError:
            if len(merges) < train_vocab - 256 - 10:  # the corpus cannot give more merges
                raise
            train_vocab = int(train_vocab * 1.5)
    raise DataError("the corpus does not yield enough Korean tokens; give more text or a smaller --vocab-size")


def _choose(spec: dict[str, Any], cands: list[tuple[str, str]], budget: int,
            n_base: int) -> tuple[dict[str, Any], int]:
    """Keep the first `budget` candidate merges whose parts exist and whose token is reachable."""
    from tokenizers import Tokenizer

    decoder = byte_decoder()
    base_merges = spec["model"]["merges"]
    as_lists = bool(base_merges) and isinstance(base_merges[0], list)
    dropped, banned = 0, set()
    for _ in range(50):
        vocab, chosen = dict(spec["model"]["vocab"]), []
        for a, b in cands:
            if len(chosen) == budget:
                break
            if a + b in banned or a + b in vocab or a not in vocab or b not in vocab:
                continue
            vocab[a + b] = n_base + len(chosen)
            chosen.append((a, b))
        if len(chosen) < budget:
            raise DataError("the corpus does not yield enough Korean tokens; give more text or a smaller --vocab-size")
        data = json.loads(json.dumps(spec))
        data["model"]["vocab"] = vocab
        data["model"]["merges"] = list(base_merges) + [[a, b] if as_lists else f"{a} {b}" for a, b in chosen]
        tok = Tokenizer.from_str(json.dumps(data))
        # whole-character tokens must encode to themselves; partial ones (a syllable's first bytes)
        # are steps towards them and are kept if some kept whole token needs them
        whole = [(a, b) for a, b in chosen if _text_of(a + b, decoder) is not None]
        got = tok.encode_batch([_text_of(a + b, decoder) for a, b in whole], add_special_tokens=False)
        bad = {a + b for (a, b), e in zip(whole, got, strict=True) if e.ids != [vocab[a + b]]}
        if not bad:
            return data, dropped
        dropped += len(bad)
        banned |= bad
    raise TokenizerError("could not make every added token reachable; this is a bug in mixnu")


def extend_byte_level_base(cfg: ExtendConfig, t0: float) -> ExtendResult:
    """`extend_tokenizer` for a byte-level BPE base (folder with tokenizer.json only, or .gguf)."""
    base = Path(cfg.base)
    spec, tok = load_byte_level_base(base)
    n_base = base_size(spec)
    if cfg.vocab_size <= n_base:
        raise TokenizerError(f"--vocab-size {cfg.vocab_size} must be larger than the base's {n_base} tokens")
    _chars, corpus_info, total = corpus_stats(list(cfg.corpus), cfg.quiet)
    lines = list(corpus_sample(list(cfg.corpus), total, cfg.sample_lines))
    data, added, dropped, n_merges = extend_byte_level(spec, lines, cfg.vocab_size, cfg.train_vocab_factor)
    with atomic_dir(cfg.out, force=cfg.force) as stage:
        tok.save_pretrained(stage)
        copy_base_configs(base if base.is_dir() else None, stage)
        (stage / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        if cfg.verify_lines:
            verify_byte_level(spec, data, lines[:: max(1, len(lines) // cfg.verify_lines)])
        src = base if base.is_file() else base / "tokenizer.json"
        write_provenance(
            stage / PROVENANCE_FILE, cfg, tool="tokenizer extend (byte-level BPE)",
            base={"path": str(src), "sha256": sha256_file(src), "tokens": n_base}, corpus=corpus_info,
            library="tokenizers", korean_model={"merges": n_merges, "sample_lines": len(lines)},
            result={"tokens": n_base + added, "added": added, "unreachable_dropped": dropped},
        )
        files = sorted(p.name for p in stage.iterdir())
    return ExtendResult(
        out=Path(cfg.out), vocab_size=n_base + added, base_vocab_size=n_base, added=added,
        added_by_kind={"hangul_tokens": added}, unreachable_dropped=dropped, korean_model_vocab=n_merges,
        sample_lines=len(lines), seconds=round(time.perf_counter() - t0, 2), files=files,
    )


def verify_byte_level(spec: dict[str, Any], data: dict[str, Any], sample: list[str]) -> None:
    """Guard against a bug: on `sample` lines, text without Hangul keeps the base's (`spec`) ids under
    the extended tokenizer (`data`), and decode(encode(line)) gives the line back."""
    from tokenizers import Tokenizer

    new, old = Tokenizer.from_str(json.dumps(data)), Tokenizer.from_str(json.dumps(spec))
    plain = ["".join(c for c in ln if not is_hangul_char(c)) for ln in sample]
    if [e.ids for e in new.encode_batch(plain, add_special_tokens=False)] != \
            [e.ids for e in old.encode_batch(plain, add_special_tokens=False)]:
        raise TokenizerError("text without Hangul changed ids; this is a bug in mixnu")
    ids = [e.ids for e in new.encode_batch(sample, add_special_tokens=False)]
    if any(new.decode(x, skip_special_tokens=False) != t for x, t in zip(ids, sample, strict=True)):
        raise TokenizerError("decode(encode(x)) != x on sample lines; this is a bug in mixnu")


def load_byte_level_base(base: Path) -> tuple[dict[str, Any], Any]:
    """(tokenizer.json dict, transformers tokenizer) of a tokenizers-only folder or a GGUF vocab file."""
    from transformers import AutoTokenizer

    try:
        if base.suffix == ".gguf":
            tok = AutoTokenizer.from_pretrained(base.parent, gguf_file=base.name)
        else:
            tok = AutoTokenizer.from_pretrained(base)
    except Exception as exc:  # transformers raises many kinds for a broken folder or file
        raise TokenizerError(f"{base}: transformers cannot load this tokenizer ({type(exc).__name__})") from None
    if not hasattr(tok, "backend_tokenizer"):
        raise TokenizerError(f"{base}: no fast tokenizer; extend supports SentencePiece BPE or byte-level BPE")
    spec = json.loads(tok.backend_tokenizer.to_str())
    if not is_byte_level(spec):
        raise TokenizerError(
            f"{base}: neither a SentencePiece BPE nor a byte-level BPE tokenizer; extend supports those two")
    return spec, tok
