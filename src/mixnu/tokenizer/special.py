"""Special and added tokens of a SentencePiece tokenizer folder written by `mixnu tokenizer extend`.

- `check_no_added_tokens`: refuse a base folder that adds tokens after its pieces (a fine-tuned
  Llama-2's `<pad>` at 32000): the extension hands out exactly those ids, so two tokens would share
  one id in tokenizer.json and loaders would silently move one of them (issue #11, item 2).
- `set_special_tokens`: make the output folder add BOS like the published Llama-2 tokenizer, with the
  settings `mixnu.text` defines for every stage (issue #11, item 6).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mixnu.errors import TokenizerError
from mixnu.text import LLAMA_SPECIAL_CONFIG, bos_post_processor


def added_tokens_beyond(base_dir: Path | None, n_base: int) -> dict[str, int]:
    """Tokens a base folder adds after its SentencePiece pieces (`<pad>` at 32000 …): content -> id.

    Read from `tokenizer.json` (`added_tokens`), `tokenizer_config.json` (`added_tokens_decoder`) and
    `added_tokens.json`. Only ids >= `n_base` count: those are the ids the extension hands out.
    """
    found: dict[str, int] = {}
    if base_dir is None:
        return found

    def load(name: str) -> Any:
        f = base_dir / name
        try:
            return json.loads(f.read_text(encoding="utf-8")) if f.is_file() else None
        except (OSError, ValueError):
            raise TokenizerError(f"{f}: not readable JSON; fix or remove the file") from None

    tj, tc, at = load("tokenizer.json"), load("tokenizer_config.json"), load("added_tokens.json")
    pairs = [(t.get("content"), t.get("id")) for t in (tj or {}).get("added_tokens", [])]
    pairs += [(v.get("content"), k) for k, v in ((tc or {}).get("added_tokens_decoder") or {}).items()]
    pairs += list((at or {}).items())
    for content, idx in pairs:
        if isinstance(content, str) and str(idx).isdigit() and int(idx) >= n_base:
            found[content] = int(idx)
    return dict(sorted(found.items(), key=lambda kv: kv[1]))


def check_no_added_tokens(base_dir: Path | None, n_base: int) -> None:
    """Refuse a base whose folder adds tokens after its pieces: the extension would reuse their ids.

    Carrying them after the new pieces would move them (`<pad>` 32000 -> 46262), so a fine-tuned
    base's embedding row for them would no longer match; the user decides instead (docs/tokenizer.md).
    """
    extra = added_tokens_beyond(base_dir, n_base)
    if extra:
        names = ", ".join(f"{t}={i}" for t, i in list(extra.items())[:5]) + (" …" if len(extra) > 5 else "")
        raise TokenizerError(
            f"{base_dir}: the base adds {len(extra)} token(s) after its {n_base:,} pieces ({names}); the new "
            "pieces would take those ids. Extend the bare tokenizer.model, then add these tokens again after "
            "the new pieces (tokenizer.add_special_tokens) and resize the model")


def set_special_tokens(stage: Path, data: dict[str, Any], base: Any) -> dict[str, Any]:
    """Make the staged folder add BOS as Llama-2's published tokenizer does (and mixnu's stages do).

    `data` (the tokenizer.json dict) gets a post-processor `<s> $A`; tokenizer_config.json gets
    `mixnu.text.LLAMA_SPECIAL_CONFIG` (add_bos_token true, add_eos_token false, a class that loads
    tokenizer.json as written) and the base's bos/eos/unk spellings. Returns what was set.
    """
    bos_id, eos_id, unk_id = base.trainer_spec.bos_id, base.trainer_spec.eos_id, base.trainer_spec.unk_id
    if bos_id < 0:
        raise TokenizerError("the base SentencePiece model has no BOS piece; extend needs a Llama-2-style base")
    names = {k: base.pieces[i].piece for k, i in (("bos_token", bos_id), ("eos_token", eos_id),
                                                 ("unk_token", unk_id)) if 0 <= i < len(base.pieces)}
    data["post_processor"] = bos_post_processor(names["bos_token"], bos_id)
    cfg_file = stage / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text(encoding="utf-8")) if cfg_file.is_file() else {}
    cfg.pop("added_tokens_decoder", None)  # transformers rebuilds it from tokenizer.json
    cfg.update(LLAMA_SPECIAL_CONFIG, **names)
    cfg_file.write_text(json.dumps(cfg, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return {**LLAMA_SPECIAL_CONFIG, **names, "post_processor": f"{names['bos_token']} $A"}
