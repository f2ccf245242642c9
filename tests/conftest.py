"""Shared test fixtures: the real data, the real Llama-2 tokenizer, a tiny Llama model.

The data comes by mixnu's one rule (`mixnu.datasets`): `$MIXNU_DATA` / `$MIXNU_SHARED` when set,
else the built-in data shipped in the package, so the suite runs on a fresh clone. The GGUF vocab
files of peer tokenizers (not built in) come from the data folder when set, else from the package
registry on first use (cached); if neither works the test fails with the reason, never skips.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mixnu import datasets
from mixnu.datasets import DOMAINS, corpus_files, data_dir, heldout_files, llama2_tokenizer_model
from mixnu.errors import DataError

# Tests are many small torch programs; one thread each avoids oversubscribing 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def pytest_sessionstart(session: pytest.Session) -> None:
    try:
        data_dir()
    except DataError as exc:
        pytest.exit(f"mixnu tests need their data: {exc}", returncode=2)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The data folder (corpus/, eval/, tokenizers/llama-2/): `$MIXNU_DATA`/`$MIXNU_SHARED`, else built-in."""
    return data_dir()


@pytest.fixture(scope="session")
def gguf_vocab():
    """`gguf_vocab("llama-bpe")` -> path of llama.cpp's vocab-only GGUF file (fetched once if needed)."""

    def _get(name: str) -> Path:
        try:
            return datasets.gguf_vocab(name)
        except DataError as exc:
            pytest.fail(f"GGUF vocab '{name}' unavailable: {exc}", pytrace=False)

    return _get


@pytest.fixture(scope="session")
def llama2_sp_model() -> Path:
    """Path of the real Llama-2 `tokenizer.model` (32,000 SentencePiece BPE pieces)."""
    return llama2_tokenizer_model()


@pytest.fixture(scope="session")
def llama2_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory, llama2_sp_model: Path) -> Path:
    """A Hugging Face tokenizer folder for Llama-2: `tokenizer.model` + `tokenizer.json` + configs."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("llama2-tokenizer")
    shutil.copy(llama2_sp_model, folder / "tokenizer.model")
    tok = AutoTokenizer.from_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def llama2_tokenizer(llama2_tokenizer_dir: Path):
    """The loaded fast Llama-2 tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(llama2_tokenizer_dir)


def build_tiny_llama(out: Path, tokenizer_dir: Path, *, hidden: int = 64, layers: int = 2,
                     tie: bool = False, seed: int = 0) -> Path:
    """Save a randomly initialised tiny Llama (+ tokenizer) that `from_pretrained` loads."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        tie_word_embeddings=tie, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    shutil.copy(Path(tokenizer_dir) / "tokenizer.model", out / "tokenizer.model")
    return out


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory, llama2_tokenizer_dir: Path) -> Path:
    """A tiny random Llama (hidden 64, 2 layers, untied, Llama-2 vocab) saved as a checkpoint folder."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), llama2_tokenizer_dir)


@pytest.fixture(scope="session")
def corpora() -> dict[str, Path]:
    """Domain -> real training corpus file."""
    return corpus_files()


@pytest.fixture(scope="session")
def heldout() -> dict[str, Path]:
    """Domain -> real held-out eval file."""
    return heldout_files()


@pytest.fixture(scope="session")
def dev_set() -> list[tuple[str, str]]:
    """The 1,000-line `domain<TAB>text` tokenizer dev set."""
    from mixnu.io import read_domain_tsv

    return read_domain_tsv(datasets.dev_set())


@pytest.fixture(scope="session")
def ood_set(data_root: Path) -> list[tuple[str, str]]:
    """The 911-line `domain<TAB>text` out-of-domain set (sources absent from the corpora)."""
    from mixnu.io import read_domain_tsv

    return read_domain_tsv(data_root / "eval" / "ood_sentences.tsv")


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]):
    """Run `mixnu ARGS...` in-process; returns (exit code, stdout, stderr)."""
    from mixnu.cli import main

    def _run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return rc, out, err

    return _run


__all__ = ["DOMAINS", "build_tiny_llama"]
