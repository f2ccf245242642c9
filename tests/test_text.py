"""Issue #11 items 1, 6, 7: every path from user text to ids gives the same ids, from one module.

Item 1: text that spells a special token (`<s>10,000원</s>`, scraped HTML strikethrough) is text:
the body ids equal sentencepiece's on every path (train, ppl, route/routing, router init, generate,
tokenizer comparison). Item 6: every stage puts the same BOS in front. Item 7: NFC at each entry.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
import sentencepiece as spm

from mixnu.text import body_ids, chat_prompt_ids, document_ids, normalize_text

# The example line (HTML strikethrough, common in scraped text).
LINE = "가격은 <s>10,000원</s> 8,000원입니다. 특수 토큰 <unk> 도 글자일 뿐."
NFC = "한국어 문장입니다. 서울의 봄 날씨."
NFD = unicodedata.normalize("NFD", NFC)
BOS, EOS, UNK = 1, 2, 0


@pytest.fixture(scope="module")
def sp(llama2_sp_model) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(llama2_sp_model))


@pytest.fixture(scope="module")
def chat_tokenizer_dir(tmp_path_factory, llama2_tokenizer_dir) -> Path:
    """The Llama-2 tokenizer with Llama-2-chat's template (it writes `<s>[INST] … [/INST]`)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(llama2_tokenizer_dir)
    tok.chat_template = ("{% for m in messages %}{{ bos_token }}[INST] {{ m['content'] }} [/INST]{% endfor %}")
    out = tmp_path_factory.mktemp("chat-tok")
    tok.save_pretrained(out)
    return out


def test_example_really_spells_special_tokens(llama2_tokenizer, sp):
    """The premise: a plain call parses `<s>` `</s>` `<unk>` as ids 1, 2, 0; sentencepiece does not."""
    plain = llama2_tokenizer(LINE, add_special_tokens=False)["input_ids"]
    assert {BOS, EOS, UNK} <= set(plain)
    assert not {BOS, EOS, UNK} & set(sp.encode(LINE))


def test_body_and_document_ids_are_sentencepiece_ids(llama2_tokenizer, sp):
    assert body_ids(llama2_tokenizer, [LINE]) == [sp.encode(LINE)]
    assert document_ids(llama2_tokenizer, [LINE]) == [[BOS] + sp.encode(LINE)]
    assert document_ids(llama2_tokenizer, [LINE], eos=True) == [[BOS] + sp.encode(LINE) + [EOS]]


# ---- item 1 + 6: each stage ---------------------------------------------------------------------------

def test_train_packing_keeps_special_spellings_as_text(tmp_path, llama2_tokenizer, sp):
    from mixnu.train.data import tokenize_docs

    corpus = tmp_path / "c.txt"
    corpus.write_text(f"{LINE}\n{NFD}\n", encoding="utf-8")
    docs = tokenize_docs(corpus, llama2_tokenizer, cache_dir=tmp_path / "cache")
    want = [BOS, *sp.encode(LINE), EOS, BOS, *sp.encode(NFC), EOS]
    assert docs.ids.tolist() == want  # one BOS/EOS per document, none inside; corpus read as NFC
    assert docs.doc_lens.tolist() == [len(sp.encode(LINE)) + 2, len(sp.encode(NFC)) + 2]


def test_ppl_and_routing_windows_keep_special_spellings_as_text(llama2_tokenizer, sp):
    """`ppl`, `routing` (analyze_routing -> score_model) and train's held-out eval share tokenize_domain."""
    from mixnu.perplexity import tokenize_domain

    (w,) = tokenize_domain(llama2_tokenizer, "d", [LINE], max_length=512, stride=256)
    assert w.input_ids == [BOS] + sp.encode(LINE)
    (w,) = tokenize_domain(llama2_tokenizer, "d", [NFD], max_length=512, stride=256)
    assert w.input_ids == [BOS] + sp.encode(NFC)  # item 7: held-out text reaches the tokenizer as NFC


