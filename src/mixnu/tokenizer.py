"""Extend a SentencePiece BPE tokenizer (Llama-2's) with pieces of a new script (Korean Hangul).

Entry point: `extend_tokenizer(ExtendConfig) -> ExtendResult` (`mixnu tokenizer extend`).
Byte-level BPE bases (Llama-3, Qwen2) are handled by `mixnu.tokenizer_bytelevel`.
Comparison lives in `mixnu.tokenizer_compare` (`compare_tokenizers`, `mixnu tokenizer compare`).

How the extension works, and why (see docs/tokenizer.md):
1. One streaming pass over the corpus counts characters and lines; a second keeps an evenly spaced
   sample of at most `sample_lines` lines (deterministic, no RNG).
2. Single characters the base lacks are chosen by the coverage policy of `mixnu.tokenizer_coverage`:
   characters seen in the corpus (Hanja and symbols at least `*_min_count` times), then sets fixed by
   standards, whatever the corpus holds: KS X 1001's 2,350 syllables (or all 11,172), the
   compatibility and conjoining jamo, the first `hanja_prior` Hanja of a frequency-ranked KS X 1001
   list, and the punctuation and symbols Korean text uses. They take at most half of the budget.
3. A Korean SentencePiece BPE model is trained on the sample (identity normalisation, one thread,
   fixed seed), so the same inputs give the same pieces. Its multi-character pieces that hold Hangul
   (`piece_filter`) fill the rest of the budget, in the order the Korean model ranks them. Pieces
   without Hangul would change how English, code and punctuation tokenize, so they are never added.
4. Added pieces get strictly decreasing, distinct scores below the base's lowest ordinary score, so
   SentencePiece and the fast (merge-list) tokenizer agree on the merge order.
5. Every added piece must be reachable (its surface text encodes to that one piece); unreachable
   ones are dropped and the next candidates take their place until the vocabulary has exactly N pieces.
6. The output folder holds the extended `tokenizer.model`, a `tokenizer.json` whose merges are the
   base's merges with the added pieces' merges inserted where their scores fall, the base's tokenizer
   configs, and `mixnu_tokenizer.json` (provenance: base sha256, corpus files and sizes, settings, counts).
   It adds BOS like Llama-2's published tokenizer (`mixnu.tokenizer_special.set_special_tokens`); a base
   folder with tokens added after its pieces (`<pad>` at 32000) is refused before any work.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

import mixnu
from mixnu.charsets import is_hangul_char, is_hangul_piece
from mixnu.config import StageConfig
from mixnu.console import progress
from mixnu.errors import DataError, TokenizerError
from mixnu.io import atomic_dir, check_output, iter_corpus, sha256_file, write_json
from mixnu.tokenizer_coverage import select_chars
from mixnu.tokenizer_special import check_no_added_tokens, set_special_tokens

PROVENANCE_FILE = "mixnu_tokenizer.json"
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, BYTE = 1, 2, 3, 4, 6  # sentencepiece ModelProto piece types


# ------------------------------------------------------------------------------------ base model
def load_sp_proto(path: str | Path) -> Any:
    """Parse a SentencePiece `ModelProto` from `path`, with one-line errors for unreadable files."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    path = Path(path)
    if not path.is_file():
        raise TokenizerError(f"{path}: tokenizer model not found; give a tokenizer folder or a tokenizer.model file")
    proto = pb.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception:  # protobuf raises DecodeError or RuntimeWarning-ish errors for garbage
        raise TokenizerError(f"{path}: not a readable SentencePiece model (corrupt or another format)") from None
    if len(proto.pieces) == 0:
        raise TokenizerError(f"{path}: not a readable SentencePiece model (no pieces); check the file")
    return proto


