"""Each conftest fixture loads real data, not a stub."""

from __future__ import annotations

import hashlib

import torch

from mixnu.datasets import DOMAINS

LLAMA2_SHA256 = "9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347"


def test_llama2_tokenizer_is_the_real_one(llama2_sp_model, llama2_tokenizer):
    assert hashlib.sha256(llama2_sp_model.read_bytes()).hexdigest() == LLAMA2_SHA256
    assert len(llama2_tokenizer) == 32000
    ids = llama2_tokenizer("안녕하세요", add_special_tokens=False)["input_ids"]
    assert any(llama2_tokenizer.convert_ids_to_tokens(i).startswith("<0x") for i in ids)  # byte fallback
    assert llama2_tokenizer.decode(ids) == "안녕하세요"


def test_tiny_llama_loads_and_runs(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    assert model.config.vocab_size == 32000
    logits = model(torch.tensor([[1, 450, 4996]])).logits
    assert logits.shape == (1, 3, 32000) and torch.isfinite(logits).all()


def test_corpora_are_the_four_real_domains(corpora, heldout):
    assert set(DOMAINS) <= set(corpora) and set(DOMAINS) <= set(heldout)
    for domain in DOMAINS:
        assert corpora[domain].stat().st_size > 1_000_000
        text = heldout[domain].read_text(encoding="utf-8")
        assert sum("가" <= ch <= "힣" for ch in text[:5000]) > 1000  # Korean


def test_dev_set_has_250_lines_per_domain(dev_set):
    assert len(dev_set) == 1000
    counts = {d: sum(1 for dom, _ in dev_set if dom == d) for d in DOMAINS}
    assert counts == dict.fromkeys(DOMAINS, 250)
