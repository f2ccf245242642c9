"""`mixnu generate`: local HF checkpoints of three architectures, OpenAI-compatible servers, vLLM when
installed; records with every setting; reruns that reuse what exists."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from mixnu.config import validate_config
from mixnu.errors import ConfigError
from mixnu.eval.generate import GenerateConfig, ModelSpec, generate
from mixnu.io import read_jsonl
from tests.conftest import build_tiny_llama
from tests.eval.conftest import suite_data, write_suite
from tests.eval.fake_openai import FakeOpenAI


def _save_with_tokenizer(model, out: Path, tokenizer_dir: Path) -> Path:
    from transformers import AutoTokenizer

    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, llama2_tokenizer_dir) -> dict[str, Path]:
    """Tiny random Llama, GPT-NeoX (polyglot-ko's architecture) and Mixtral (Ko-Mixtral's, Mixnu's)."""
    import torch
    from transformers import (
        AutoTokenizer,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        MixtralConfig,
        MixtralForCausalLM,
    )

    tok = AutoTokenizer.from_pretrained(llama2_tokenizer_dir)
    ids = {"vocab_size": len(tok), "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
    root = tmp_path_factory.mktemp("gen-models")
    torch.manual_seed(0)
    neox = GPTNeoXForCausalLM(GPTNeoXConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                            intermediate_size=64, max_position_embeddings=256, **ids))
    mixtral = MixtralForCausalLM(MixtralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                               num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
                                               num_experts_per_tok=2, max_position_embeddings=256,
                                               rope_theta=10000.0, rms_norm_eps=1e-5, **ids))
    return {
        "llama": build_tiny_llama(root / "llama", llama2_tokenizer_dir, hidden=32, layers=1),
        "neox": _save_with_tokenizer(neox, root / "neox", llama2_tokenizer_dir),
        "mixtral": _save_with_tokenizer(mixtral, root / "mixtral", llama2_tokenizer_dir),
    }


def _cfg(out: Path, suite: Path, models: dict[str, Path], **kw) -> GenerateConfig:
    specs = [{"name": n, "backend": "hf", "path": str(p)} for n, p in models.items()]
    return GenerateConfig(out=out, suite=suite, models=specs, **{"max_new_tokens": 4, "batch_size": 2, **kw})


def test_hf_three_architectures_records_settings_and_rerun_reuses(tmp_path, tiny_models):
    suite = write_suite(tmp_path / "suite.yaml", n=3)
    cfg = _cfg(tmp_path / "run", suite, tiny_models, samples=2, temperature=0.8, top_p=0.95, repetition_penalty=1.2, seed=7)
    res = generate(cfg)
    assert (res.total, res.generated, res.reused) == (18, 18, 0)
    recs = read_jsonl(res.responses_path)
    assert len({r["id"] for r in recs}) == 18 and {r["model"] for r in recs} == set(tiny_models)
    for r in recs:
        assert r["id"] == f"{r['prompt_id']}/{r['model']}/{r['sample']}" and r["suite"] == res.suite_fingerprint
        s = r["settings"]
        assert (s["backend"], s["max_new_tokens"], s["temperature"], s["top_p"], s["repetition_penalty"], s["seed"]) == \
            ("hf", 4, 0.8, 0.95, 1.2, 7)
        assert Path(s["model_path"]) == tiny_models[r["model"]].resolve()
        assert isinstance(r["response"], str) and r["response"]
    # the run folder is self-contained and a rerun generates nothing
    assert yaml.safe_load((tmp_path / "run" / "suite.yaml").read_text())["name"] == "small"
    before = res.responses_path.read_bytes()
    again = generate(cfg)
    assert (again.generated, again.reused) == (0, 18) and res.responses_path.read_bytes() == before
    # the same seed reproduces the same text in a fresh folder
    other = generate(cfg.model_copy(update={"out": tmp_path / "run2"}))
    texts = lambda p: {r["id"]: r["response"] for r in read_jsonl(p)}  # noqa: E731
    assert texts(other.responses_path) == texts(res.responses_path)


def test_greedy_batches_are_left_padded_correctly(tmp_path, tiny_models):
    suite = write_suite(tmp_path / "suite.yaml", n=4)
    one = {"llama": tiny_models["llama"]}
    a = generate(_cfg(tmp_path / "a", suite, one, temperature=0, batch_size=4, max_new_tokens=6))
    b = generate(_cfg(tmp_path / "b", suite, one, temperature=0, batch_size=1, max_new_tokens=6))
    ra = {r["id"]: r["response"] for r in read_jsonl(a.responses_path)}
    assert ra == {r["id"]: r["response"] for r in read_jsonl(b.responses_path)}


def test_changed_settings_or_prompt_regenerate_only_what_changed(tmp_path, tiny_models):
    suite = write_suite(tmp_path / "suite.yaml", n=3)
    one = {"llama": tiny_models["llama"]}
    generate(_cfg(tmp_path / "run", suite, one))
    data = suite_data(3)
    data["prompts"][1]["prompt"] = "완전히 새로운 프롬프트입니다."
    suite.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    res = generate(_cfg(tmp_path / "run", suite, one))
    assert (res.generated, res.reused, res.dropped_stale) == (1, 2, 1)
    recs = read_jsonl(res.responses_path)
    assert len(recs) == 3 and {r["suite"] for r in recs} == {res.suite_fingerprint}
    res = generate(_cfg(tmp_path / "run", suite, one, max_new_tokens=5))
    assert (res.generated, res.reused, res.dropped_stale) == (3, 0, 3)


