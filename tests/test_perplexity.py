"""Bits per character: every token scored once, sliding windows, batching, and the CLI's errors."""

from __future__ import annotations

import json
import math

import pytest

from mixnu.perplexity import score_model
from mixnu.scoring import make_windows

LINES = ["대한민국은 민주공화국이다.", "모든 국민은 법 앞에 평등하다. " * 12, "오늘 날씨 좋네요"]


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval(), AutoTokenizer.from_pretrained(tiny_llama_dir)


@pytest.mark.parametrize(("n", "max_length", "stride"), [(5, 16, 8), (50, 16, 8), (50, 16, 15), (51, 10, 3), (16, 16, 4)])
def test_windows_score_each_token_once_with_context(n, max_length, stride):
    ids = list(range(100, 100 + n))
    windows = make_windows("d", [ids], bos_id=1, max_length=max_length, stride=stride)
    seq = [1] + ids
    scored = []
    for w in windows:
        assert len(w.input_ids) <= max_length
        for pos, label in enumerate(w.labels):
            if label != -100:
                assert pos > 0 and label == w.input_ids[pos]
                scored.append(label)
                if len(windows) > 1 and w is not windows[0]:
                    assert pos >= max_length - stride  # at least max_length - stride tokens of context
    assert scored == seq[1:]  # every text token exactly once, in order; BOS never


def _direct_bits_per_char(model, tok, lines):
    import torch
    import torch.nn.functional as F

    nll = 0.0
    for line in lines:
        ids = torch.tensor([[tok.bos_token_id] + tok(line, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits
        nll += float(F.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="sum"))
    return nll / math.log(2) / sum(len(x) for x in lines), nll


def test_bits_per_char_matches_direct_computation_and_batching(tiny):
    model, tok = tiny
    expected, nll = _direct_bits_per_char(model, tok, LINES)
    for batch_size in (1, 3):
        s = score_model(model, tok, {"law": LINES}, max_length=512, batch_size=batch_size)
        assert s.domains["law"].bits_per_char == pytest.approx(expected, rel=1e-5)
        assert s.domains["law"].nll_nats == pytest.approx(nll, rel=1e-5)
        n_tok = sum(len(tok(x, add_special_tokens=False)["input_ids"]) for x in LINES)
        assert s.domains["law"].tokens == n_tok
        assert s.domains["law"].ppl_token == pytest.approx(math.exp(nll / n_tok), rel=1e-5)
        assert s.domains["law"].chars == sum(len(x) for x in LINES)


def test_sliding_windows_score_long_lines(tiny):
    model, tok = tiny
    full = score_model(model, tok, {"x": LINES}, max_length=512)
    windowed = score_model(model, tok, {"x": LINES}, max_length=24, stride=8, batch_size=4)
    assert windowed.domains["x"].tokens == full.domains["x"].tokens
    # a random tiny model barely uses context, but the numbers must differ only a little
    assert windowed.domains["x"].bits_per_char == pytest.approx(full.domains["x"].bits_per_char, rel=0.05)


def test_ppl_cli_table_json_and_out(tmp_path, tiny_llama_dir, heldout, run_cli):
    out = tmp_path / "ppl"
    rc, stdout, err = run_cli("ppl", "--model", tiny_llama_dir, "--data", f"law={heldout['law']}",
                              "--data", heldout["daily"], "--max-chars", "400", "--out", out, "--json", "-")
    assert rc == 0, err
    data = json.loads(stdout)
    row = data["scores"][0]
    assert set(row["domains"]) == {"law", "daily"}
    assert row["domains"]["law"]["chars"] >= 400 and row["domains"]["law"]["bits_per_char"] > 0
    assert math.isclose(row["mean_bits_per_char"], (row["domains"]["law"]["bits_per_char"]
                                                     + row["domains"]["daily"]["bits_per_char"]) / 2)
    assert "| model | law bits/char | daily bits/char | mean bits/char" in (out / "ppl.md").read_text()
    assert json.loads((out / "ppl.json").read_text())["scores"][0]["model"] == tiny_llama_dir.name


def test_ppl_refuses_mismatched_tokenizer(tmp_path, tiny_llama_dir, heldout, run_cli):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tok.add_tokens([f"<extra{i}>" for i in range(300)])
    tok.save_pretrained(tmp_path / "tok")
    rc, _, err = run_cli("ppl", "--model", tiny_llama_dir, "--tokenizer", tmp_path / "tok",
                         "--data", f"law={heldout['law']}", "--max-chars", "100")
    assert rc == 1
    assert "tokenizer has 32,300 tokens but the model's vocabulary has 32,000" in err
    assert len(err.strip().splitlines()) == 1


def test_ppl_refuses_missing_model_folder(tmp_path, heldout, run_cli):
    rc, _, err = run_cli("ppl", "--model", tmp_path / "nope", "--data", f"law={heldout['law']}")
    assert rc == 1 and "not a model folder" in err


def test_evaluate_perplexity_leaves_caller_rng_and_progress_bars(tiny_llama_dir, heldout):
    """The library call seeds its own RNG fork and puts transformers' progress bars back as it found them."""
    import torch
    from transformers.utils import logging as hf_logging

    from mixnu.perplexity import PplConfig, evaluate_perplexity

    hf_logging.enable_progress_bar()
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    evaluate_perplexity(PplConfig(models=[tiny_llama_dir], data={"law": heldout["law"]}, max_chars=200, quiet=True))
    assert torch.equal(torch.rand(3), expected)
    assert hf_logging.is_progress_bar_enabled()
