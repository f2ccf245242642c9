"""Resize a base model to an extended tokenizer and initialise the new rows: `mixnu expand`.

The base model's input embeddings and LM head grow to the new tokenizer's size (optionally padded to a
multiple of 64 for speed). Rows of the old pieces are copied bit for bit. New rows are initialised by:
- `subword-mean` (EEVE): a new piece's input row is the mean of the base-model rows of the pieces the
  BASE tokenizer splits its surface into; for an untied head, its output row is the mean of those
  pieces' head rows (`output_init: mean`, the default: it measured better in bench/expand.py) or the
  first subword's head row (`output_init: first`, EEVE's choice);
- `mean`: every new row is the mean of all old rows;
- `random`: normal(0, `initializer_range`), seeded.

The split of a piece's surface is the base tokenizer's *model* segmentation of the piece string
itself (no normaliser, so no dummy prefix). Encoding the surface text instead hits Llama-2's dummy
prefix: `학교` encodes as `▁ 학 교` and ` 학교` as `▁▁ 학 교`, so the "first subword" would be a space
piece for almost every word. A leading bare space piece (`▁`, `▁▁`) is then dropped whenever other
pieces follow: for `▁학교` (no `▁학` in Llama-2) the subwords are `학 교`. Tokenizers without a
segmentation model fall back to encoding the surface with `▁` mapped to a space.

Writes `out/`: safetensors weights, config.json with the new `vocab_size`, generation config, the new
tokenizer (and its `tokenizer.model` if present) and `mixnu_expand.json` (sizes, init, padding).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from mixnu.config import StageConfig
from mixnu.errors import CheckpointError, TokenizerError
from mixnu.hf import first_line, quiet_transformers
from mixnu.io import atomic_dir, check_output, copy_tokenizer_files, write_json


class ExpandConfig(StageConfig):
    """Inputs of `expand_model`."""

    model: Path = Field(description="base checkpoint folder (with its tokenizer)")
    tokenizer: Path = Field(description="extended tokenizer folder; its first pieces must be the base's")
    out: Path
    init: Literal["subword-mean", "mean", "random"] = "subword-mean"
    output_init: Literal["first", "mean"] = Field(
        "mean", description="untied head rows for subword-mean: mean (measured better, bench/expand.py) or first (EEVE)")
    pad_to_multiple_of: int = Field(1, ge=1, le=4096, description="pad the vocab rows, e.g. 64 for GPU speed")
    base_tokenizer: Path | None = Field(None, description="default: the tokenizer in the model folder")
    seed: int = 0
    force: bool = False
    quiet: bool = False


@dataclass(frozen=True)
class ExpandResult:
    out: Path
    base_vocab_size: int
    new_vocab_size: int
    padded_vocab_size: int
    new_rows: int
    init: str
    output_init: str | None
    tied: bool
    fallback_rows: int  # new pieces with no usable base segmentation (given the mean of old rows)
    seconds: float


def _load_tokenizer(path: Path, what: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError) as exc:
        first = first_line(exc)
        raise TokenizerError(f"{path}: cannot load the {what} tokenizer ({first})") from None


def check_prefix(base_tok, new_tok) -> int:
    """Size of the base vocabulary, after checking the new tokenizer starts with exactly the same pieces."""
    n_base, n_new = len(base_tok), len(new_tok)
    if n_new < n_base:
        raise TokenizerError(f"the new tokenizer has {n_new} pieces, fewer than the base's {n_base}; "
                             "give a tokenizer that extends the base")
    old = base_tok.convert_ids_to_tokens(list(range(n_base)))
    new = new_tok.convert_ids_to_tokens(list(range(n_base)))
    if old != new:
        i = next(k for k, (a, b) in enumerate(zip(old, new, strict=True)) if a != b)
        raise TokenizerError(
            f"the new tokenizer's piece {i} is {new[i]!r} but the base's is {old[i]!r}: its first {n_base} pieces "
            "must equal the base tokenizer's, or the embeddings would silently misalign")
    return n_base


def base_segmentation(base_tok, piece: str) -> list[int]:
    """Ids of the base pieces that make up `piece`'s surface (see the module docstring on `▁`)."""
    backend = getattr(base_tok, "backend_tokenizer", None)
    if backend is not None and hasattr(backend.model, "tokenize"):
        ids = [t.id for t in backend.model.tokenize(piece)]
    else:
        ids = base_tok(piece.replace("▁", " "), add_special_tokens=False)["input_ids"]
    if len(ids) > 1 and base_tok.convert_ids_to_tokens(ids[0]).strip("▁ ") == "":
        ids = ids[1:]  # a bare space piece (the dummy prefix, or the word boundary of `▁X`): no content
    unk = base_tok.unk_token_id
    return [i for i in ids if i != unk and i < len(base_tok)]


