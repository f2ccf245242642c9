"""Deprecated alias of `mixnu.datasets`, kept so that older imports keep working; use `mixnu.datasets`.

The data no longer comes from a `../shared` folder beside the repository: see `mixnu.datasets` for
the one resolution rule (explicit path -> `$MIXNU_DATA` / `$MIXNU_SHARED` -> built-in data).
"""

from mixnu.datasets import DOMAINS, corpus_files, data_dir, heldout_files, llama2_tokenizer_model

__all__ = ["DOMAINS", "corpus_files", "data_dir", "heldout_files", "llama2_tokenizer_model"]
