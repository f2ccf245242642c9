"""The fast tokenizer (`tokenizer.json`, Hugging Face `tokenizers`) of an extended SentencePiece model.

`base_hf_files` stages the base's tokenizer.json and configs, `extended_tokenizer_json` adds the new
pieces and their merges so that the merge-list tokenizer gives sentencepiece's ids, and
`verify_fast` checks that it does on sample lines before the folder is written
(`mixnu.tokenizer.extend.extend_sentencepiece`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mixnu.errors import TokenizerError
from mixnu.tokenizer.config import copy_base_configs
from mixnu.tokenizer.sentencepiece import sp_processor


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
    copy_base_configs(base_dir, staging)
    data = json.loads((staging / "tokenizer.json").read_text(encoding="utf-8"))
    if len(tok) != len(data.get("model", {}).get("vocab", {})):  # an added token check_no_added_tokens missed
        raise TokenizerError(f"{src}: the base tokenizer has {len(tok):,} tokens but {len(data['model']['vocab']):,} "
                             "pieces; extend the bare tokenizer.model instead")
    model = data.get("model", {})
    if model.get("type") != "BPE" or not model.get("byte_fallback"):
        raise TokenizerError(f"{model_path}: its fast tokenizer is not a byte-fallback BPE; cannot extend it")
    return data


def extended_tokenizer_json(base_json: dict[str, Any], base: Any, proto: Any) -> dict[str, Any]:
    """The base tokenizer.json with the added pieces in its vocab and their merges inserted.

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


def verify_fast(folder: Path, proto: Any, lines: list[str]) -> None:
    """Guard against a bug: the fast tokenizer must give the sentencepiece ids on sample lines."""
    from tokenizers import Tokenizer

    fast = Tokenizer.from_file(str(folder / "tokenizer.json"))
    slow = sp_processor(proto).encode(lines)
    got = [e.ids for e in fast.encode_batch(lines, add_special_tokens=False)]
    bad = sum(a != b for a, b in zip(slow, got, strict=True))
    if bad:
        raise TokenizerError(f"fast and sentencepiece tokenizers disagree on {bad} sample lines; this is a bug in mixnu")
