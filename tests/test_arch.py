"""mixnu.arch against real transformers models: tensor names on disk and in memory, routers, MoE detection."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from transformers import LlamaConfig, LlamaForCausalLM, MixtralConfig, MixtralForCausalLM

from mixnu import arch
from mixnu.errors import ConfigError

TINY = dict(vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1)


def _saved_names(model, tmp_path) -> set[str]:
    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        return set(f.keys())


@pytest.fixture(scope="module")
def mixtral():
    torch.manual_seed(0)
    return MixtralForCausalLM(MixtralConfig(**TINY, num_local_experts=3, num_experts_per_tok=2))


@pytest.mark.parametrize("tied", [False, True])
def test_llama_names_match_a_real_checkpoint_in_the_merge_order(tied, tmp_path):
    model = LlamaForCausalLM(LlamaConfig(**TINY, tie_word_embeddings=tied))
    names = arch.llama_tensor_names(2, tied)
    assert set(names) == _saved_names(model, tmp_path)
    # the order `mixnu merge` writes (and average_experts plans); changing it changes the output bytes
    per_layer = ["input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                 "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    want = (["model.embed_tokens.weight"] + [f"model.layers.{i}.{n}.weight" for i in range(2) for n in per_layer]
            + ["model.norm.weight"] + ([] if tied else ["lm_head.weight"]))
    assert names == want


def test_mixtral_checkpoint_names_match_save_pretrained(mixtral, tmp_path):
    names = arch.mixtral_tensor_names(2, 3, tied=False)
    assert len(names) == len(set(names))
    assert set(names) == _saved_names(mixtral, tmp_path)  # transformers 5 writes the hub spelling


def test_mixtral_names_in_the_merge_plan_order():
    """Same names, same order as `merge.layout.moe_layout` builds them (so C2 can keep merge output byte-identical)."""
    from mixnu.merge.layout import moe_layout

    layers, hidden = 2, 8
    shapes = {n: SimpleNamespace(shape=(1,)) for n in arch.llama_tensor_names(layers, tied=False)}
    ck = SimpleNamespace(tensors=shapes, config={"hidden_size": hidden}, num_layers=layers, tied=False)
    plan = moe_layout(SimpleNamespace(shared="average"), ck, [ck, ck, ck])
    assert [o.name for o in plan] == arch.mixtral_tensor_names(layers, 3, tied=False)


def test_mixtral_module_names_match_transformers_state_dict(mixtral):
    assert set(arch.mixtral_module_names(2, tied=False)) == set(mixtral.state_dict())


def test_router_modules_one_per_layer_and_none_on_llama(mixtral):
    routers = arch.router_modules(mixtral)
    assert [i for i, _ in routers] == [0, 1]
    assert all(m is mixtral.model.layers[i].mlp.gate for i, m in routers)
    assert arch.router_modules(LlamaForCausalLM(LlamaConfig(**TINY))) == []


def test_is_router_param_both_spellings(mixtral, tmp_path):
    loaded = [n for n, _ in mixtral.named_parameters() if arch.is_router_param(n)]
    assert loaded == [f"model.layers.{i}.mlp.gate.weight" for i in range(2)]
    on_disk = sorted(n for n in _saved_names(mixtral, tmp_path) if arch.is_router_param(n))
    assert on_disk == [f"model.layers.{i}.block_sparse_moe.gate.weight" for i in range(2)]
    assert not arch.is_router_param("model.layers.0.mlp.gate_proj.weight")
    assert not any(arch.is_router_param(n) for n in arch.llama_tensor_names(2, tied=False))


def test_moe_detection_dicts_and_config_objects(mixtral, tmp_path):
    llama = LlamaConfig(**TINY)
    assert not arch.is_moe(llama) and arch.num_experts(llama) is None and arch.top_k(llama) is None
    assert arch.is_moe(mixtral.config) and arch.num_experts(mixtral.config) == 3 and arch.top_k(mixtral.config) == 2
    mixtral.config.save_pretrained(tmp_path)
    on_disk = json.loads((tmp_path / "config.json").read_text())
    assert arch.num_experts(on_disk) == 3 and arch.top_k(on_disk) == 2
    assert arch.num_experts({"model_type": "qwen2_moe", "num_experts": 4}) == 4  # Qwen2-MoE's key
    assert not arch.is_moe(json.loads(llama.to_json_string()))


def test_data_files_and_unknown_name():
    assert arch.known() == ["llama", "mixtral"]
    assert arch.load("llama").model_types == ("llama", "mistral")
    assert [arch.expert_source(w) for w in ("w1", "w2", "w3")] == ["gate", "down", "up"]
    with pytest.raises(ConfigError, match="unknown architecture 'qwen9'"):
        arch.load("qwen9")
