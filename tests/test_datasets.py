"""Built-in data (`mixnu.datasets`), the one resolution rule, and `mixnu data list|export|prepare`."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from mixnu import datasets
from mixnu.errors import DataError

LLAMA2_SHA256 = "9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347"
PACKAGE = Path(datasets.__file__).parent / "_data" / "datasets"


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty cache and no data variables: the built-in data is unpacked from the package."""
    monkeypatch.setenv("MIXNU_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MIXNU_DATA", raising=False)
    monkeypatch.delenv("MIXNU_SHARED", raising=False)
    datasets._unpacked.cache_clear()
    yield tmp_path / "cache"
    datasets._unpacked.cache_clear()


def test_package_holds_the_data_within_6_mb_with_licences():
    files = datasets.manifest()["files"]
    assert set(files) == {*(f"corpus/{d}.txt" for d in datasets.DOMAINS),
                          *(f"eval/{d}_heldout.txt" for d in datasets.DOMAINS),
                          "eval/dev_sentences.tsv", "eval/ood_sentences.tsv", "tokenizers/llama-2/tokenizer.model"}
    total = sum(p.stat().st_size for p in PACKAGE.rglob("*") if p.is_file())
    assert total <= 6_000_000, total
    assert files["tokenizers/llama-2/tokenizer.model"]["sha256"] == LLAMA2_SHA256
    assert files["eval/dev_sentences.tsv"]["lines"] == 1000 and files["eval/ood_sentences.tsv"]["lines"] == 911
    licence = (PACKAGE / "tokenizers/llama-2/LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("LLAMA 2 COMMUNITY LICENSE AGREEMENT") and "7. Governing Law" in licence
    notice = (PACKAGE / "tokenizers/llama-2/NOTICE").read_text(encoding="utf-8")
    assert "Llama 2 is licensed under the LLAMA 2 Community License, Copyright (c) Meta Platforms, Inc." in notice
    sources = (PACKAGE / "DATA_LICENSES.md").read_text(encoding="utf-8")
    for needle in ("KoCoNovel", "CC BY-SA 4.0", "CC0", "MPL-2.0", "Copyright Act", "gnome-user-docs", "Llama 2"):
        assert needle in sources, needle


def test_load_builtin_unpacks_once_and_checks_sha256(fresh_cache):
    path = datasets.load_builtin("tokenizers/llama-2/tokenizer.model")
    assert path.is_relative_to(fresh_cache)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == LLAMA2_SHA256
    mtime = path.stat().st_mtime_ns
    datasets._unpacked.cache_clear()
    assert datasets.load_builtin("tokenizers/llama-2/tokenizer.model").stat().st_mtime_ns == mtime  # not rewritten
    path.write_bytes(b"tampered")  # a damaged cached copy is replaced by a fresh, checked one
    datasets._unpacked.cache_clear()
    assert hashlib.sha256(datasets.load_builtin("tokenizers/llama-2/tokenizer.model").read_bytes()).hexdigest() \
        == LLAMA2_SHA256


def test_unknown_builtin_name_lists_the_known_ones(fresh_cache):
    with pytest.raises(DataError, match=r"no built-in data file 'corpus/news.txt'; built-in files: corpus/law.txt"):
        datasets.load_builtin("corpus/news.txt")


def test_resolution_order_explicit_then_env_then_builtin(fresh_cache, tmp_path, monkeypatch):
    assert datasets.data_dir() == datasets.builtin_root()
    assert datasets.corpus_files()["law"].parent == datasets.builtin_root() / "corpus"
    shared = tmp_path / "shared"
    (shared / "data" / "corpus").mkdir(parents=True)
    (shared / "data" / "corpus" / "news.txt").write_text("뉴스 한 줄\n", encoding="utf-8")
    monkeypatch.setenv("MIXNU_SHARED", str(shared))
    assert set(datasets.corpus_files()) == {"news"}
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "blog.jsonl").write_text('{"text": "블로그"}\n', encoding="utf-8")
    monkeypatch.setenv("MIXNU_DATA", str(mine))  # MIXNU_DATA wins over MIXNU_SHARED
    assert set(datasets.corpus_files()) == {"blog"}
    explicit = tmp_path / "explicit"
    explicit.mkdir()
    (explicit / "law.txt.gz").write_bytes(gzip.compress("법 조문\n".encode()))
    assert set(datasets.corpus_files(explicit)) == {"law"}  # an explicit folder wins over both
    with pytest.raises(DataError, match=r"tokenizers/llama-2/tokenizer.model not found in the data folder set by "
                                        r"MIXNU_DATA/MIXNU_SHARED; add it there or unset"):
        datasets.llama2_tokenizer_model()
    monkeypatch.setenv("MIXNU_DATA", str(tmp_path / "nope"))
    with pytest.raises(DataError, match=r"MIXNU_DATA=.*nope is not a folder; fix MIXNU_DATA or unset it"):
        datasets.data_dir()


