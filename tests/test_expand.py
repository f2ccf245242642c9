"""`mixnu expand`: old rows bit-identical, EEVE subword-mean init, the `▁` pitfall, bad tokenizers refused."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from mixnu.errors import TokenizerError
from mixnu.expand import ExpandConfig, base_segmentation, expand_model
from mixnu.io import read_corpus
from tests.conftest import build_tiny_llama


def build_extended_tokenizer(out: Path, sp_model: Path, corpus: Path, n_pieces: int = 300) -> Path:
    """Append Hangul pieces to the Llama-2 SentencePiece proto (distinct, decreasing scores below all others).

    Pieces: frequent syllables missing from Llama-2, then `▁`+syllable and syllable bigrams whose halves are
    pieces (so BPE can reach them). Writes `tokenizer.model` + the HF files into `out`.
    """
    import sentencepiece.sentencepiece_model_pb2 as pb
    from transformers import AutoTokenizer

    proto = pb.ModelProto()
    proto.ParseFromString(sp_model.read_bytes())
    have = {p.piece for p in proto.pieces}
    lines = read_corpus(corpus, max_lines=3000)
    syl = Counter(ch for line in lines for ch in line if "가" <= ch <= "힣")
    words = Counter(w for line in lines for w in line.split())
    new: list[str] = [s for s, _ in syl.most_common() if s not in have][: n_pieces // 3]
    known = have | set(new)
    starts = Counter("▁" + w[0] for w in words.elements() if "가" <= w[0] <= "힣")
    new += [p for p, _ in starts.most_common() if p not in have and p[1] in known][: n_pieces // 3]
    bigrams = Counter(w[i:i + 2] for w in words.elements() for i in range(len(w) - 1)
                      if all("가" <= c <= "힣" for c in w[i:i + 2]))
    new += [b for b, _ in bigrams.most_common() if b not in known][: n_pieces - len(new)]
    low = min(p.score for p in proto.pieces)
    for k, piece in enumerate(new):
        sp = proto.pieces.add()
        sp.piece, sp.score, sp.type = piece, low - 1.0 - k, pb.ModelProto.SentencePiece.NORMAL
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.model").write_bytes(proto.SerializeToString())
    AutoTokenizer.from_pretrained(out).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def ext_tok_dir(tmp_path_factory, llama2_sp_model, corpora) -> Path:
    return build_extended_tokenizer(tmp_path_factory.mktemp("ext-tok"), llama2_sp_model, corpora["law"])


@pytest.fixture(scope="module")
def tied_llama_dir(tmp_path_factory, llama2_tokenizer_dir) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tied"), llama2_tokenizer_dir, tie=True, hidden=32)


def _expand(model, tok, out, **kw):
    return expand_model(ExpandConfig(model=model, tokenizer=tok, out=out, quiet=True, **kw))


def test_dummy_prefix_pitfall(llama2_tokenizer):
    """`▁학교` splits into the space piece + syllables; `학교` has no space piece; naive encode would add one."""
    space = llama2_tokenizer.convert_tokens_to_ids("▁")
    assert base_segmentation(llama2_tokenizer, "학교")[0] != space
    assert llama2_tokenizer.convert_ids_to_tokens(base_segmentation(llama2_tokenizer, "▁the")) == ["▁the"]
    naive = llama2_tokenizer("학교", add_special_tokens=False)["input_ids"]
    assert naive[0] == space  # the pitfall exists in the raw encoding
    assert llama2_tokenizer.decode(base_segmentation(llama2_tokenizer, "학교")) == "학교"


@pytest.mark.parametrize("output_init", ["first", "mean"])
def test_untied_expand_keeps_old_rows_and_inits_subword_mean(tmp_path, tiny_llama_dir, ext_tok_dir,
                                                             llama2_tokenizer, output_init):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    res = _expand(tiny_llama_dir, ext_tok_dir, tmp_path / "x", output_init=output_init, pad_to_multiple_of=64)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    new = AutoModelForCausalLM.from_pretrained(tmp_path / "x", dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(tmp_path / "x")
    n0, n1 = 32000, len(tok)
    assert res.base_vocab_size == n0 and res.new_vocab_size == n1 > n0
    assert res.padded_vocab_size % 64 == 0 and new.config.vocab_size == res.padded_vocab_size >= n1
    assert json.loads((tmp_path / "x" / "mixnu_expand.json").read_text())["pad_to_multiple_of"] == 64
    assert (tmp_path / "x" / "tokenizer.model").is_file()
    ein, eout = new.get_input_embeddings().weight, new.get_output_embeddings().weight
    assert torch.equal(ein[:n0], base.get_input_embeddings().weight)
    assert torch.equal(eout[:n0], base.get_output_embeddings().weight)
    # every new piece: input row = mean of its base pieces' rows; output row = first / mean
    bin_, bout = base.get_input_embeddings().weight, base.get_output_embeddings().weight
    for i in range(n0, n1):
        ids = base_segmentation(llama2_tokenizer, tok.convert_ids_to_tokens(i))
        assert ids and tok.convert_ids_to_tokens(ids[0]) != "▁"
        torch.testing.assert_close(ein[i], bin_[ids].mean(0), rtol=0, atol=1e-6)
        want = bout[ids[0]] if output_init == "first" else bout[ids].mean(0)
        torch.testing.assert_close(eout[i], want, rtol=0, atol=1e-6)


def test_logits_on_non_hangul_text_unchanged_exactly(tmp_path, tiny_llama_dir, ext_tok_dir, llama2_tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _expand(tiny_llama_dir, ext_tok_dir, tmp_path / "x")
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    new = AutoModelForCausalLM.from_pretrained(tmp_path / "x", dtype=torch.float32)
    text = "The quick brown fox jumps over the lazy dog. 1 + 1 = 2; print('hello')!!!"
    ids_new = AutoTokenizer.from_pretrained(tmp_path / "x")(text, return_tensors="pt").input_ids
    ids_old = llama2_tokenizer(text, return_tensors="pt").input_ids
    assert torch.equal(ids_new, ids_old)
    a = base(input_ids=ids_old).logits
    b = new(input_ids=ids_new).logits
    assert torch.equal(a, b[..., :32000])


def test_tied_expand_and_inits(tmp_path, tied_llama_dir, ext_tok_dir):
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tied_llama_dir, dtype=torch.float32)
    rows = {}
    for init in ("subword-mean", "mean", "random"):
        res = _expand(tied_llama_dir, ext_tok_dir, tmp_path / init, init=init, seed=3)
        assert res.tied
        m = AutoModelForCausalLM.from_pretrained(tmp_path / init, dtype=torch.float32)
        w = m.get_input_embeddings().weight
        assert m.get_output_embeddings().weight.data_ptr() == w.data_ptr()
        assert torch.equal(w[:32000], base.get_input_embeddings().weight)
        rows[init] = w[32000:].clone()
    old = base.get_input_embeddings().weight
    assert torch.allclose(rows["mean"], old.mean(0).expand_as(rows["mean"]), atol=1e-6)
    assert rows["subword-mean"].std(0).mean() > 0.1 * old.std(0).mean()  # rows differ per piece
    assert not torch.allclose(rows["random"], rows["mean"])


def test_refuses_misaligned_tokenizer(tmp_path, tiny_llama_dir, ext_tok_dir, run_cli):
    import sentencepiece.sentencepiece_model_pb2 as pb
    from transformers import AutoTokenizer

    proto = pb.ModelProto()
    proto.ParseFromString((ext_tok_dir / "tokenizer.model").read_bytes())
    proto.pieces[500].piece, proto.pieces[501].piece = proto.pieces[501].piece, proto.pieces[500].piece
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tokenizer.model").write_bytes(proto.SerializeToString())
    AutoTokenizer.from_pretrained(bad).save_pretrained(bad)
    with pytest.raises(TokenizerError, match="piece 500"):
        _expand(tiny_llama_dir, bad, tmp_path / "o")
    rc, _, err = run_cli("expand", "--model", tiny_llama_dir, "--tokenizer", bad, "--out", tmp_path / "o")
    assert rc == 1 and err.strip().startswith("mixnu: error:") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_cli_expand_and_existing_output(tmp_path, tiny_llama_dir, ext_tok_dir, run_cli):
    out = tmp_path / "cli"
    rc, stdout, _ = run_cli("expand", "--model", tiny_llama_dir, "--tokenizer", ext_tok_dir, "--out", out,
                            "--init", "mean", "--json", "-", "-q")
    assert rc == 0 and json.loads(stdout)["init"] == "mean"
    rc, _, err = run_cli("expand", "--model", tiny_llama_dir, "--tokenizer", ext_tok_dir, "--out", out)
    assert rc == 1 and "--force" in err
    rc, _, err = run_cli("expand", "--model", tmp_path / "nope", "--tokenizer", ext_tok_dir, "--out", tmp_path / "z")
    assert rc == 1 and "config.json" in err


def test_interrupted_expand_leaves_nothing(tmp_path, tiny_llama_dir, ext_tok_dir, monkeypatch):
    from transformers import PreTrainedModel

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", boom)
    with pytest.raises(KeyboardInterrupt):
        _expand(tiny_llama_dir, ext_tok_dir, tmp_path / "o")
    assert list(tmp_path.iterdir()) == []


def test_extended_tokenizer_fixture_is_valid(ext_tok_dir, llama2_tokenizer):
    """The fixture really extends Llama-2: same first 32,000 pieces, and Korean text gets shorter."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ext_tok_dir)
    assert 32200 <= len(tok) <= 32300
    text = "대법원은 원심 판결을 파기하고 사건을 환송한다."
    assert len(tok(text).input_ids) < len(llama2_tokenizer(text).input_ids)