def test_router_init_texts_are_training_ids(tiny_llama_dir, sp):
    """Router init from prompts or data: `[BOS] body` with special spellings as text, NFC."""
    import json

    from mixnu.merge.router_init import TextForward

    base = json.loads((tiny_llama_dir / "config.json").read_text())
    fwd = TextForward(base, tiny_llama_dir, [[LINE], [NFD]], max_tokens=512, top_k=2)
    assert fwd.groups[0][0][0].tolist() == [BOS] + sp.encode(LINE)
    assert fwd.groups[1][0][0].tolist() == [BOS] + sp.encode(NFC)
    short = TextForward(base, tiny_llama_dir, [[LINE]], max_tokens=5, top_k=2)
    assert short.groups[0][0][0].tolist() == ([BOS] + sp.encode(LINE))[:5]


def test_tokenizer_comparison_counts_special_spellings_as_text(llama2_tokenizer_dir, llama2_sp_model, sp):
    from mixnu.tokenizer import open_for_compare

    hf = open_for_compare("hf", llama2_tokenizer_dir)
    slow = open_for_compare("sp", llama2_sp_model)
    assert hf.encode([LINE, NFD]) == slow.encode([LINE, NFD]) == [sp.encode(LINE), sp.encode(NFC)]


class _Recorder:
    """Stands in for a causal LM in `generate`'s hf backend: records the ids it is given."""

    device = "cpu"

    def __init__(self) -> None:
        self.calls: list[tuple[list[list[int]], list[list[int]]]] = []

    def generate(self, input_ids, attention_mask, max_new_tokens, **_kw):
        import torch

        self.calls.append((input_ids.tolist(), attention_mask.tolist()))
        return torch.cat([input_ids, torch.full((input_ids.shape[0], 1), 29871)], dim=1)


def _hf_prompt_ids(tok_dir: Path, prompts: list[str], chat: bool, monkeypatch) -> list[list[int]]:
    """The unpadded ids `generate`'s hf backend hands the model for `prompts`."""
    from transformers import AutoTokenizer

    import mixnu.eval.generate as g
    from mixnu.eval.suite import Prompt

    tok = AutoTokenizer.from_pretrained(tok_dir)
    tok.padding_side, tok.pad_token = "left", tok.eos_token
    rec = _Recorder()
    monkeypatch.setattr(g, "load_hf", lambda spec, cfg: (rec, tok))
    spec = g.ModelSpec(name="m", backend="hf", path=str(tok_dir), chat_template=chat)
    cfg = g.GenerateConfig.model_construct(batch_size=8, seed=0, temperature=0.0, top_p=1.0, max_new_tokens=1,
                                           repetition_penalty=1.0)
    jobs = [(Prompt.model_construct(id=f"p{i}", prompt=p), 0) for i, p in enumerate(prompts)]
    g._run_hf(spec, cfg, jobs, lambda *a: None)
    (ids, mask), = rec.calls
    return [[x for x, m in zip(row, ms, strict=True) if m] for row, ms in zip(ids, mask, strict=True)]


def test_generate_sends_training_ids_with_bos(llama2_tokenizer_dir, llama2_tokenizer, sp, monkeypatch):
    """hf generation sees `[BOS] body`, the ids `train` and `ppl` give the same text (item 6)."""
    from mixnu.perplexity import tokenize_domain

    got = _hf_prompt_ids(llama2_tokenizer_dir, [LINE, "이사 온 날", NFD], False, monkeypatch)
    assert got == [[BOS] + sp.encode(LINE), [BOS] + sp.encode("이사 온 날"), [BOS] + sp.encode(NFC)]
    (w,) = tokenize_domain(llama2_tokenizer, "d", ["이사 온 날"], max_length=512, stride=256)
    assert got[1] == w.input_ids


