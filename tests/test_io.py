"""Corpus reading and atomic outputs."""

from __future__ import annotations

import gzip
import json
import unicodedata

import pytest

from mixnu.errors import DataError, OutputExistsError
from mixnu.io import append_jsonl, atomic_dir, atomic_write, iter_corpus, read_corpus, read_jsonl


def test_txt_jsonl_and_gzip_read_the_same_nfc_text(tmp_path):
    decomposed = unicodedata.normalize("NFD", "한국어 문장")  # jamo sequence, as some tools save it
    lines = [decomposed, "", "둘째 줄"]
    (tmp_path / "a.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in lines if t) + "\n")
    with gzip.open(tmp_path / "a.txt.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    expected = ["한국어 문장", "둘째 줄"]
    assert unicodedata.is_normalized("NFC", expected[0]) and decomposed != expected[0]
    for name in ("a.txt", "a.jsonl", "a.txt.gz"):
        assert read_corpus(tmp_path / name) == expected, name


def test_bad_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes("좋은 줄\n".encode() + b"\xff\xfe broken\n")
    with pytest.raises(DataError, match=r"bad\.txt:2: not valid UTF-8"):
        list(iter_corpus(path))


@pytest.mark.parametrize("content", ["", "\n  \n\n"])
def test_empty_corpus_is_an_error(tmp_path, content):
    path = tmp_path / "empty.txt"
    path.write_text(content)
    with pytest.raises(DataError, match="empty"):
        read_corpus(path)


def test_missing_corpus_and_bad_jsonl(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_corpus(tmp_path / "nope.txt")
    (tmp_path / "x.jsonl").write_text('{"body": "no text field"}\n')
    with pytest.raises(DataError, match=r"x\.jsonl:1: .*'text'"):
        read_corpus(tmp_path / "x.jsonl")


def test_real_corpus_reads_nfc(corpora):
    lines = read_corpus(corpora["law"], max_lines=200)
    assert len(lines) == 200
    assert all(unicodedata.is_normalized("NFC", line) for line in lines)
    assert sum("법" in line for line in lines) > 20  # really the law corpus


def test_atomic_write_leaves_old_file_on_error(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(path) as fh:
        fh.write("half")
        raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_dir_refuses_existing_and_cleans_up(tmp_path):
    out = tmp_path / "model"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "weights").write_text("partial")
        raise RuntimeError("crash")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(out) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(OutputExistsError, match="--force"), atomic_dir(out):
        pass
    with atomic_dir(out, force=True) as tmp:
        (tmp / "weights").write_text("v2")
    assert (out / "weights").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_jsonl_append_survives_torn_tail(tmp_path):
    path = tmp_path / "log.jsonl"
    append_jsonl(path, {"id": 1, "text": "가"})
    append_jsonl(path, {"id": 2})
    with open(path, "a") as fh:
        fh.write('{"id": 3, "tex')  # killed mid-write
    assert [r["id"] for r in read_jsonl(path)] == [1, 2]
    with pytest.raises(DataError, match="log2.jsonl:1"):
        (tmp_path / "log2.jsonl").write_text('{bad\n{"id": 1}\n')
        read_jsonl(tmp_path / "log2.jsonl")


def test_atomic_outputs_get_the_modes_plain_open_and_mkdir_give(tmp_path):
    """mkstemp/mkdtemp make 0600/0700 temporaries; the renamed outputs must not stay private."""
    from mixnu.io import atomic_dir, atomic_write

    (tmp_path / "plain.txt").write_text("x")
    (tmp_path / "plain-dir").mkdir()
    with atomic_write(tmp_path / "atomic.txt") as fh:
        fh.write("x")
    with atomic_dir(tmp_path / "atomic-dir") as d:
        (d / "f").write_text("x")
        (d / "sub").mkdir()
        (d / "sub" / "weights").write_text("x")
        (d / "sub" / "weights").chmod(0o600)  # what a library's own temp file + rename leaves
        (d / "run.sh").write_text("x")
        (d / "run.sh").chmod(0o700)
    mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
    assert mode(tmp_path / "atomic.txt") == mode(tmp_path / "plain.txt")
    assert mode(tmp_path / "atomic-dir") == mode(tmp_path / "plain-dir")
    assert mode(tmp_path / "atomic-dir" / "sub" / "weights") == mode(tmp_path / "plain.txt")
    assert mode(tmp_path / "atomic-dir" / "run.sh") == mode(tmp_path / "plain.txt") | 0o100  # its execute bit kept
