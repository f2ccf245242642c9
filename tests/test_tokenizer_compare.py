"""`mixnu tokenizer compare`: the card's table on the dev set, byte-level counting, outputs, bad input."""

from __future__ import annotations

import csv
import json

import pytest

from mixnu.tokenizer import CompareConfig, compare_tokenizers, read_texts
from mixnu.tokenizer.compare_load import byte_level_ids

DEV = "eval/dev_sentences.tsv"  # relative to the data folder (`data_root`)


@pytest.fixture(scope="session")
def compared(tmp_path_factory, data_root, gguf_vocab, llama2_sp_model, llama2_tokenizer_dir):
    out = tmp_path_factory.mktemp("cmp") / "table"
    cfg = CompareConfig(
        tokenizers={"llama-2": llama2_sp_model, "llama-2-hf": llama2_tokenizer_dir,
                    "llama-3": gguf_vocab("llama-bpe")},
        texts=[data_root / DEV], out=out)
    return out, compare_tokenizers(cfg)


def test_card_table_on_dev_set(compared):
    out, res = compared
    rows = {r["tokenizer"]: r for r in res.rows}
    assert res.lines == 1000
    assert rows["llama-2"]["vocab"] == 32000 and rows["llama-3"]["vocab"] > 128000
    # sentencepiece and its HF folder count the same tokens
    assert rows["llama-2"]["tokens"] == rows["llama-2-hf"]["tokens"]
    assert rows["llama-2"]["byte_tokens"] == rows["llama-2-hf"]["byte_tokens"]
    assert 35 < rows["llama-2"]["pct_byte"] < 65  # the card: 48.61 %
    assert rows["llama-3"]["family"] == "byte-level" and 0 < rows["llama-3"]["pct_byte"] < rows["llama-2"]["pct_byte"]
    assert rows["llama-2"]["relative"] == 1.0 and rows["llama-3"]["relative"] < 1.0
    r = rows["llama-2"]
    assert r["tokens_per_line"] == pytest.approx(r["tokens"] / 1000)
    assert "| llama-3 |" in res.markdown and "% byte-level" in res.markdown


def test_per_domain_tables_and_files(compared):
    out, res = compared
    assert set(res.domains) == {"law", "tech", "daily", "literature"}
    assert sum(d[0]["lines"] for d in res.domains.values()) == 1000
    assert sum(d[0]["tokens"] for d in res.domains.values()) == res.rows[0]["tokens"]
    assert res.files == ["compare.json", "table.csv", "table.md", "vocab_tokens.png"]
    md = (out / "table.md").read_text(encoding="utf-8")
    tables, fallback = md.split("### characters that fell back to bytes, by kind")
    assert tables.count("| llama-3 |") == 5 and "### law" in tables
    assert "| llama-2 | law | syllable |" in fallback
    rows = list(csv.DictReader((out / "table.csv").open(encoding="utf-8")))
    assert len(rows) == 3 * 5 and {r["domain"] for r in rows} == {"all", "law", "tech", "daily", "literature"}
    data = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    assert data["lines"] == 1000 and len(data["rows"]) == 3
    assert (out / "vocab_tokens.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_byte_level_token_is_one_that_is_not_whole_characters():
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    enc = bytes_to_unicode()
    han = "한".encode()  # 3 bytes
    vocab = {"".join(enc[b] for b in han): 0, "".join(enc[b] for b in han[:2]): 1,
             enc[han[2]]: 2, "Ġthe": 3, "<|special|>": 4}
    assert byte_level_ids(vocab) == frozenset({1, 2})


def test_plain_text_file_gets_its_stem_as_domain(tmp_path):
    p = tmp_path / "news.txt"
    p.write_text("첫 줄입니다\n둘째 줄\tTAB 포함 문장 with spaces\n", encoding="utf-8")
    assert read_texts([p]) == [("news", "첫 줄입니다"), ("news", "둘째 줄\tTAB 포함 문장 with spaces")]


@pytest.mark.parametrize("case", ["missing", "corrupt", "exists", "empty_text", "missing_text"])
def test_bad_input(case, tmp_path, data_root, llama2_sp_model, run_cli):
    tok, text, out = llama2_sp_model, data_root / DEV, tmp_path / "out"
    if case == "missing":
        tok = tmp_path / "nope.model"
    elif case == "corrupt":
        tok = tmp_path / "bad.model"
        tok.write_bytes(b"garbage" * 10)
    elif case == "exists":
        out.mkdir()
    elif case == "empty_text":
        text = tmp_path / "e.txt"
        text.write_text("", encoding="utf-8")
    elif case == "missing_text":
        text = tmp_path / "nope.tsv"
    rc, _, err = run_cli("tokenizer", "compare", "--tokenizer", f"a={tok}", "--text", text, "--out", out, "-q")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 1 and len(lines) == 1 and lines[0].startswith("mixnu: error:"), err
    assert not out.exists() or case == "exists"
    if case == "missing_text":
        assert "nope.tsv: text file not found" in err
    if case == "exists":
        assert list(out.iterdir()) == []


def test_cli_prints_table_and_json(tmp_path, data_root, llama2_sp_model, run_cli):
    rc, out, _ = run_cli("tokenizer", "compare", "--tokenizer", f"l2={llama2_sp_model}",
                         "--text", data_root / DEV, "--max-lines", "40", "--json", "-")
    assert rc == 0
    data = json.loads(out)
    assert data["lines"] == 40 and data["rows"][0]["tokenizer"] == "l2"


def test_two_text_files_side_by_side_with_fallback_characters(tmp_path, data_root, llama2_sp_model, run_cli):
    """dev and ood: one row set per file, domains as FILE/DOMAIN, byte-fallback characters by kind."""
    from mixnu.tokenizer import open_for_compare

    texts = [data_root / DEV, data_root / "eval/ood_sentences.tsv"]
    res = compare_tokenizers(CompareConfig(tokenizers={"l2": llama2_sp_model}, texts=texts, max_lines=300))
    assert set(res.sets) == {"dev_sentences", "ood_sentences"}
    assert {d.split("/")[0] for d in res.domains} == set(res.sets) and "ood_sentences/tech" in res.domains
    assert res.sets["dev_sentences"][0]["lines"] + res.sets["ood_sentences"][0]["lines"] == res.lines == 600
    assert "### side by side" in res.report and "| l2 | 32,000 |" in res.report
    # every byte token is accounted for: sum over fallback characters of UTF-8 length x occurrences
    fb = res.fallback["l2"]
    for part, drows in res.domains.items():
        counted = sum(len(c.encode()) * n for kinds in fb[part].values() for c, n in kinds.items())
        assert counted == drows[0]["byte_tokens"], part
    assert fb["ood_sentences/tech"]["syllable"]["있"] > 10  # Llama-2 has no piece for 있
    tok = open_for_compare("l2", llama2_sp_model)
    assert tok.byte_values[tok.encode(["\n"])[0][-1]] == b"\n"
    rc, out, _ = run_cli("tokenizer", "compare", "--tokenizer", f"l2={llama2_sp_model}", "--text", texts[0],
                         "--text", texts[1], "--max-lines", "20")
    assert rc == 0 and "side by side" in out and "fell back to bytes" in out
