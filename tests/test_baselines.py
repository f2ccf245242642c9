"""`mixnu.baselines`: the budgets of the dense baselines, and parameters / FLOPs per token against real models.

(Training the three baselines end to end is covered by `tests/test_demo.py`'s fast demo.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mixnu.baselines import BaselinesConfig, budget_steps, model_cost
from mixnu.train import RouteConfig


def test_budget_steps_follow_the_btx_run():
    route = RouteConfig(model="m", data=["d"], out="o", steps=400, batch_size=4, grad_accum=2)
    cfg = BaselinesConfig(base=Path("b"), route=route, out=Path("x"), experts=4, expert_steps=200,
                          expert_batch_size=4)
    # same steps: experts in parallel (200) then the router stage (400); same tokens in blocks:
    # 4 experts x 200 x 4 + 400 x 8 = 6,400 blocks at 8 blocks per step
    assert budget_steps(cfg) == {"dense_same_steps": 600, "dense_same_tokens": 800, "sparse_upcycling": 400}


@pytest.mark.parametrize("tied", [True, False])
def test_model_cost_counts_parameters_of_real_models(tied):
    from transformers import LlamaConfig, LlamaForCausalLM, MixtralConfig, MixtralForCausalLM

    kw = dict(vocab_size=300, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, tie_word_embeddings=tied)
    dense = LlamaConfig(**kw)
    moe = MixtralConfig(**kw, num_local_experts=4, num_experts_per_tok=2)
    n_dense = sum(p.numel() for p in LlamaForCausalLM(dense).parameters())
    n_moe = sum(p.numel() for p in MixtralForCausalLM(moe).parameters())
    c_dense, c_moe = model_cost(dense, 128), model_cost(moe, 128)
    assert c_dense["params"] == c_dense["active_params"] == n_dense
    assert c_moe["params"] == n_moe
    mlp = 3 * 32 * 48
    assert c_moe["active_params"] == n_moe - 2 * 2 * mlp  # 2 of 4 MLPs idle per token, 2 layers
    emb_in = 0 if tied else 300 * 32
    assert c_dense["forward_flops_per_token"] == 2 * (n_dense - emb_in) + 4 * 2 * 32 * 128
    assert c_moe["forward_flops_per_token"] - c_dense["forward_flops_per_token"] == 2 * 2 * (mlp + 4 * 32)
