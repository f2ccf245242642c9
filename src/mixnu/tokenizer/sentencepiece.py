"""The SentencePiece side of `mixnu tokenizer extend`: read and check the base model, train the
Korean BPE model, pick the pieces to add, and build the extended model proto.

Used by `mixnu.tokenizer.extend.extend_sentencepiece` (the flow; docs/tokenizer.md explains it);
`mixnu.tokenizer.fast` writes the matching tokenizer.json. Protos are sentencepiece's
`ModelProto` objects (`sentencepiece.sentencepiece_model_pb2`), typed `Any` here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mixnu.charsets import is_hangul_char, is_hangul_piece
from mixnu.errors import DataError, TokenizerError
from mixnu.tokenizer.config import ExtendConfig

NORMAL = 1  # sentencepiece's ModelProto.SentencePiece.Type NORMAL (2 UNKNOWN, 3 CONTROL, 4 USER_DEFINED, 6 BYTE)


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



# ------------------------------------------------------------------------------- Korean model
def train_korean_model(lines: list[str], vocab_size: int, cfg: ExtendConfig) -> Any:
    """Train a SentencePiece BPE model on `lines` and return its proto (pieces ranked by merge order)."""
    import io

    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    # sentencepiece's RNG is process-wide and has no getter to restore it afterwards; seeding it is the
    # only way to get the same pieces from the same inputs.
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


def sp_processor(proto: Any, dummy_prefix: bool = True) -> Any:
    """A `SentencePieceProcessor` for `proto` (optionally without the dummy `▁` prefix)."""
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
    sp = sp_processor(proto, dummy_prefix=False)
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


def train_and_choose(cfg: ExtendConfig, base: Any, lines: list[str], chars: list[str], budget: int,
                     train_vocab: int) -> tuple[list[str], int, Any, int]:
    """Train the Korean model on `lines` and choose `budget` pieces (its candidates, then `chars`).

    A model too small to yield enough reachable candidates is trained again with a 1.5× larger
    vocabulary (up to 4 models). Returns (pieces, unreachable dropped, Korean model proto, its
    requested vocabulary). Raises `DataError` when the corpus cannot give enough Korean pieces.
    """
    base_pieces = {p.piece for p in base.pieces}
    for _attempt in range(4):
        korean = train_korean_model(lines, train_vocab, cfg)
        candidates = hangul_candidates(korean, base_pieces, cfg.piece_filter)
        try:
            pieces, dropped = choose_pieces(base, candidates, chars, budget)
            return pieces, dropped, korean, train_vocab
        except DataError:
            if len(korean.pieces) < train_vocab:  # the corpus cannot give more pieces
                raise
            train_vocab = int(train_vocab * 1.5)
    raise DataError("the corpus does not yield enough Korean pieces; give more text or a smaller --vocab-size")