def resolve_base(base: str | Path) -> tuple[Path, Path | None]:
    """(tokenizer.model path, base folder or None) for a folder or a `.model` file."""
    base = Path(base)
    if base.is_dir():
        model = base / "tokenizer.model"
        if not model.is_file():
            raise TokenizerError(
                f"{base}: no tokenizer.model or tokenizer.json; extend supports SentencePiece BPE or byte-level BPE")
        return model, base
    if base.is_file():
        return base, None
    raise TokenizerError(f"{base}: no such tokenizer folder or file")


def check_sp_bpe(proto: Any, path: Path) -> None:
    """Refuse anything but a SentencePiece BPE model with byte fallback (what the recipe assumes)."""
    if proto.trainer_spec.model_type != 2:  # 1 UNIGRAM, 2 BPE, 3 WORD, 4 CHAR
        kind = {1: "Unigram", 3: "word", 4: "char"}.get(proto.trainer_spec.model_type, "unknown")
        raise TokenizerError(f"{path}: a SentencePiece {kind} model; extend supports SentencePiece BPE bases only")
    if not proto.trainer_spec.byte_fallback:
        raise TokenizerError(f"{path}: SentencePiece BPE without byte fallback; extend needs byte fallback (as Llama-2)")


# ---------------------------------------------------------------------------------------- config
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
    conjoining_jamo: bool = Field(True, description="Add all 256 conjoining jamo (U+1100–11FF) as single pieces.")
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


# ---------------------------------------------------------------------------------------- corpus
def _corpus_pass(paths: list[Path], quiet: bool) -> tuple[Counter, list[dict[str, Any]], int]:
    """Count characters and lines of every corpus file (streaming)."""
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


