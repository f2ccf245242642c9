"""Tokenizers loaded for `mixnu tokenizer compare`: ids per line, and which ids stand for raw bytes.

`open_for_compare(NAME, PATH)` opens a SentencePiece model file (encoded with `sentencepiece` itself), a
Hugging Face tokenizer folder (its fast tokenizer) or a GGUF vocab file (transformers' GGUF
converter). Byte-level ids: the `<0xNN>` pieces of byte-fallback tokenizers (SentencePiece, Llama-2),
and the tokens of byte-level BPE (GPT-2 style: Llama-3, Qwen2) whose bytes are not whole UTF-8
characters. Lines are NFC-normalised and encoded without special tokens (`mixnu.text.body_ids`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixnu.charsets import byte_decoder
from mixnu.errors import TokenizerError
from mixnu.text import body_ids, normalize_text

BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")


@dataclass(frozen=True)
class LoadedTokenizer:
    """One tokenizer ready to encode: ids per line, which ids are byte-level, and its vocab size."""

    name: str
    path: Path
    kind: str  # "sentencepiece" | "hf" | "gguf"
    family: str  # "byte-fallback" | "byte-level" | "other"
    vocab_size: int
    byte_ids: frozenset[int]
    encode: Callable[[list[str]], list[list[int]]] = field(repr=False)
    byte_values: dict[int, bytes] = field(default_factory=dict, repr=False)  # byte-level id -> its bytes



def byte_level_ids(vocab: dict[str, int]) -> frozenset[int]:
    """Ids of GPT-2 byte-level tokens whose bytes are not whole UTF-8 characters."""
    decoder = byte_decoder()
    out = set()
    for token, idx in vocab.items():
        if not all(ch in decoder for ch in token):
            continue  # an added/special token written as plain text
        try:
            bytes(decoder[ch] for ch in token).decode("utf-8")
        except UnicodeDecodeError:
            out.add(idx)
    return frozenset(out)


def _from_backend(name: str, path: Path, kind: str, tok: Any) -> LoadedTokenizer:
    """A transformers tokenizer with a fast backend, its byte-level ids by family (from tokenizer.json)."""
    backend = tok.backend_tokenizer
    spec = json.loads(backend.to_str())
    vocab = backend.get_vocab(with_added_tokens=True)
    text = json.dumps({k: spec.get(k) for k in ("pre_tokenizer", "decoder")})
    values: dict[int, bytes] = {}
    if spec.get("model", {}).get("byte_fallback"):
        family, byte_ids = "byte-fallback", frozenset(i for t, i in vocab.items() if BYTE_PIECE.match(t))
        values = {i: bytes([int(t[3:5], 16)]) for t, i in vocab.items() if i in byte_ids}
    elif '"ByteLevel"' in text:
        family, byte_ids = "byte-level", byte_level_ids(vocab)
        decoder = byte_decoder()
        values = {i: bytes(decoder[c] for c in t) for t, i in vocab.items() if i in byte_ids}
    else:
        family, byte_ids = "other", frozenset()

    def encode(lines: list[str]) -> list[list[int]]:
        return body_ids(tok, lines)  # NFC, no BOS, special-token spellings as text (mixnu.text)

    return LoadedTokenizer(name, path, kind, family, len(tok), byte_ids, encode, values)


def _gguf_tokenizer_only(path: Path) -> Any:
    """The tokenizer of a GGUF file built by transformers' GGUF tokenizer converter alone, or None.

    `AutoTokenizer.from_pretrained(gguf_file=)` also maps the model config and refuses architectures
    it has no model for (Command-R), although the tokenizer converter reads their vocabularies.
    """
    from transformers import PreTrainedTokenizerFast
    from transformers.integrations.gguf.gguf_tokenizer_mapping import (
        convert_gguf_tokenizer,
        get_gguf_tokenizer,
    )

    try:
        architecture, spec, _config = get_gguf_tokenizer(str(path))
        backend, _extra = convert_gguf_tokenizer(architecture, spec)
        return PreTrainedTokenizerFast(tokenizer_object=backend)
    except Exception:  # not a GGUF file, or a tokenizer kind the converter lacks
        return None


def open_for_compare(name: str, path: str | Path) -> LoadedTokenizer:
    """Load NAME=PATH (SentencePiece model, tokenizer folder, or GGUF vocab file) for comparison."""
    path = Path(path)
    if not path.exists():
        raise TokenizerError(f"{name}={path}: no such file or folder")
    if path.is_dir():
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(path)
        except Exception as exc:  # transformers raises many kinds for a broken folder
            raise TokenizerError(f"{name}={path}: not a loadable tokenizer folder ({type(exc).__name__})") from None
        if not hasattr(tok, "backend_tokenizer"):
            raise TokenizerError(f"{name}={path}: no fast tokenizer could be built from this folder")
        return _from_backend(name, path, "hf", tok)
    if path.suffix == ".gguf":
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        except Exception as exc:
            tok = _gguf_tokenizer_only(path)  # transformers loads no config for some architectures (Command-R)
            if tok is None:
                raise TokenizerError(f"{name}={path}: not a readable GGUF vocab file ({type(exc).__name__})") from None
        return _from_backend(name, path, "gguf", tok)
    import sentencepiece as spm

    try:
        sp = spm.SentencePieceProcessor(model_file=str(path))
    except Exception:
        raise TokenizerError(
            f"{name}={path}: not a SentencePiece model, tokenizer folder or .gguf file; check the path"
        ) from None
    byte_ids = frozenset(i for i in range(sp.get_piece_size()) if sp.is_byte(i))
    values = {i: bytes([int(sp.id_to_piece(i)[3:5], 16)]) for i in byte_ids}

    def encode(lines: list[str]) -> list[list[int]]:
        return sp.encode([normalize_text(x) for x in lines])

    return LoadedTokenizer(name, path, "sentencepiece", "byte-fallback", sp.get_piece_size(), byte_ids, encode,
                           values)

