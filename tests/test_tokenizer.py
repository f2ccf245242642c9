"""Proofs for `mixnu tokenizer extend`, on the real Llama-2 tokenizer and the real shared corpora.

1. the base pieces are untouched; 2. text without added characters keeps the base ids; 3. decode
inverts encode; 4. every added piece is reachable; 5. sentencepiece == fast tokenizer on the dev
set and the whole corpora; 6. same inputs give byte-identical folders. Plus bad input.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sentencepiece as spm
from tokenizers import Tokenizer

from mixnu.io import iter_corpus, read_corpus
from mixnu.tokenizer import (
    PROVENANCE_FILE,
    ExtendConfig,
    extend_tokenizer,
    is_hangul_char,
    load_sp_proto,
    reachable_share,
)

N = 46262


@pytest.fixture(scope="session")
def extended(tmp_path_factory, llama2_sp_model, corpora):
    """The default extension of Llama-2 to 46,262 pieces, built once."""
    out = tmp_path_factory.mktemp("ext") / "mixnu-tok"
    res = extend_tokenizer(ExtendConfig(base=llama2_sp_model, corpus=list(corpora.values()), out=out))
    return out, res


@pytest.fixture(scope="session")
def sp_pair(extended, llama2_sp_model):
    out, _ = extended
    return (spm.SentencePieceProcessor(model_file=str(llama2_sp_model)),
            spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model")))


def test_result_has_exactly_n_pieces_and_provenance(extended, llama2_sp_model, corpora):
    out, res = extended
    assert res.vocab_size == N and res.added == N - 32000
    assert spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model")).get_piece_size() == N
    fast = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert fast.get_vocab_size() == N
    prov = json.loads((out / PROVENANCE_FILE).read_text(encoding="utf-8"))
    assert prov["base"]["sha256"] == "9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347"
    assert {c["path"] for c in prov["corpus"]} == {str(p) for p in corpora.values()}
    assert all(c["bytes"] == Path(c["path"]).stat().st_size for c in prov["corpus"])
    assert prov["settings"]["vocab_size"] == N and prov["result"]["pieces"] == N


def test_proof1_base_pieces_identical(extended, llama2_sp_model):
    base = load_sp_proto(llama2_sp_model)
    ext = load_sp_proto(extended[0] / "tokenizer.model")
    assert len(ext.pieces) == N
    for a, b in zip(base.pieces, ext.pieces[:32000], strict=True):
        assert (a.piece, a.score, a.type) == (b.piece, b.score, b.type)
    added = [p.score for p in ext.pieces[32000:]]
    assert all(x > y for x, y in zip(added, added[1:], strict=False)), "added scores must strictly decrease"
    assert max(added) < min(p.score for p in base.pieces if p.score > -1e8)


NON_KOREAN = [
    "The quick brown fox jumps over the lazy dog. It's 3:45 p.m.; was it?!!!!!!",
    "def f(x):\n    return {'a': [1, 2, 3], \"b\": x ** 2}  # comment\n\tprint(f(10))",
    "1234567890 3.14159 -42 1e-9 0x1F 1,000,000 $12.50 50%",
    "https://example.com/path?q=tokenizer&lang=ko#frag  ftp://a.b/c  user@mail.org",
    "!!!!!! ?? ... --- *** ### ((()))  [[x]] <tag attr=\"v\"/>",
    "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich. Ça va? ¿Qué tal?",
    "  leading and trailing spaces  \n\nnew  lines  ",
]


def test_proof2_text_without_added_characters_keeps_base_ids(extended, sp_pair, corpora):
    base_sp, ext_sp = sp_pair
    ext_fast = Tokenizer.from_file(str(extended[0] / "tokenizer.json"))
    added_chars = {p for p in (ext_sp.id_to_piece(i) for i in range(32000, N)) if len(p) == 1}
    # real corpus lines with every Hangul and added character removed: digits, Latin, punctuation
    stripped = []
    for path in corpora.values():
        for line in read_corpus(path, max_lines=1500):
            s = "".join(c for c in line if c not in added_chars and not is_hangul_char(c))
            if s.strip():
                stripped.append(s)
    texts = NON_KOREAN + stripped
    assert len(stripped) > 3000
    expected = base_sp.encode(texts)
    assert ext_sp.encode(texts) == expected
    assert [e.ids for e in ext_fast.encode_batch(texts, add_special_tokens=False)] == expected


SPECIAL = [
    "이모지 😀👍🏽 와 한자 漢字 大韓民國 섞인 문장.",
    "제로\u200b폭\u200c공백\u200d과 BOM\ufeff 그리고 소프트\u00adhyphen",
    "제어\x00문자\x07와\x1b탭\t줄\r\n바꿈",
    "   앞뒤 공백과  두 칸   ",
    "ㅋㅋㅋㅋ ㅠㅠ ㆍ 옛한글 ᄒᆞᆫ글 ①②③ ㎡",
]


def test_proof3_decode_inverts_encode(extended, sp_pair, dev_set, ood_set):
    _, ext_sp = sp_pair
    fast = Tokenizer.from_file(str(extended[0] / "tokenizer.json"))
    texts = [t for _, t in dev_set + ood_set] + SPECIAL
    ids = ext_sp.encode(texts)
    bad = [t for t, x in zip(texts, ids, strict=True) if ext_sp.decode(x) != t]
    assert not bad, bad[:3]
    bad_fast = [t for t, x in zip(texts, ids, strict=True) if fast.decode(x, skip_special_tokens=False) != t]
    assert not bad_fast, bad_fast[:3]


def test_proof4_every_added_piece_reachable(extended):
    share = reachable_share(extended[0] / "tokenizer.model", 32000)
    assert share == 1.0


def test_proof5_slow_and_fast_identical_on_dev_ood_and_corpora(extended, sp_pair, dev_set, ood_set, corpora):
    _, ext_sp = sp_pair
    fast = Tokenizer.from_file(str(extended[0] / "tokenizer.json"))
    texts = [t for _, t in dev_set + ood_set] + [ln for p in corpora.values() for ln in iter_corpus(p)]
    assert len(texts) > 110_000
    slow = ext_sp.encode(texts)
    got = [e.ids for e in fast.encode_batch(texts, add_special_tokens=False)]
    mismatched = sum(a != b for a, b in zip(slow, got, strict=True))
    assert mismatched == 0


def test_folder_loads_with_autotokenizer_fast_and_slow(extended, sp_pair, dev_set):
    from transformers import AutoTokenizer

    _, ext_sp = sp_pair
    texts = [t for _, t in dev_set[::50]]
    for use_fast in (True, False):
        tok = AutoTokenizer.from_pretrained(extended[0], use_fast=use_fast)
        assert len(tok) == N
        assert [tok.encode(t, add_special_tokens=False) for t in texts] == ext_sp.encode(texts)


def test_coverage_policy_characters_are_single_pieces(sp_pair, ood_set):
    """Whatever the corpus held: KS X 1001 syllables, all jamo, the first 1,800 prior Hanja, Korean symbols."""
    from mixnu.charsets import compatibility_jamo, ksx1001_syllables, modern_conjoining_jamo
    from mixnu.tokenizer.coverage import hanja_prior

    _, ext_sp = sp_pair
    must = ksx1001_syllables() + compatibility_jamo() + modern_conjoining_jamo() + list(hanja_prior()[:1800])
    must += "｢ ｣ ․ ‧ 〈 〉 ◯ ㎏ ㎜ ･ …".split()
    missing = [c for c in must if ext_sp.piece_to_id(c) == ext_sp.unk_id()]
    assert not missing, missing[:20]
    ids = ext_sp.encode([t for _, t in ood_set])
    n = sum(map(len, ids))
    assert sum(ext_sp.is_byte(i) for x in ids for i in x) / n < 0.003  # the target is 0.20 %; before: 0.645 %


def test_added_pieces_hold_hangul_or_are_single_characters(sp_pair):
    _, ext_sp = sp_pair
    for i in range(32000, N):
        p = ext_sp.id_to_piece(i)
        assert len(p) == 1 or any(is_hangul_char(c) for c in p), p
        assert len(p) == 1 or not re.fullmatch(r"[▁\s\d]*", p), p  # single full-width digits (０) are KS X 1001


def test_compresses_korean_without_byte_fallback(sp_pair, dev_set):
    base_sp, ext_sp = sp_pair
    texts = [t for _, t in dev_set]
    base_n = sum(map(len, base_sp.encode(texts)))
    ids = ext_sp.encode(texts)
    n = sum(map(len, ids))
    byte = sum(ext_sp.is_byte(i) for x in ids for i in x)
    assert n < 0.35 * base_n
    assert byte / n < 0.002


def test_proof6_same_inputs_byte_identical_via_api_and_cli(tmp_path, llama2_sp_model, corpora, run_cli):
    """A small build twice (API, then CLI): every file in the folder has the same bytes."""
    corpus = [corpora["law"], corpora["daily"]]
    a = tmp_path / "a"
    extend_tokenizer(ExtendConfig(base=llama2_sp_model, corpus=corpus, out=a, vocab_size=34000,
                                  sample_lines=15000, verify_lines=300))
    b = tmp_path / "b"
    args = ["tokenizer", "extend", "--base", llama2_sp_model, "--out", b, "--vocab-size", "34000", "-q",
            "--set", "sample_lines=15000", "--set", "verify_lines=300"]
    for p in corpus:
        args += ["--corpus", p]
    rc, _, err = run_cli(*args)
    assert rc == 0, err
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", PROVENANCE_FILE} <= set(names)
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert spm.SentencePieceProcessor(model_file=str(a / "tokenizer.model")).get_piece_size() == 34000


# ------------------------------------------------------------------------------------ bad input
def _unigram_model(tmp_path: Path) -> Path:
    import io

    buf = io.BytesIO()
    lines = [f"문장 {i} 입니다 hello world {i * 7}" for i in range(300)]
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, model_type="unigram",
                                   vocab_size=60, minloglevel=2, hard_vocab_limit=False)
    path = tmp_path / "unigram.model"
    path.write_bytes(buf.getvalue())
    return path


def _byte_level_folder(tmp_path: Path, name: str = "bytelevel", vocab: int = 400) -> Path:
    """A small real byte-level BPE (GPT-2 style) trained on English, saved as tokenizer.json only."""
    from tokenizers import Tokenizer as T
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = T(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    english = [" ".join(NON_KOREAN)] * 20 + [f"line {i}: the tokenizer handles code and prose" for i in range(200)]
    tok.train_from_iterator(english, trainers.BpeTrainer(
        vocab_size=vocab, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    folder = tmp_path / name
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))
    return folder


def _wordpiece_folder(tmp_path: Path) -> Path:
    from tokenizers import Tokenizer as T
    from tokenizers import models, pre_tokenizers, trainers

    tok = T(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["hello world 안녕"] * 10, trainers.WordPieceTrainer(vocab_size=100, show_progress=False,
                                                                               special_tokens=["[UNK]"]))
    folder = tmp_path / "wordpiece"
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))
    return folder


def test_byte_level_bpe_base_is_extended(tmp_path, corpora, dev_set):
    """A byte-level BPE base: ids, merges and non-Hangul text unchanged; new tokens reachable."""
    from transformers import AutoTokenizer

    base_dir = _byte_level_folder(tmp_path)
    base = Tokenizer.from_file(str(base_dir / "tokenizer.json"))
    n_base = base.get_vocab_size()
    out = tmp_path / "ext"
    res = extend_tokenizer(ExtendConfig(base=base_dir, corpus=[corpora["literature"]], out=out,
                                        vocab_size=n_base + 600, sample_lines=4000))
    assert res.vocab_size == n_base + 600 and res.added == 600
    new_spec = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
    old_spec = json.loads((base_dir / "tokenizer.json").read_text(encoding="utf-8"))
    assert all(new_spec["model"]["vocab"][t] == i for t, i in old_spec["model"]["vocab"].items())
    assert new_spec["model"]["merges"][: len(old_spec["model"]["merges"])] == old_spec["model"]["merges"]
    new = Tokenizer.from_file(str(out / "tokenizer.json"))
    texts = NON_KOREAN + ["".join(c for c in t if not is_hangul_char(c)) for _, t in dev_set[:300]]
    assert [e.ids for e in new.encode_batch(texts)] == [e.ids for e in base.encode_batch(texts)]
    korean = [t for _, t in dev_set] + SPECIAL
    enc = new.encode_batch(korean)
    assert all(new.decode(e.ids) == t for e, t in zip(enc, korean, strict=True))
    assert sum(len(e.ids) for e in enc) < 0.7 * sum(len(e.ids) for e in base.encode_batch(korean))
    whole = [i for i in range(n_base, n_base + 600) if "\ufffd" not in new.decode([i])]
    assert len(whole) > 300  # the rest are first bytes of syllables, steps towards whole ones
    for i in whole:  # every added whole-character token is reachable
        assert new.encode(new.decode([i])).ids == [i], new.id_to_token(i)
    assert len(AutoTokenizer.from_pretrained(out)) == n_base + 600
    assert json.loads((out / PROVENANCE_FILE).read_text(encoding="utf-8"))["result"]["added"] == 600


@pytest.mark.parametrize("case", ["empty", "not_utf8", "n_too_small", "unigram", "corrupt", "wordpiece",
                                  "exists"])
def test_bad_input_one_line_exit_1_nothing_written(case, tmp_path, llama2_sp_model, corpora, run_cli):
    base, corpus, n = llama2_sp_model, corpora["literature"], "33000"
    out = tmp_path / "out"
    if case == "empty":
        corpus = tmp_path / "empty.txt"
        corpus.write_text("\n  \n", encoding="utf-8")
    elif case == "not_utf8":
        corpus = tmp_path / "cp949.txt"
        corpus.write_bytes("한국어 문장입니다\n".encode("cp949"))
    elif case == "n_too_small":
        n = "32000"
    elif case == "unigram":
        base = _unigram_model(tmp_path)
    elif case == "corrupt":
        base = tmp_path / "tokenizer.model"
        base.write_bytes(b"\x00\xffnot a model" * 50)
    elif case == "wordpiece":
        base = _wordpiece_folder(tmp_path)
    elif case == "exists":
        out.mkdir()
        (out / "keep.txt").write_text("mine", encoding="utf-8")
    before = sorted(p.name for p in tmp_path.iterdir())
    rc, _, err = run_cli("tokenizer", "extend", "--base", base, "--corpus", corpus, "--out", out,
                         "--vocab-size", n, "-q")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 1 and len(lines) == 1 and lines[0].startswith("mixnu: error:"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temp folder left
    if case == "exists":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    if case in ("unigram", "wordpiece"):
        assert "BPE" in lines[0]
