"""Router training (a thin set-up around `mixnu.train.train`) and routing analysis of a tiny Mixtral."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

LINES = ["대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다.",
         "오늘 영화 진짜 재밌었어요 ㅋㅋ 배우들 연기가 최고",
         "파이썬의 리스트는 변경할 수 있는 시퀀스입니다."]


def build_tiny_mixtral(out: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    import torch
    from transformers import AutoTokenizer, MixtralConfig, MixtralForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = MixtralConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                           max_position_embeddings=512, rope_theta=10000.0, rms_norm_eps=1e-5,
                           bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    model = MixtralForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.gate.weight.normal_(0, 1.0)  # decisive routers: differences show in the counts
    model.save_pretrained(out)
    tok.save_pretrained(out)
    shutil.copy(Path(tokenizer_dir) / "tokenizer.model", out / "tokenizer.model")
    return out


@pytest.fixture(scope="module")
def tiny_moe(tmp_path_factory, llama2_tokenizer_dir):
    return build_tiny_mixtral(tmp_path_factory.mktemp("tiny-moe"), llama2_tokenizer_dir)


def test_routing_counts_match_the_routers(tiny_moe):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mixnu.routing import analyze_routing

    model = AutoModelForCausalLM.from_pretrained(tiny_moe).eval()
    tok = AutoTokenizer.from_pretrained(tiny_moe)
    texts = {"a": LINES[:1], "b": LINES[1:]}
    stats = analyze_routing(model, tok, texts, batch_size=2)
    # direct count from the model's own router logits, one document at a time (no padding)
    for domain, lines in texts.items():
        counts = torch.zeros(2, 4)
        countsk = torch.zeros(2, 4)
        n = 0
        for line in lines:
            ids = torch.tensor([[tok.bos_token_id] + tok(line, add_special_tokens=False)["input_ids"]])
            with torch.no_grad():
                out = model(input_ids=ids, output_router_logits=True)
            n += ids.shape[1]
            for layer, logits in enumerate(out.router_logits):
                counts[layer] += torch.bincount(logits.argmax(-1), minlength=4)
                countsk[layer] += torch.bincount(logits.topk(2, -1).indices.flatten(), minlength=4)
        assert torch.allclose(torch.tensor(stats.top1[domain]), counts / n, atol=1e-6)
        assert torch.allclose(torch.tensor(stats.topk[domain]), countsk / n, atol=1e-6)
        assert torch.allclose(torch.tensor(stats.topk[domain]).sum(-1), torch.full((2,), 2.0))
    assert stats.experts == 4 and stats.top_k == 2 and stats.layers == [0, 1]
    assert 0 <= min(stats.load_entropy) and max(stats.load_entropy) <= 1
    assert stats.min_load == pytest.approx(min(min(r) for r in stats.load))


def test_routing_cli_writes_heatmap_and_json(tmp_path, tiny_moe, heldout, run_cli):
    out = tmp_path / "routing"
    rc, _, err = run_cli("routing", "--model", tiny_moe, "--data", f"law={heldout['law']}",
                         "--data", f"daily={heldout['daily']}", "--max-chars", "300", "--out", out)
    assert rc == 0, err
    data = json.loads((out / "routing.json").read_text())
    assert set(data["top1"]) == {"law", "daily"}
    assert len(data["top1"]["law"]) == 2 and len(data["top1"]["law"][0]) == 4
    assert sum(data["top1"]["law"][1]) == pytest.approx(1.0)
    assert data["scores"]["domains"]["law"]["bits_per_char"] > 0
    for png in ("routing_heatmap.png", "routing_layers.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| law | 0 |" in (out / "routing.md").read_text()


def test_routing_refuses_dense_model(tmp_path, tiny_llama_dir, heldout, run_cli):
    rc, _, err = run_cli("routing", "--model", tiny_llama_dir, "--data", f"law={heldout['law']}",
                         "--out", tmp_path / "r")
    assert rc == 1 and "is a dense model" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def _tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(f))
    return out


@pytest.mark.parametrize("trainable", ["router", "router_and_all"])
def test_route_trains_routers_through_train(tmp_path, tiny_moe, corpora, run_cli, trainable):
    import torch

    data = tmp_path / "mix.txt"
    data.write_text("\n".join(corpora["law"].read_text(encoding="utf-8").splitlines()[:40]) + "\n", encoding="utf-8")
    out = tmp_path / "routed"
    rc, stdout, err = run_cli("route", "--model", tiny_moe, "--data", data, "--out", out, "--trainable", trainable,
                              "--steps", "3", "--batch-size", "2", "--seq-len", "32", "--lr", "1e-2",
                              "--aux-loss-coef", "0.05", "--log-every", "1", "--cpu", "--quiet", "--json", "-")
    assert rc == 0, err
    result = json.loads(stdout)
    load = result["expert_load"]
    assert len(load) == 2 and all(len(r) == 4 and sum(r) == pytest.approx(1.0, abs=1e-3) for r in load)
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert sum("expert_load" in r for r in log) == 3  # logged at every step
    assert json.loads((out / "train_result.json").read_text())["steps"] == 3
    before, after = _tensors(tiny_moe), _tensors(out)
    routers = [k for k in before if k.endswith("gate.weight") and "gate_proj" not in k]
    assert routers
    assert all(not torch.equal(before[k], after[k]) for k in routers)
    others = [k for k in before if k not in routers]
    changed = [k for k in others if not torch.equal(before[k], after[k])]
    assert (changed == []) == (trainable == "router")


def test_route_refuses_dense_model(tmp_path, tiny_llama_dir, heldout, run_cli):
    rc, _, err = run_cli("route", "--model", tiny_llama_dir, "--data", heldout["law"], "--out", tmp_path / "x",
                         "--steps", "1")
    assert rc == 1 and "is a dense model" in err and len(err.strip().splitlines()) == 1