def test_generate_chat_template_keeps_the_message_as_text(chat_tokenizer_dir, sp, monkeypatch):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(chat_tokenizer_dir)
    plain = "서울의 봄 날씨는?"
    got = _hf_prompt_ids(chat_tokenizer_dir, [LINE, plain], True, monkeypatch)
    # a message without special spellings: exactly what apply_chat_template gives
    want_plain = tok.apply_chat_template([{"role": "user", "content": plain}], tokenize=True,
                                         add_generation_prompt=True)
    want_plain = list(want_plain["input_ids"] if hasattr(want_plain, "keys") else want_plain)
    assert got[1] == want_plain == chat_prompt_ids(tok, plain)
    # the template's BOS is special, the message's `<s>` `</s>` `<unk>` are text
    assert got[0][0] == BOS and got[0].count(BOS) == 1 and EOS not in got[0] and UNK not in got[0]
    body = sp.encode(LINE)
    assert any(got[0][i:i + len(body)] == body for i in range(len(got[0])))


# ---- item 7: one normalisation at each entry point ---------------------------------------------------

def test_normalize_text_is_nfc():
    assert NFD != NFC and normalize_text(NFD) == NFC and normalize_text(NFC) == NFC


def test_corpus_and_heldout_readers_give_nfc(tmp_path):
    from mixnu.io import read_corpus
    from mixnu.perplexity import read_texts

    f = tmp_path / "h.txt"
    f.write_text(NFD + "\n", encoding="utf-8")
    assert read_corpus(f) == [NFC] and read_texts(f) == [NFC]


def _nfd_suite(path: Path) -> Path:
    import yaml

    from tests.eval.conftest import suite_data

    data = suite_data(n=2)
    p = data["prompts"][0]
    p["prompt"], p["notes"]["judge"], p["notes"]["human"] = NFD, NFD, NFD
    p["notes"]["confusable"] = NFD
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_suite_prompts_and_notes_are_nfc(tmp_path):
    from mixnu.eval.suite import load_suite

    p = load_suite(_nfd_suite(tmp_path / "s.yaml")).prompts[0]
    assert (p.prompt, p.notes.judge, p.notes.human, p.notes.confusable) == (NFC, NFC, NFC, NFC)


def test_chat_and_completion_requests_carry_nfc(tmp_path):
    from mixnu.eval.generate import GenerateConfig, ModelSpec, generate
    from tests.eval.fake_openai import FakeOpenAI

    suite = _nfd_suite(tmp_path / "s.yaml")
    with FakeOpenAI() as srv:
        generate(GenerateConfig(out=tmp_path / "run", suite=suite, max_new_tokens=4,
                                models=[ModelSpec.parse(f"c=openai:gen-model@{srv.base_url}"),
                                        ModelSpec.parse(f"h=openai-chat:gen-model@{srv.base_url}")]))
        sent = [e["user"] for e in srv.log]
    assert NFC in sent and not any(NFD in s for s in sent)
    assert all(s == normalize_text(s) for s in sent)


def test_judge_messages_are_nfc():
    from mixnu.eval.templates import load_template, render

    msgs = render(load_template("default"), NFD, NFD, [NFD, "ok"])
    assert all(m["content"] == normalize_text(m["content"]) for m in msgs)
    assert NFC in msgs[1]["content"]


def test_annotation_page_shows_nfc(tmp_path):
    from mixnu.eval.annotate import load_items
    from mixnu.io import read_jsonl, write_jsonl
    from tests.eval.conftest import make_run

    run = make_run(tmp_path / "run", n=2)
    recs = read_jsonl(run / "responses.jsonl")
    recs[0]["response"] = NFD
    write_jsonl(run / "responses.jsonl", recs)
    _nfd_suite(run / "suite.yaml")
    items = load_items(run)
    shown = [r.text for it in items.values() for r in it.responses] + [it.prompt for it in items.values()]
    assert NFC in shown and all(t == normalize_text(t) for t in shown)
