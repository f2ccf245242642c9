"""The tokenizer stage: `mixnu tokenizer extend` and `mixnu tokenizer compare` (docs/tokenizer.md).

Entry points: `extend_tokenizer(ExtendConfig) -> ExtendResult` and
`compare_tokenizers(CompareConfig) -> CompareResult`. The modules, imports pointing down:

- `extend`: `extend_tokenizer` (picks the extender by the base's kind) and the SentencePiece flow;
- `bytelevel`: the byte-level BPE extender (Llama-3, Qwen2 bases);
- `fast`: the tokenizer.json of an extended SentencePiece model;
- `sentencepiece`: base model checks, the Korean BPE model, choosing and placing the new pieces;
- `coverage`: which single characters are added (the coverage policy); `special`: BOS and added tokens;
- `corpus`: one counting pass and an evenly spaced sample; `config`: `ExtendConfig`, `ExtendResult`,
  provenance (`mixnu_tokenizer.json`);
- `compare`: `compare_tokenizers`, reading the text files; `compare_load`: tokenizers ready to encode;
  `compare_tables`: statistics, tables, the plot.

Unicode facts (Hangul ranges, KS X 1001, GPT-2's byte alphabet) live in the ground module
`mixnu.charsets`. Modules of this package import each other by full path, never this `__init__`,
which only re-exports the names below.
"""

from mixnu.charsets import is_hangul_char
from mixnu.tokenizer.compare import CompareConfig, CompareResult, compare_tokenizers, parse_named, read_texts
from mixnu.tokenizer.compare_load import LoadedTokenizer, open_for_compare
from mixnu.tokenizer.compare_tables import fallback_markdown, markdown, plot_vocab_tokens, side_by_side
from mixnu.tokenizer.config import PROVENANCE_FILE, ExtendConfig, ExtendResult
from mixnu.tokenizer.extend import extend_tokenizer
from mixnu.tokenizer.sentencepiece import load_sp_proto, reachable_share

__all__ = [
    "PROVENANCE_FILE",
    "CompareConfig",
    "CompareResult",
    "ExtendConfig",
    "ExtendResult",
    "LoadedTokenizer",
    "compare_tokenizers",
    "extend_tokenizer",
    "fallback_markdown",
    "is_hangul_char",
    "load_sp_proto",
    "open_for_compare",
    "markdown",
    "parse_named",
    "plot_vocab_tokens",
    "reachable_share",
    "read_texts",
    "side_by_side",
]