def test_resolve_inputs_names_the_data_and_its_sha256(fresh_cache, tmp_path):
    src = datasets.resolve_inputs()
    assert src.name == "built-in mixnu-builtin v1" and len(src.sha256) == 64
    assert set(src.corpus) == set(src.heldout) == set(datasets.DOMAINS)
    assert src.dev == datasets.builtin_root() / "eval" / "dev_sentences.tsv"
    out = tmp_path / "exported"
    datasets.export_builtin(out)
    again = datasets.resolve_inputs(out)  # the exported folder: same bytes, same sha256, its own name
    assert again.sha256 == src.sha256 and again.name == str(out.resolve())
    assert again.heldout["law"] == out / "eval" / "law_heldout.txt" and again.dev == out / "eval" / "dev_sentences.tsv"
    (out / "corpus" / "news.txt").write_text("뉴스\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"no held-out file for domain 'news' in .*exported"):
        datasets.resolve_inputs(out)


def test_cli_list_and_export(fresh_cache, tmp_path, run_cli):
    rc, out, _ = run_cli("data", "list", "--quiet", "--json", "-")
    assert rc == 0
    rows = {r["file"]: r for r in json.loads(out)["files"]}
    assert rows["corpus/law.txt"]["lines"] > 20000 and rows["corpus/law.txt"]["domain"] == "law"
    assert "Llama 2 Community License" in rows["tokenizers/llama-2/tokenizer.model"]["licence"]
    rc, _, err = run_cli("data", "list")
    assert rc == 0 and "mixnu-builtin v1: 11 files" in err
    dest = tmp_path / "data"
    rc, out, _ = run_cli("data", "export", dest, "--quiet", "--json", "-")
    assert rc == 0 and "tokenizers/llama-2/LICENSE" in json.loads(out)["files"]
    assert hashlib.sha256((dest / "tokenizers/llama-2/tokenizer.model").read_bytes()).hexdigest() == LLAMA2_SHA256
    rc, _, err = run_cli("data", "export", dest)
    assert rc == 1 and "already exists" in err and "--force" in err


# ---- prepare -----------------------------------------------------------------------------------------

def _lines(n: int, word: str) -> list[str]:
    return [f"{word} 문장 번호 {i}입니다." for i in range(n)]


def test_prepare_txt_jsonl_gz_split_is_deterministic(tmp_path, run_cli):
    (tmp_path / "a.txt").write_text("\n".join(_lines(30, "법")) + "\n\n", encoding="utf-8")
    with gzip.open(tmp_path / "b.jsonl.gz", "wt", encoding="utf-8") as fh:
        for t in _lines(10, "판례"):
            fh.write(json.dumps({"body": t + "\n둘째 문단", "id": 1}, ensure_ascii=False) + "\n")
    (tmp_path / "c.txt").write_text("\n".join(_lines(40, "기술")), encoding="utf-8")
    args = ["data", "prepare", None, f"law={tmp_path / 'a.txt'}", f"law={tmp_path / 'b.jsonl.gz'}",
            f"tech={tmp_path / 'c.txt'}", "--text-field", "body", "--heldout", "0.1", "--quiet", "--json", "-"]
    results = []
    for name in ("p1", "p2"):
        args[2] = tmp_path / name
        rc, out, err = run_cli(*args)
        assert rc == 0, err
        results.append(json.loads(out))
    law = results[0]["domains"]["law"]
    assert law["lines"] == 50 and law["heldout_lines"] == 5 and law["train_lines"] == 45  # 30 + 10 docs x 2 paragraphs
    held = (tmp_path / "p1" / "eval" / "law_heldout.txt").read_text(encoding="utf-8").splitlines()
    assert held == ["둘째 문단", "판례 문장 번호 8입니다.", "둘째 문단", "판례 문장 번호 9입니다.", "둘째 문단"]  # the tail
    for f in ("corpus/law.txt", "corpus/tech.txt", "eval/tech_heldout.txt", "eval/dev_sentences.tsv", "data.json"):
        assert (tmp_path / "p1" / f).read_bytes() == (tmp_path / "p2" / f).read_bytes(), f
    src = datasets.resolve_inputs(tmp_path / "p1")  # the layout the demo takes
    assert set(src.corpus) == {"law", "tech"} and src.dev == tmp_path / "p1" / "eval" / "dev_sentences.tsv"


def test_prepare_a_datasets_folder(tmp_path, run_cli):
    from datasets import Dataset

    Dataset.from_dict({"content": _lines(25, "일상"), "n": list(range(25))}).save_to_disk(tmp_path / "ds")
    rc, out, err = run_cli("data", "prepare", tmp_path / "out", f"daily={tmp_path / 'ds'}", "--text-field", "content",
                           "--quiet", "--json", "-")
    assert rc == 0, err
    assert json.loads(out)["domains"]["daily"]["heldout_lines"] == 1
    rc, _, err = run_cli("data", "prepare", tmp_path / "out2", f"daily={tmp_path / 'ds'}")
    assert rc == 1 and "no column 'text' (columns: content, n); choose one with --text-field" in err


@pytest.mark.parametrize("case", ["missing_file", "missing_field", "empty_domain", "too_small", "bad_arg"])
def test_prepare_errors_are_one_line(case, tmp_path, run_cli):
    f = tmp_path / "x.jsonl"
    f.write_text('{"text": "한 줄"}\n' * 10, encoding="utf-8")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    arg, extra, expect = {
        "missing_file": (f"law={tmp_path / 'nope.txt'}", [], "nope.txt: file not found"),
        "missing_field": (f"law={f}", ["--text-field", "body"], "x.jsonl:1: JSONL records need a string field 'body' "
                                                                "(this one has: text)"),
        "empty_domain": (f"law={empty}", [], "domain 'law': no text in"),
        "too_small": (f"law={f}", [], "domain 'law': 10 line(s) is too few to hold out 5% (at least 20 lines needed)"),
        "bad_arg": ("law", [], "'law': expected DOMAIN=SOURCE"),
    }[case]
    rc, _, err = run_cli("data", "prepare", tmp_path / "out", arg, *extra)
    assert rc == 1
    assert err.startswith("mixnu: error: ") and expect in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


# ---- GGUF vocab files of peer tokenizers (not built in) ----------------------------------------------

def test_gguf_vocab_comes_from_the_data_folder_when_it_has_it(tmp_path, monkeypatch):
    gguf = tmp_path / "data" / "tokenizers" / "gguf"
    gguf.mkdir(parents=True)
    (gguf / "ggml-vocab-mine.gguf").write_bytes(b"GGUF")
    monkeypatch.setenv("MIXNU_DATA", str(tmp_path / "data"))
    assert datasets.gguf_vocab("mine") == gguf / "ggml-vocab-mine.gguf"


def test_gguf_fetch_failure_says_why(fresh_cache, monkeypatch):
    monkeypatch.setattr(datasets, "LLAMA_CPP_SDIST", "llama-cpp-python==0.0.0.999")  # no such release
    with pytest.raises(DataError, match=r"could not fetch GGUF vocab files: `pip download "
                                        r"llama-cpp-python==0.0.0.999` failed \(.+\); set MIXNU_DATA"):
        datasets.gguf_vocab("llama-bpe")


def test_tokenizer_extend_defaults_to_llama2_and_the_corpora(fresh_cache, tmp_path, run_cli):
    """`mixnu tokenizer extend --out X` alone: base and corpora by the one rule (here: built-in). ~10 s."""
    rc, _, err = run_cli("tokenizer", "extend", "--out", tmp_path / "tok", "--vocab-size", "32300", "--quiet",
                         "--set", "sample_lines=3000", "--set", "verify_lines=50")
    assert rc == 0, err
    prov = json.loads((tmp_path / "tok" / "mixnu_tokenizer.json").read_text(encoding="utf-8"))
    assert prov["base"]["sha256"] == LLAMA2_SHA256 and prov["base"]["path"].startswith(str(fresh_cache))
    assert sorted(Path(c["path"]).name for c in prov["corpus"]) == sorted(f"{d}.txt" for d in datasets.DOMAINS)