def test_torn_last_record_is_regenerated(tmp_path, tiny_models):
    suite = write_suite(tmp_path / "suite.yaml", n=3)
    cfg = _cfg(tmp_path / "run", suite, {"llama": tiny_models["llama"]})
    path = generate(cfg).responses_path
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:2]) + lines[2][:30], encoding="utf-8")  # killed mid-append
    res = generate(cfg)
    assert (res.generated, res.reused) == (1, 2)
    assert len(read_jsonl(path, tolerate_torn_tail=False)) == 3


def test_openai_backend_completions_and_chat(tmp_path):
    suite = write_suite(tmp_path / "suite.yaml", n=3)
    with FakeOpenAI() as srv:
        cfg = GenerateConfig(out=tmp_path / "run", suite=suite, samples=2, max_new_tokens=16, repetition_penalty=1.3,
                             models=[ModelSpec.parse(f"c=openai:gen-model@{srv.base_url}"),
                                     ModelSpec.parse(f"h=openai-chat:gen-model@{srv.base_url}")])
        res = generate(cfg)
        log = list(srv.log)
        assert generate(cfg).generated == 0 and len(srv.log) == len(log)
    assert res.generated == 12 and len(log) == 12
    assert {e["path"] for e in log} == {"/v1/completions", "/v1/chat/completions"}
    for e in log:
        assert e["body"]["model"] == "gen-model" and e["body"]["max_tokens"] == 16
        assert e["body"]["repetition_penalty"] == 1.3 and e["body"]["seed"] in (0, 1)
    recs = read_jsonl(res.responses_path)
    for r in recs:
        assert r["response"] == f" 응답: {r['prompt'][:40]}"
        assert r["settings"]["api"] == ("chat" if r["model"] == "h" else "completions")
        assert r["settings"]["base_url"] == srv.base_url


def test_vllm_backend(tmp_path, tiny_models):
    pytest.importorskip("vllm", reason="vLLM is not installed here (GPU machines only): the vllm backend is untested")
    suite = write_suite(tmp_path / "suite.yaml", n=2)
    res = generate(GenerateConfig(out=tmp_path / "run", suite=suite, max_new_tokens=4,
                                  models=[ModelSpec(name="v", backend="vllm", path=str(tiny_models["llama"]))]))
    assert res.generated == 2


def test_vllm_backend_without_vllm_is_a_clear_error(tmp_path, tiny_models):
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vLLM is installed: the missing-vLLM error cannot happen")
    suite = write_suite(tmp_path / "suite.yaml", n=1)
    with pytest.raises(ConfigError, match="pip install vllm"):
        generate(GenerateConfig(out=tmp_path / "run", suite=suite,
                                models=[ModelSpec(name="v", backend="vllm", path=str(tiny_models["llama"]))]))


def test_model_spec_parsing():
    assert ModelSpec.parse("a=/x/y").model_dump(exclude_none=True)["path"] == "/x/y"
    s = ModelSpec.parse("b=openai-chat:gpt-4o-mini@https://api.openai.com/v1")
    assert (s.backend, s.model, s.base_url, s.api) == ("openai", "gpt-4o-mini", "https://api.openai.com/v1", "chat")
    assert ModelSpec.parse("c=vllm:/m").backend == "vllm"
    with pytest.raises(ConfigError):
        ModelSpec.parse("no-equals-sign")
    with pytest.raises(ConfigError, match="unique"):
        validate_config(GenerateConfig, {"out": "o", "models": [{"name": "a", "path": "x"}, {"name": "a", "path": "y"}]})


def test_cli_generate_and_bad_input(tmp_path, run_cli, tiny_models):
    suite = write_suite(tmp_path / "suite.yaml", n=2)
    rc, _, err = run_cli("generate", "--out", tmp_path / "run", "--model", f"x={tmp_path / 'nope'}", "--suite", suite)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 1 and len(lines) == 1 and "not a Hugging Face checkpoint" in lines[0] and "'x'" in lines[0]
    broken = tmp_path / "broken"
    shutil.copytree(tiny_models["llama"], broken)
    for f in broken.glob("*.safetensors"):
        f.unlink()
    rc, _, err = run_cli("generate", "--out", tmp_path / "run", "--model", f"b={broken}", "--suite", suite, "-q")
    assert rc == 1 and "cannot load" in err and len(err.strip().splitlines()) == 1
    rc, out, err = run_cli("generate", "--out", tmp_path / "run", "--model", f"l={tiny_models['llama']}",
                           "--suite", suite, "--max-new-tokens", "3", "--temperature", "0", "--json", "-", "-q")
    assert rc == 0, err
    assert json.loads(out)["generated"] == 2


def test_cli_generate_missing_key_for_remote_server(tmp_path, run_cli, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    suite = write_suite(tmp_path / "suite.yaml", n=1)
    rc, _, err = run_cli("generate", "--out", tmp_path / "run", "--suite", suite,
                         "--model", "g=openai-chat:gpt-4o@https://api.openai.com/v1")
    assert rc == 1 and "OPENAI_API_KEY" in err