@torch.no_grad()
def expand_model(cfg: ExpandConfig) -> ExpandResult:
    """Resize `cfg.model` to `cfg.tokenizer` and initialise the new rows; write the folder `cfg.out`.

    Raises `TokenizerError` if the new tokenizer does not start with the base's pieces and
    `CheckpointError` if the model cannot be loaded or has fewer rows than its tokenizer.
    """
    from transformers import AutoModelForCausalLM

    t0 = time.perf_counter()
    check_output(cfg.out, cfg.force)
    if not (cfg.model / "config.json").is_file():
        raise CheckpointError(f"{cfg.model}: not a checkpoint folder (no config.json)")
    base_tok = _load_tokenizer(cfg.base_tokenizer or cfg.model, "base")
    new_tok = _load_tokenizer(cfg.tokenizer, "new")
    n_base = check_prefix(base_tok, new_tok)
    n_new = len(new_tok)
    try:
        with quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype="auto")
    except (OSError, ValueError, RuntimeError) as exc:
        first = first_line(exc)
        raise CheckpointError(f"{cfg.model}: cannot load the model ({first})") from None
    emb_in = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    tied = head is None or head.weight is emb_in or bool(getattr(model.config, "tie_word_embeddings", False))
    if emb_in.shape[0] < n_base:
        raise CheckpointError(f"{cfg.model} has {emb_in.shape[0]} embedding rows but its tokenizer {n_base} pieces")
    old_in = emb_in[:n_base].float().clone()  # (V_base, H)
    old_out = None if tied else head.weight[:n_base].float().clone()
    mult = cfg.pad_to_multiple_of
    padded = -(-n_new // mult) * mult

    # New rows, computed in fp32: (padded - n_base, H)
    rows_in, rows_out, fallback = _init_rows(cfg, base_tok, new_tok, n_base, n_new, padded, old_in, old_out, model)
    model.resize_token_embeddings(padded, mean_resizing=False)
    emb_in = model.get_input_embeddings().weight
    emb_in[n_base:] = rows_in.to(emb_in.dtype)
    if not tied:
        model.get_output_embeddings().weight[n_base:] = rows_out.to(emb_in.dtype)
    model.config.vocab_size = padded

    with atomic_dir(cfg.out, force=cfg.force) as tmp:
        with quiet_transformers():
            model.save_pretrained(tmp)
        new_tok.save_pretrained(tmp)
        copy_tokenizer_files(cfg.tokenizer, tmp)  # verbatim: keeps add_bos_token and the class (mixnu.text)
        result = ExpandResult(out=cfg.out, base_vocab_size=n_base, new_vocab_size=n_new, padded_vocab_size=padded,
                              new_rows=n_new - n_base, init=cfg.init,
                              output_init=None if tied or cfg.init != "subword-mean" else cfg.output_init,
                              tied=tied, fallback_rows=fallback, seconds=round(time.perf_counter() - t0, 2))
        write_json(tmp / "mixnu_expand.json", {**result.__dict__, "out": None, "pad_to_multiple_of": mult,
                                                "base_model": str(cfg.model), "tokenizer": str(cfg.tokenizer)})
    return result


def _init_rows(cfg: ExpandConfig, base_tok, new_tok, n_base: int, n_new: int, padded: int,
               old_in: torch.Tensor, old_out: torch.Tensor | None, model) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Input rows and (untied) output rows for ids `n_base..padded-1`, and how many fell back to the mean."""
    n_rows, hidden = padded - n_base, old_in.shape[1]
    mean_in = old_in.mean(0)
    mean_out = old_out.mean(0) if old_out is not None else None
    if cfg.init == "random":
        gen = torch.Generator().manual_seed(cfg.seed)
        std = float(getattr(model.config, "initializer_range", 0.02))
        rows_in = torch.randn(n_rows, hidden, generator=gen) * std
        rows_out = torch.randn(n_rows, hidden, generator=gen) * std if old_out is not None else None
        return rows_in, rows_out, 0
    rows_in = mean_in.expand(n_rows, hidden).clone()
    rows_out = mean_out.expand(n_rows, hidden).clone() if old_out is not None else None
    if cfg.init == "mean":
        return rows_in, rows_out, 0
    special = set(new_tok.all_special_ids)
    pieces = new_tok.convert_ids_to_tokens(list(range(n_base, n_new)))
    fallback = 0  # padding rows beyond the tokenizer keep the mean
    for k, piece in enumerate(pieces):
        ids = [] if (n_base + k) in special else base_segmentation(base_tok, piece)
        if not ids:
            fallback += 1
            continue
        rows_in[k] = old_in[ids].mean(0)
        if old_out is not None:
            rows_out[k] = old_out[ids[0]] if cfg.output_init == "first" else old_out[ids].mean(0)
    return rows_in, rows_out, fallback
