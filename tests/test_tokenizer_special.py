"""Issue #11 items 2 and 6: added tokens in the base, and the extended folder's BOS.

Item 2: a Llama-2 folder carrying `<pad>` at 32000, extended to 33,000 pieces, must not give 32000
to both `<pad>` and a new piece: `extend` refuses with one line naming the added tokens.
Item 6: the extended folder adds BOS (not EOS) like the published Llama-2 tokenizer, loads with
sentencepiece's ids (inputs starting with whitespace included), and tells llama.cpp's converter to
add BOS.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import sentencepiece as spm

from mixnu.errors import TokenizerError
from mixnu.tokenizer import ExtendConfig, extend_tokenizer

# Inputs where transformers 5.24's LlamaTokenizer class drops one leading space (measured), and others.
WHITESPACE_LEADING = [" ", "  ", "   ", "\t", "\n", " Hello world", "  안녕 하세요", " 안녕", "   Hello\n    Hello",
                      " (", "\n =", " this is 🦙.cpp"]
OTHER = ["Hello world", "가격은 <s>10,000원</s> 8,000원입니다. 특수 토큰 <unk> 도 글자일 뿐.", "이사 온 날 a  b"]


@pytest.fixture(scope="module")
def small_extension(tmp_path_factory, llama2_sp_model, corpora) -> Path:
    """Llama-2 extended to 33,000 pieces (the issue's size) from one domain corpus."""
    out = tmp_path_factory.mktemp("ext") / "tok"
    extend_tokenizer(ExtendConfig(base=llama2_sp_model, corpus=[corpora["daily"]], out=out, vocab_size=33000,
                                  sample_lines=3000, verify_lines=200))
    return out


@pytest.fixture(scope="module")
def base_with_pad(tmp_path_factory, llama2_tokenizer_dir) -> Path:
    """A fine-tuned-style Llama-2 folder: `<pad>` added at id 32000."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(llama2_tokenizer_dir)
    tok.add_special_tokens({"pad_token": "<pad>"})
    out = tmp_path_factory.mktemp("llama2-pad")
    tok.save_pretrained(out)
    shutil.copy(llama2_tokenizer_dir / "tokenizer.model", out / "tokenizer.model")
    assert tok.convert_tokens_to_ids("<pad>") == 32000
    return out


# ---- item 2 ---------------------------------------------------------------------------------------------

def test_extend_refuses_a_base_with_added_tokens(tmp_path, base_with_pad, corpora):
    out = tmp_path / "ext"
    with pytest.raises(TokenizerError, match=r"<pad>=32000") as err:
        extend_tokenizer(ExtendConfig(base=base_with_pad, corpus=[corpora["daily"]], out=out, vocab_size=33000,
                                      sample_lines=3000))
    assert "\n" not in str(err.value) and not out.exists()


def test_cli_extend_with_added_tokens_is_one_line_exit_1(tmp_path, base_with_pad, corpora, run_cli):
    rc, out, err = run_cli("tokenizer", "extend", "--base", base_with_pad, "--corpus", corpora["daily"],
                           "--vocab-size", "33000", "--out", tmp_path / "ext")
    assert rc == 1 and err.startswith("mixnu: error: ") and "<pad>=32000" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "ext").exists()


def test_extended_ids_are_unique_in_every_file(small_extension):
    """No id is held by two tokens: tokenizer.json vocab, its added tokens, and what transformers loads."""
    from transformers import AutoTokenizer

    data = json.loads((small_extension / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    assert sorted(vocab.values()) == list(range(33000))
    assert all(vocab.get(t["content"]) == t["id"] for t in data["added_tokens"])
    assert len(AutoTokenizer.from_pretrained(small_extension)) == 33000


# ---- item 6 ---------------------------------------------------------------------------------------------

def test_extended_folder_adds_bos_like_llama2(small_extension):
    cfg = json.loads((small_extension / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert cfg["add_bos_token"] is True and cfg["add_eos_token"] is False
    assert cfg["tokenizer_class"] in ("PreTrainedTokenizerFast", "LlamaTokenizerFast", "LlamaTokenizer")
    assert (cfg["bos_token"], cfg["eos_token"], cfg["unk_token"]) == ("<s>", "</s>", "<unk>")
    post = json.loads((small_extension / "tokenizer.json").read_text(encoding="utf-8"))["post_processor"]
    assert post["single"][0] == {"SpecialToken": {"id": "<s>", "type_id": 0}}
    prov = json.loads((small_extension / "mixnu_tokenizer.json").read_text(encoding="utf-8"))
    assert prov["special_tokens"]["add_bos_token"] is True


@pytest.mark.parametrize("text", WHITESPACE_LEADING + OTHER)
def test_extended_folder_gives_sentencepiece_ids_with_bos(small_extension, text):
    """AutoTokenizer on the folder: `[BOS] + sentencepiece ids`, no EOS, leading whitespace kept."""
    from transformers import AutoTokenizer

    from mixnu.text import document_ids

    tok = AutoTokenizer.from_pretrained(small_extension)
    sp = spm.SentencePieceProcessor(model_file=str(small_extension / "tokenizer.model"))
    ids = sp.encode(text)
    assert tok(text, split_special_tokens=True)["input_ids"] == [1] + ids  # what vLLM / users get
    assert document_ids(tok, [text]) == [[1] + ids]  # what mixnu's stages use


def test_llama_cpp_converter_reads_add_bos(small_extension):
    """llama.cpp's converter (gguf-py's SpecialVocab) sees add_bos true, add_eos false, bos id 1."""
    import gguf  # llama.cpp's gguf-py, a dependency of mixnu

    sv = gguf.SpecialVocab(small_extension, load_merges=False, n_vocab=33000)
    assert sv.add_special_token.get("bos") is True and not sv.add_special_token.get("eos")
    assert sv.special_token_ids.get("bos") == 1


def test_expand_and_train_keep_the_folder_special_tokens(tmp_path, small_extension, tiny_llama_dir, corpora):
    """Down the recipe (expand -> train), every folder declares BOS as `extend` wrote it, for llama.cpp too."""
    import gguf
    from transformers import AutoTokenizer

    from mixnu.expand import ExpandConfig, expand_model
    from mixnu.io import read_corpus
    from mixnu.train import TrainConfig, train

    expanded = expand_model(ExpandConfig(model=tiny_llama_dir, tokenizer=small_extension, out=tmp_path / "exp",
                                         quiet=True)).out
    data = tmp_path / "d.txt"
    data.write_text("\n".join(read_corpus(corpora["daily"], max_lines=40)) + "\n", encoding="utf-8")
    trained = train(TrainConfig(model=expanded, data=[data], out=tmp_path / "tr", cache_dir=tmp_path / "cache",
                                steps=1, seq_len=32, batch_size=2, eval_tokens=64, quiet=True, seed=0)).out
    want = (small_extension / "tokenizer_config.json").read_bytes()
    for folder in (expanded, trained):
        assert (folder / "tokenizer_config.json").read_bytes() == want
        assert json.loads(want)["add_bos_token"] is True
        assert AutoTokenizer.from_pretrained(folder)("이사 온 날")["input_ids"][0] == 1
        assert gguf.SpecialVocab(folder, load_merges=False, n_vocab=33000).add_special_token.get("bos") is True