def _sample(paths: list[Path], total: int, cap: int) -> Iterator[str]:
    """Every k-th line over all files, so that at most `cap` lines come out (no RNG involved)."""
    step = max(1, -(-total // cap))
    i = 0
    for path in paths:
        for line in iter_corpus(path):
            if i % step == 0:
                yield line
            i += 1


def train_korean_model(lines: list[str], vocab_size: int, cfg: ExtendConfig) -> Any:
    """Train a SentencePiece BPE model on `lines` and return its proto (pieces ranked by merge order)."""
    import io

    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    spm.set_random_generator_seed(cfg.seed)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, model_type="bpe", vocab_size=vocab_size,
        character_coverage=1.0, normalization_rule_name="identity", add_dummy_prefix=True,
        remove_extra_whitespaces=False, split_digits=True, split_by_whitespace=not cfg.cross_words,
        split_by_unicode_script=not cfg.cross_scripts, allow_whitespace_only_pieces=False, byte_fallback=False, hard_vocab_limit=False,
        max_sentencepiece_length=cfg.max_piece_length, max_sentence_length=1 << 16,
        shuffle_input_sentence=False, input_sentence_size=0, num_threads=cfg.num_threads,
        unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1, minloglevel=2,
    )
    proto = pb.ModelProto()
    proto.ParseFromString(buf.getvalue())
    return proto


# ------------------------------------------------------------------------------------- selection
def hangul_candidates(korean: Any, base_pieces: set[str], piece_filter: str = "with-hangul") -> list[str]:
    """Multi-character pieces of the Korean model, in its rank order, that hold Hangul and are new.

    `hangul`: Hangul only, after an optional leading `▁`. `with-hangul`: any piece holding at least
    one Hangul character. Either way, text without Hangul can never use an added piece.
    """
    def keep(piece: str) -> bool:
        if piece_filter == "hangul":
            return is_hangul_piece(piece)
        return any(is_hangul_char(c) for c in piece)

    return [p.piece for p in korean.pieces
            if p.type == NORMAL and len(p.piece) >= 2 and p.piece not in base_pieces and keep(p.piece)]


def build_proto(base: Any, pieces: list[str]) -> Any:
    """A copy of `base` with `pieces` appended (NORMAL), scores strictly decreasing below the base's."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.CopyFrom(base)
    # The base's lowest *ordinary* score (Llama-2 parks "▁▁" at -1e9; float32 cannot step below that).
    floor = min(p.score for p in base.pieces if p.type == NORMAL and p.score > -1e8)
    start = float(int(floor) - 1)
    if start - len(pieces) < -(2**24):
        raise TokenizerError("too many pieces for distinct float32 scores; lower --vocab-size")
    for i, piece in enumerate(pieces):
        new = proto.pieces.add()
        new.piece, new.score, new.type = piece, start - i, NORMAL
    proto.trainer_spec.vocab_size = len(proto.pieces)
    return proto


def _processor(proto: Any, dummy_prefix: bool = True) -> Any:
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    if not dummy_prefix:
        p2 = pb.ModelProto()
        p2.CopyFrom(proto)
        p2.normalizer_spec.add_dummy_prefix = False
        proto = p2
    return spm.SentencePieceProcessor(model_proto=proto.SerializeToString())


def unreachable(proto: Any, start: int) -> list[str]:
    """Added pieces (ids ≥ `start`) whose surface text does not encode to exactly that piece."""
    sp = _processor(proto, dummy_prefix=False)
    pieces = [proto.pieces[i].piece for i in range(start, len(proto.pieces))]
    encoded = sp.encode([p.replace("▁", " ") for p in pieces])
    return [p for p, ids, i in zip(pieces, encoded, range(start, len(proto.pieces)), strict=True) if ids != [i]]


def reachable_share(model_file: str | Path, base_size: int) -> float:
    """Share of added pieces (ids ≥ `base_size`) whose surface text encodes to exactly that piece."""
    proto = load_sp_proto(model_file)
    n_added = len(proto.pieces) - base_size
    return 1.0 - len(unreachable(proto, base_size)) / n_added if n_added > 0 else 1.0


def choose_pieces(base: Any, candidates: list[str], chars: list[str], budget: int) -> tuple[list[str], int]:
    """Pick `budget` pieces: the first reachable candidates, then `chars`; returns (pieces, dropped)."""
    n_multi = budget - len(chars)
    # A piece with a character outside the vocabulary merges in sentencepiece (characters are its
    # starting symbols, known or not) but never in the fast tokenizer (merges need vocab pieces).
    singles = {p.piece for p in base.pieces if len(p.piece) == 1} | set(chars)
    candidates = [p for p in candidates if all(c in singles for c in p)]
    chosen, rest, dropped = candidates[:n_multi], candidates[n_multi:], 0
    for _ in range(100):
        proto = build_proto(base, chosen + chars)
        bad = set(unreachable(proto, len(base.pieces)))
        if not bad:
            return chosen + chars, dropped
        if bad & set(chars):
            raise TokenizerError(f"added characters are unreachable: {sorted(bad & set(chars))[:5]}")
        dropped += len(bad)
        chosen = [p for p in chosen if p not in bad]
        take = n_multi - len(chosen)
        if take > len(rest):
            raise DataError("the corpus does not yield enough Korean pieces; give more text or a smaller --vocab-size")
        chosen, rest = chosen + rest[:take], rest[take:]
    raise TokenizerError("could not make every added piece reachable; this is a bug in mixnu")


# ------------------------------------------------------------------------------- hf tokenizer.json
def base_hf_files(model_path: Path, base_dir: Path | None, staging: Path) -> dict[str, Any]:
    """Write the base's HF configs into `staging` and return its tokenizer.json as a dict.

    A base folder's own `tokenizer.json` / configs are kept (special tokens, post-processor, chat
    template); for a bare `tokenizer.model` transformers converts it, as `from_pretrained` would.
    """
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        src = base_dir
        if src is None:
            src = Path(tmp)
            shutil.copy(model_path, src / "tokenizer.model")
        try:
            tok = AutoTokenizer.from_pretrained(src)
        except Exception as exc:  # transformers raises many kinds for a broken folder
            raise TokenizerError(f"{src}: transformers cannot load this tokenizer ({type(exc).__name__})") from None
        tok.save_pretrained(staging)
    for name in ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if base_dir is not None and (base_dir / name).is_file():
            shutil.copy(base_dir / name, staging / name)
    data = json.loads((staging / "tokenizer.json").read_text(encoding="utf-8"))
    if len(tok) != len(data.get("model", {}).get("vocab", {})):  # an added token check_no_added_tokens missed
        raise TokenizerError(f"{src}: the base tokenizer has {len(tok):,} tokens but {len(data['model']['vocab']):,} "
                             "pieces; extend the bare tokenizer.model instead")
    model = data.get("model", {})
    if model.get("type") != "BPE" or not model.get("byte_fallback"):
        raise TokenizerError(f"{model_path}: its fast tokenizer is not a byte-fallback BPE; cannot extend it")
    return data


def extended_tokenizer_json(base_json: dict[str, Any], base: Any, proto: Any) -> dict[str, Any]:
    """The base tokenizer.json with the added pieces in its vocab and their merges appended.

    Base merges stay exactly as they are (base text keeps its ids). Each added piece contributes
    every split into two vocabulary pieces, in the order of the pieces' scores, which is the order
    SentencePiece merges them in: ties are impossible since scores are distinct.
    """
    data = json.loads(json.dumps(base_json))
    vocab: dict[str, int] = data["model"]["vocab"]
    if len(vocab) != len(base.pieces) or any(vocab.get(p.piece) != i for i, p in enumerate(base.pieces)):
        raise TokenizerError("the base tokenizer.json vocabulary does not match its tokenizer.model; fix the base")
    n_base = len(base.pieces)
    for i in range(n_base, len(proto.pieces)):
        vocab[proto.pieces[i].piece] = i
    merges = data["model"]["merges"]
    as_lists = bool(merges) and isinstance(merges[0], list)
    pairs = [tuple(m) if as_lists else tuple(m.split(" ", 1)) for m in merges]
    score = {p.piece: p.score for p in proto.pieces}
    # The base merges are in score order; the added ones go where their scores fall: after every
    # base piece of ordinary score, before the base's parked pieces (Llama-2's "▁▁" at -1e9).
    first_added = proto.pieces[n_base].score
    cut = next((k for k, (a, b) in enumerate(pairs) if score.get(a + b, -float("inf")) < first_added), len(pairs))
    new = []
    for i in range(n_base, len(proto.pieces)):
        piece = proto.pieces[i].piece
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in vocab and right in vocab:
                new.append([left, right] if as_lists else f"{left} {right}")
    data["model"]["merges"] = merges[:cut] + new + merges[cut:]
    return data


# --------------------------------------------------------------------------------------- entry
def extend_tokenizer(cfg: ExtendConfig) -> ExtendResult:
    """Extend `cfg.base` with Korean pieces learnt from `cfg.corpus` to exactly `cfg.vocab_size` pieces.

    Inputs: a SentencePiece BPE base (folder or `tokenizer.model`), UTF-8 corpus files. A byte-level
    BPE base (a folder with only `tokenizer.json`, or a `.gguf` vocab file) is extended by
    `mixnu.tokenizer_bytelevel` instead (new tokens and merges appended to its tokenizer.json).
    Writes the folder `cfg.out` atomically (nothing is written on any error): `tokenizer.model`,
    `tokenizer.json`, `tokenizer_config.json` (+ the base's other configs), `mixnu_tokenizer.json`.
    Returns counts and timings. Same inputs and settings give byte-identical files.
    """
    t0 = time.perf_counter()
    check_output(cfg.out, cfg.force)
    given = Path(cfg.base)
    if given.suffix == ".gguf" or (given.is_dir() and not (given / "tokenizer.model").is_file()
                                   and (given / "tokenizer.json").is_file()):
        from mixnu.tokenizer_bytelevel import extend_byte_level_base

        return extend_byte_level_base(cfg, t0)
    model_path, base_dir = resolve_base(cfg.base)
    base = load_sp_proto(model_path)
    check_sp_bpe(base, model_path)
    n_base = len(base.pieces)
    check_no_added_tokens(base_dir, n_base)
    if cfg.vocab_size <= n_base:
        raise TokenizerError(f"--vocab-size {cfg.vocab_size} must be larger than the base's {n_base} pieces")
    base_pieces = {p.piece for p in base.pieces}
    chars, corpus_info, total = _corpus_pass(list(cfg.corpus), cfg.quiet)
    budget = cfg.vocab_size - n_base
    new_chars, char_counts = select_chars(chars, base_pieces, cfg, budget)
    lines = list(_sample(list(cfg.corpus), total, cfg.sample_lines))
    need = budget - len(new_chars)
    train_vocab = int(need * cfg.train_vocab_factor) + len({c for c in chars if not c.isspace()}) + 16
    pieces, dropped, korean = new_chars, 0, None
    for _attempt in range(4):
        korean = train_korean_model(lines, train_vocab, cfg)
        candidates = hangul_candidates(korean, base_pieces, cfg.piece_filter)
        try:
            pieces, dropped = choose_pieces(base, candidates, new_chars, budget)
            break
        except DataError:
            if len(korean.pieces) < train_vocab:  # the corpus cannot give more pieces
                raise
            train_vocab = int(train_vocab * 1.5)
    else:
        raise DataError("the corpus does not yield enough Korean pieces; give more text or a smaller --vocab-size")
    proto = build_proto(base, pieces)
    added_by_kind = {"hangul_pieces": len(pieces) - len(new_chars), **char_counts}

    with atomic_dir(cfg.out, force=cfg.force) as stage:
        base_json = base_hf_files(model_path, base_dir, stage)
        data = extended_tokenizer_json(base_json, base, proto)
        special = set_special_tokens(stage, data, base)
        (stage / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        (stage / "tokenizer.model").write_bytes(proto.SerializeToString())
        if cfg.verify_lines:
            _verify(stage, proto, lines[:: max(1, len(lines) // cfg.verify_lines)])
        settings = cfg.model_dump(mode="json", exclude={"out", "force", "quiet", "base", "corpus"})
        write_json(stage / PROVENANCE_FILE, {
            "tool": f"mixnu {mixnu.__version__} tokenizer extend",
            "base": {"path": str(model_path), "sha256": sha256_file(model_path), "pieces": n_base},
            "corpus": corpus_info,
            "settings": settings,
            "sentencepiece": _version("sentencepiece"),
            "special_tokens": special,
            "korean_model": {"requested_vocab": train_vocab, "pieces": len(korean.pieces), "sample_lines": len(lines)},
            "result": {"pieces": len(proto.pieces), "added": len(pieces), "added_by_kind": added_by_kind,
                       "unreachable_dropped": dropped, "tokenizer_model_sha256": sha256_file(stage / "tokenizer.model")},
        })
        files = sorted(p.name for p in stage.iterdir())
    return ExtendResult(
        out=Path(cfg.out), vocab_size=len(proto.pieces), base_vocab_size=n_base, added=len(pieces),
        added_by_kind=added_by_kind, unreachable_dropped=dropped, korean_model_vocab=len(korean.pieces),
        sample_lines=len(lines), seconds=round(time.perf_counter() - t0, 2), files=files,
    )


def _verify(folder: Path, proto: Any, lines: list[str]) -> None:
    """Guard against a bug: the fast tokenizer must give the sentencepiece ids on sample lines."""
    from tokenizers import Tokenizer

    fast = Tokenizer.from_file(str(folder / "tokenizer.json"))
    slow = _processor(proto).encode(lines)
    got = [e.ids for e in fast.encode_batch(lines, add_special_tokens=False)]
    bad = sum(a != b for a, b in zip(slow, got, strict=True))
    if bad:
        raise TokenizerError(f"fast and sentencepiece tokenizers disagree on {bad} sample lines; this is a bug in mixnu")


def _version(lib: str) -> str | None:
    import importlib.metadata as md

    try:
        return md.version(lib)
    except md.PackageNotFoundError:
        return None
