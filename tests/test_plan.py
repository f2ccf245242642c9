"""The resource plan: formulas against real (tiny) models, Llama-2-7B's known size, and the arithmetic."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from mixnu.plan import GIB, Architecture, layer_params, load_plan, make_plan, param_counts
from mixnu.train import TrainConfig

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "mixnu-19b" / "plan.yaml"


def _arch(**kw) -> Architecture:
    base = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=1000, tie_word_embeddings=False)
    base.update(kw)
    return Architecture(**base)


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("tie,kv", [(False, 2), (True, 4), (False, 1)])
def test_dense_formula_equals_a_real_llama(tie, kv):
    from transformers import LlamaConfig, LlamaForCausalLM

    a = _arch(tie_word_embeddings=tie, num_key_value_heads=kv)
    with torch.device("meta"):
        m = LlamaForCausalLM(LlamaConfig(**a.model_dump()))
    assert param_counts(a, a.vocab_size) == _count(m)
    assert layer_params(a) == _count(m.model.layers[0])


@pytest.mark.parametrize("experts,top_k", [(4, 2), (8, 2), (3, 1)])
def test_moe_formulas_equal_a_real_mixtral(experts, top_k):
    from transformers import MixtralConfig, MixtralForCausalLM

    a = _arch()
    with torch.device("meta"):
        m = MixtralForCausalLM(MixtralConfig(**a.model_dump(), num_local_experts=experts, num_experts_per_tok=top_k))
    assert param_counts(a, a.vocab_size, experts) == _count(m)
    assert layer_params(a, experts) == _count(m.model.layers[0])
    per_expert = _count(m.model.layers[0].mlp.experts) // experts
    active = _count(m) - a.num_hidden_layers * (experts - top_k) * per_expert
    assert param_counts(a, a.vocab_size, experts, top_k) == active


def test_recipe_plan_numbers():
    cfg = load_plan(RECIPE)
    p = make_plan(cfg)
    q = p.params
    assert q.dense_base == 6_738_415_616  # Llama-2-7B's published parameter count
    assert q.vocab_rows == 46_272 and q.experts == 4 and q.top_k == 2  # 46,262 padded to a multiple of 64
    assert 19.0e9 <= q.moe_total < 20.0e9  # the card's "19b"
    a = cfg.architecture
    mlp = 3 * a.hidden_size * a.intermediate_size
    assert q.moe_total - q.moe_active == a.num_hidden_layers * 2 * mlp
    assert q.moe_total == q.dense_expanded + a.num_hidden_layers * (3 * mlp + 4 * a.hidden_size)
    hw = cfg.hardware
    for stage, path in zip(p.stages, cfg.experts + [cfg.route], strict=True):
        t = TrainConfig.model_validate(yaml.safe_load(path.read_text()))
        assert stage.tokens == t.steps * t.batch_size * t.grad_accum * hw.num_gpus * t.seq_len
        assert stage.gpu_hours == pytest.approx(stage.flops / (hw.peak_tflops * 1e12 * hw.mfu) / 3600, abs=0.05)
        n_mm = (q.dense_expanded if stage.model == "dense" else q.moe_active) - q.vocab_rows * a.hidden_size
        attn = 12 * a.num_hidden_layers * a.hidden_size * t.seq_len
        factor = 4 if t.trainable == "router" else 6
        assert stage.flops == pytest.approx(stage.tokens * (factor * n_mm + attn), rel=1e-12)
        for engine, m in stage.memory_gib.items():
            parts = ["states", "gathered_weights", "grad_buckets", "activations", "overhead"]
            assert m["total"] == pytest.approx(sum(m[k] for k in parts), abs=0.03), engine
            assert m["fits"] == float(m["total"] <= hw.gpu_memory_gib)
    expert = p.stages[0].memory_gib["zero3"]
    assert expert["states"] == pytest.approx(16 * q.dense_expanded / hw.num_gpus / GIB, abs=0.01)
    router = p.stages[-1]
    trainable = q.experts * a.hidden_size * a.num_hidden_layers
    states = (16 * trainable + 2 * (q.moe_total - trainable)) / hw.num_gpus / GIB
    assert router.memory_gib["fsdp"]["states"] == pytest.approx(states, abs=0.01)
    assert p.total_gpu_hours == pytest.approx(sum(s.gpu_hours for s in p.stages), abs=0.1)
    assert math.isclose(p.stages[0].gpu_hours, p.stages[3].gpu_hours)


def test_cli_plan_prints_tables_and_json(run_cli, tmp_path):
    rc, out, _ = run_cli("plan", RECIPE)
    assert rc == 0 and "MoE total (4 experts) | 19.841 B" in out and "| zero3 |" in out and "| fsdp |" in out
    rc, out, _ = run_cli("plan", RECIPE, "-q", "--json", tmp_path / "p.json", "--set", "hardware.mfu=0.2")
    data = json.loads((tmp_path / "p.json").read_text())
    slow = data["stages"][0]["gpu_hours"]
    assert rc == 0 and out == "" and slow == pytest.approx(2 * make_plan(load_plan(RECIPE)).stages[0].gpu_hours, rel=0.01)


def test_plan_refuses_inconsistent_recipe(run_cli, tmp_path):
    import shutil

    folder = tmp_path / "r"
    shutil.copytree(RECIPE.parent, folder)
    (folder / "plan.yaml").write_text((folder / "plan.yaml").read_text().replace(", expert-literature.yaml", ""))
    rc, _, err = run_cli("plan", folder / "plan.yaml")
    assert rc == 1 and "4 experts" in err and len(err.strip().splitlines()) == 1


def test_recipe_counts_equal_the_real_7b_and_19b_models_on_meta():
    """Llama-2-7B (base and expanded) and the 4-expert Mixtral built on the meta device: exact counts."""
    from transformers import LlamaConfig, LlamaForCausalLM, MixtralConfig, MixtralForCausalLM

    cfg = load_plan(RECIPE)
    q = make_plan(cfg).params
    arch = cfg.architecture.model_dump()
    with torch.device("meta"):
        base = LlamaForCausalLM(LlamaConfig(**arch))
        expanded = LlamaForCausalLM(LlamaConfig(**{**arch, "vocab_size": q.vocab_rows}))
        moe = MixtralForCausalLM(MixtralConfig(**{**arch, "vocab_size": q.vocab_rows}, num_local_experts=q.experts,
                                               num_experts_per_tok=q.top_k))
    assert next(moe.parameters()).device.type == "meta"
    assert (_count(base), _count(expanded), _count(moe)) == (q.dense_base, q.dense_expanded, q.moe_total)
    assert (q.dense_base, q.moe_total) == (6_738_415_616, 19_841_421_312)
    experts = moe.model.layers[0].mlp.experts
    per_expert = _count(experts) // q.experts
    assert per_expert == 3 * 4096 * 11008
    inactive = cfg.architecture.num_hidden_layers * (q.experts - q.top_k) * per_expert
    assert q.moe_active == _count(moe) - inactive
