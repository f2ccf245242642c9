"""How user text becomes model input: one normalisation, one encoding, one special-token rule.

Every stage that turns text into token ids (train's packing, `ppl` windows, `route`, `routing`,
router initialisation from data or prompts, `generate`, `tokenizer compare`) calls this module,
so training, evaluation and generation see the same ids for the same text (issue #11):

- `normalize_text`: Unicode NFC, applied to every text that reaches a tokenizer or a reader
  (corpora, held-out files, suite prompts and notes, chat messages, router-init prompts, the
  annotation page). Korean typed on macOS arrives as decomposed jamo (NFD); NFC composes it into
  the syllables the tokenizer was extended with.
- `body_ids`: the ids of the text alone, with no special tokens added and text that spells a
  special token (`<s>`, `</s>`, `<unk>` in scraped HTML such as `<s>10,000원</s>`) encoded as the
  characters it is, the way SentencePiece encodes it (`split_special_tokens=True`).
- `document_ids`: what the model sees for one document, `[BOS] body` (plus `[EOS]` where training
  packs documents into one stream). Whether BOS/EOS exist is the tokenizer's `bos_token_id` /
  `eos_token_id`; nothing else decides it.
- `chat_prompt_ids`: a chat-template prompt; the template's own special tokens stay special, the
  user's message is text.
- `LLAMA_SPECIAL_CONFIG` and `bos_post_processor`: what a Llama-2-style tokenizer folder written by
  mixnu declares (add BOS, not EOS), so that tools which tokenize by themselves (`AutoTokenizer`,
  vLLM, llama.cpp's converter) add the same BOS as mixnu's own stages.

Leaf module: imports nothing from mixnu.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

NORMALIZATION = "NFC"

# Written into tokenizer_config.json of a SentencePiece (Llama-2-style) folder by `tokenizer extend`.
# `PreTrainedTokenizerFast` (not `LlamaTokenizerFast`): transformers 5 rebuilds a `LlamaTokenizer`'s
# normalizer and pre-tokenizer itself, ignoring tokenizer.json, and then drops one leading space on
# inputs that start with whitespace (measured on 5.24); `PreTrainedTokenizerFast` loads tokenizer.json
# as written in transformers 4 and 5 alike. See docs/tokenizer.md.
LLAMA_SPECIAL_CONFIG: dict[str, Any] = {
    "tokenizer_class": "PreTrainedTokenizerFast",
    "add_bos_token": True,
    "add_eos_token": False,
}

_CONTENT_MARK = "\ue000mixnu-content\ue000"  # a private-use sentinel no chat template contains


def normalize_text(text: str) -> str:
    """`text` in Unicode NFC (the one normalisation mixnu applies to text before any tokenizer)."""
    return unicodedata.normalize(NORMALIZATION, text)


def special_ids(tokenizer: Any) -> tuple[int | None, int | None]:
    """(BOS id, EOS id) every stage uses for `tokenizer`; None where the tokenizer has no such token."""
    return tokenizer.bos_token_id, tokenizer.eos_token_id


def body_ids(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, NFC-normalised, without special tokens; special-token spellings are text.

    `tokenizer` is a transformers tokenizer. Returns one list of ids per text; for a SentencePiece
    BPE folder written by mixnu these equal `sentencepiece`'s ids for the same text.
    """
    if not texts:
        return []
    return tokenizer([normalize_text(t) for t in texts], add_special_tokens=False,
                     split_special_tokens=True)["input_ids"]


def document_ids(tokenizer: Any, texts: Sequence[str], *, eos: bool = False) -> list[list[int]]:
    """`[BOS] body` per text (`[BOS] body [EOS]` with `eos=True`, as training packs documents)."""
    bos, eos_id = special_ids(tokenizer)
    head = [bos] if bos is not None else []
    tail = [eos_id] if eos and eos_id is not None else []
    return [head + ids + tail for ids in body_ids(tokenizer, texts)]


def spells_special(tokenizer: Any, text: str) -> bool:
    """True if `text` contains the spelling of one of the tokenizer's special or added tokens."""
    spellings = {str(t) for t in getattr(tokenizer, "added_tokens_decoder", {}).values()}
    spellings |= {str(t) for t in getattr(tokenizer, "all_special_tokens", [])}
    return any(s and s in text for s in spellings)


def chat_prompt_ids(tokenizer: Any, text: str) -> list[int]:
    """Ids of a one-message user chat (with the generation prompt) through the tokenizer's chat template.

    The template's special tokens (and its BOS, if it writes one) are parsed as special tokens; the
    message itself is text. A message that spells no special token is encoded in one piece, exactly
    as `apply_chat_template` would; one that does is encoded as template text, message body (with
    `split_special_tokens`), template text. Raises `ValueError` if the tokenizer has no chat template.
    """
    text = normalize_text(text)

    def render(content: str) -> str:
        return tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                             add_generation_prompt=True)

    if not spells_special(tokenizer, text):
        return tokenizer(render(text), add_special_tokens=False)["input_ids"]
    before, _, after = render(_CONTENT_MARK).partition(_CONTENT_MARK)
    if _CONTENT_MARK in after:
        raise ValueError("the chat template repeats the user message; mixnu cannot keep its text as text")
    parts = [tokenizer(s, add_special_tokens=False)["input_ids"] if s else [] for s in (before, after)]
    return parts[0] + body_ids(tokenizer, [text])[0] + parts[1]


def bos_post_processor(bos: str, bos_id: int) -> dict[str, Any]:
    """tokenizer.json `post_processor` that puts `bos` before every sequence (Llama-2's: `<s> $A`)."""
    def seq(name: str, type_id: int) -> dict[str, Any]:
        return {"Sequence": {"id": name, "type_id": type_id}}

    def special(type_id: int) -> dict[str, Any]:
        return {"SpecialToken": {"id": bos, "type_id": type_id}}

    return {
        "type": "TemplateProcessing",
        "single": [special(0), seq("A", 0)],
        "pair": [special(0), seq("A", 0), special(1), seq("B", 1)],
        "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
    }
