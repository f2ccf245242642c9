"""mixnu merge: the proofs. Tiny Llamas (hidden 64, 2 layers) built here; experts = base + noise."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mixnu.merge import MergeConfig, average_experts, merge_experts, produce
from mixnu.merge.router_init import TextForward
from mixnu.text import document_ids
from tests.conftest import build_tiny_llama

PROMPTS = [["법원은 판결을 선고했다.", "계약의 해제"], ["파이썬 함수", "러스트 소유권"], ["오늘 날씨 좋다", "영화 재밌어"]]


def make_expert(base: Path, out: Path, seed: int, scale: float = 0.02) -> Path:
    """A copy of `base` whose every tensor got seeded Gaussian noise (scale 0 = an exact copy)."""
    shutil.copytree(base, out)
    if scale:
        g = torch.Generator().manual_seed(seed)
        sd = load_file(base / "model.safetensors")
        save_file({k: v + scale * torch.randn(v.shape, generator=g) for k, v in sd.items()},
                  out / "model.safetensors", metadata={"format": "pt"})
    return out


@pytest.fixture(scope="session")
def models(tmp_path_factory, llama2_tokenizer_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("merge-models")
    base = build_tiny_llama(root / "base", llama2_tokenizer_dir)
    out = {"base": base}
    for i in range(3):
        out[f"e{i}"] = make_expert(base, root / f"e{i}", seed=i + 1)
    for i in range(3):
        out[f"same{i}"] = make_expert(base, root / f"same{i}", seed=0, scale=0.0)
    return out


def config(models: dict[str, Path], names: list[str], out: Path | None, corpus: Path | None = None,
           **kw) -> MergeConfig:
    experts = [{"name": n, "path": models[n], "prompts": PROMPTS[i % 3], "corpus": corpus} for i, n in enumerate(names)]
    return MergeConfig(base=models["base"], experts=experts, out=out, **kw)


def load_out(out: Path) -> dict[str, torch.Tensor]:
    index = json.loads((out / "model.safetensors.index.json").read_text())
    tensors = {}
    for f in sorted(set(index["weight_map"].values())):
        with safe_open(out / f, "pt") as fh:
            tensors.update({k: fh.get_tensor(k) for k in fh.keys()})  # noqa: SIM118
    assert set(tensors) == set(index["weight_map"])
    return tensors


def logits(path: Path, ids: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    with torch.no_grad():
        return model(ids).logits


IDS = torch.tensor([[1, 450, 4996, 17354, 1701, 29916, 432, 17204, 975, 278, 17366, 11203, 29889]])


@pytest.mark.parametrize("init", ["random", "uniform", "prompts", "data"])
def test_identical_experts_and_shared_base_give_the_dense_logits(models, tmp_path, heldout, init):
    """Experts = base, shared = base: top-2 with renormalised weights sums to the one MLP, any router."""
    cfg = config(models, ["same0", "same1", "same2"], tmp_path / "moe", corpus=heldout["law"], shared="base",
                 dtype="float32", allow_identical=True, router={"init": init, "seed": 5, "samples": 4})
    res = merge_experts(cfg)
    assert res.identical_experts
    dense = logits(models["base"], IDS)
    moe = logits(res.out, IDS)
    torch.testing.assert_close(moe, dense, atol=1e-5, rtol=0)
    gate = load_out(res.out)["model.layers.1.block_sparse_moe.gate.weight"]
    assert gate.shape == (3, 64)
    if init == "random":
        assert gate.abs().sum() > 0  # a real random router, and yet the logits match


def test_forcing_the_router_to_one_expert_gives_that_experts_mlp(models, tmp_path):
    from transformers import AutoModelForCausalLM

    res = merge_experts(config(models, ["e0", "e1", "e2"], tmp_path / "moe", dtype="float32"))
    moe = AutoModelForCausalLM.from_pretrained(res.out, dtype=torch.float32)
    x = torch.randn(1, 7, 64, generator=torch.Generator().manual_seed(0))
    for j, name in enumerate(["e0", "e1", "e2"]):
        dense = AutoModelForCausalLM.from_pretrained(models[name], dtype=torch.float32)
        block = moe.model.layers[1].mlp
        idx = torch.tensor([[j, (j + 1) % 3]]).repeat(7, 1)
        w = torch.tensor([[1.0, 0.0]]).repeat(7, 1)
        block.gate.forward = lambda h, idx=idx, w=w: (None, w, idx)  # force every token to expert j
        with torch.no_grad():
            got = block(x)
            want = dense.model.layers[1].mlp(x)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


def test_output_loads_generates_and_carries_every_llama_field(models, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    res = merge_experts(config(models, ["e0", "e1"], tmp_path / "moe", max_shard_mb=1))
    assert len(res.shards) > 1 and res.dtype == "bfloat16"
    model = AutoModelForCausalLM.from_pretrained(res.out)
    tok = AutoTokenizer.from_pretrained(res.out)
    assert type(model).__name__ == "MixtralForCausalLM" and model.dtype == torch.bfloat16
    gen = model.generate(**tok("법원은", return_tensors="pt"), max_new_tokens=4, do_sample=False)
    assert gen.shape[1] == len(tok("법원은")["input_ids"]) + 4
    base_cfg = json.loads((models["base"] / "config.json").read_text())
    cfg = model.config
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "rms_norm_eps", "max_position_embeddings", "tie_word_embeddings",
                "bos_token_id", "eos_token_id"):
        assert getattr(cfg, key) == base_cfg[key], key
    assert cfg.rope_parameters == base_cfg["rope_parameters"]
    assert (cfg.num_local_experts, cfg.num_experts_per_tok) == (2, 2) and cfg.router_aux_loss_coef > 0
    names = json.loads((res.out / "model.safetensors.index.json").read_text())["weight_map"]
    assert "model.layers.1.block_sparse_moe.experts.1.w2.weight" in names
    assert "model.layers.0.block_sparse_moe.gate.weight" in names
    assert not any(".mlp." in n for n in names)
    assert (res.out / "tokenizer.model").read_bytes() == (models["base"] / "tokenizer.model").read_bytes()
    assert (res.out / "generation_config.json").is_file()
    card = (res.out / "README.md").read_text()
    for name in ("base", "e0", "e1"):
        digest = hashlib.sha256((models[name] / "model.safetensors").read_bytes()).hexdigest()
        assert digest in card
    assert "shared: average" in card


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_tensors_are_the_sources_bit_for_bit_and_means_are_exact(models, tmp_path, dtype, monkeypatch):
    monkeypatch.setattr(produce, "CHUNK_ELEMS", 10_000)  # force row chunks on the big tensors
    names = ["e0", "e1", "e2"]
    res = merge_experts(config(models, names, tmp_path / "moe", dtype=dtype))
    got = load_out(res.out)
    src = {n: load_file(models[n] / "model.safetensors") for n in names}
    dt = getattr(torch, dtype)
    for layer in range(2):
        for e, n in enumerate(names):
            for w, s in (("w1", "gate_proj"), ("w2", "down_proj"), ("w3", "up_proj")):
                out = got[f"model.layers.{layer}.block_sparse_moe.experts.{e}.{w}.weight"]
                assert out.dtype == dt and torch.equal(out, src[n][f"model.layers.{layer}.mlp.{s}.weight"].to(dt))
    shared = [k for k in src["e0"] if ".mlp." not in k]
    assert len(shared) == 2 * 6 + 3
    for k in shared:
        mean = torch.stack([src[n][k] for n in names]).double().mean(0).to(dt)
        assert torch.equal(got[k], mean), k


def test_shared_base_copies_the_base(models, tmp_path):
    res = merge_experts(config(models, ["e0", "e1"], tmp_path / "moe", dtype="float32", shared="base"))
    got = load_out(res.out)
    base = load_file(models["base"] / "model.safetensors")
    for k, v in base.items():
        if ".mlp." not in k:
            assert torch.equal(got[k], v), k


def test_same_config_and_seed_give_byte_identical_shards(models, tmp_path):
    def digests(out: Path, seed: int) -> dict[str, str]:
        res = merge_experts(config(models, ["e0", "e1", "e2"], out, router={"seed": seed}, max_shard_mb=1))
        return {s: hashlib.sha256((out / s).read_bytes()).hexdigest() for s in res.shards}

    a, b, c = digests(tmp_path / "a", 7), digests(tmp_path / "b", 7), digests(tmp_path / "c", 8)
    assert a == b and len(a) > 1
    assert a != c  # the seed does reach the router
    assert (tmp_path / "a" / "model.safetensors.index.json").read_bytes() == \
        (tmp_path / "b" / "model.safetensors.index.json").read_bytes()


# sha256 of the index and of each shard's header (names, dtypes, shapes, offsets: no tensor values), as
# written before the merge read its names from mixnu.arch and became a package (issue #17, C2/D2).
PINNED_LAYOUT = {
    ("e0", "e1", "e2"): {
        "model.safetensors.index.json": "eb295129865b26355e07aac9b30c707c529289c712fdcbcb7a8bdd0aa6070ec0",
        "model-00001-of-00001.safetensors": "506b8c97512042c3a1031f4018dcdacab9340fc68406613dc534eebc71d38d3d"},
    ("e0", "e1"): {  # max_shard_mb=1
        "model.safetensors.index.json": "67ce695864278343018782dee14a74a95351d5e0601775095e25a3a970d16345",
        "model-00001-of-00003.safetensors": "43d26da9ca6f1910f6007459747fd04c3c03b1dd9a6582d5898223b775f1668f",
        "model-00002-of-00003.safetensors": "54f49c6bc969e3691cb1126461db0f5906b34513085181407f29c79ccba12055",
        "model-00003-of-00003.safetensors": "6e5bdb519fe0cdd4b60c193097ff9437224ae847a519384caeaafdf63cdbbf8e"},
}


@pytest.mark.parametrize("names", list(PINNED_LAYOUT), ids=lambda n: f"{len(n)}-experts")
def test_output_layout_is_pinned(models, tmp_path, names):
    """Tensor names, order, shapes, sharding and the index are exactly what they were (bf16 toy merge)."""
    import struct

    kw = {"max_shard_mb": 1} if len(names) == 2 else {}
    res = merge_experts(config(models, list(names), tmp_path / "moe", **kw))
    got = {"model.safetensors.index.json":
           hashlib.sha256((res.out / "model.safetensors.index.json").read_bytes()).hexdigest()}
    for shard in res.shards:
        raw = (res.out / shard).read_bytes()
        got[shard] = hashlib.sha256(raw[:8 + struct.unpack("<Q", raw[:8])[0]]).hexdigest()
    assert got == PINNED_LAYOUT[names]


def test_prompt_router_is_built_from_the_true_router_inputs(models, tmp_path):
    """Recompute the centroids from the finished MoE's own post_attention_layernorm outputs."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    res = merge_experts(config(models, ["e0", "e1", "e2"], tmp_path / "moe", dtype="float32",
                               router={"init": "prompts"}))
    model = AutoModelForCausalLM.from_pretrained(res.out, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(res.out)
    seen: dict[int, list[torch.Tensor]] = {0: [], 1: []}
    hooks = [model.model.layers[i].post_attention_layernorm.register_forward_hook(
        lambda _m, _i, o, i=i: seen[i].append(o[0])) for i in range(2)]
    per_expert = []
    with torch.no_grad():
        for texts in PROMPTS:
            start = len(seen[0])
            for t in texts:
                model(torch.tensor(document_ids(tok, [t])))  # `[BOS] body`, as router init encodes it
            per_expert.append({i: torch.cat(seen[i][start:]) for i in range(2)})
    for h in hooks:
        h.remove()
    gates = load_out(res.out)
    for layer in range(2):
        want = TextForward.centroid_router([p[layer] for p in per_expert])
        got = gates[f"model.layers.{layer}.block_sparse_moe.gate.weight"]
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
        spread = got @ torch.cat([p[layer] for p in per_expert]).T
        assert abs(float((spread - spread.mean(0)).std()) - 1.0) < 0.05  # the documented logit scale


@pytest.mark.parametrize("init", ["random", "data"])
def test_memory_held_does_not_grow_with_layers(tmp_path, llama2_tokenizer_dir, heldout, init):
    held = {}
    for layers in (2, 8):
        base = build_tiny_llama(tmp_path / f"base{layers}", llama2_tokenizer_dir, layers=layers)
        experts = [{"name": f"x{i}", "path": make_expert(base, tmp_path / f"x{layers}-{i}", seed=i + 1),
                    "corpus": heldout["tech"]} for i in range(2)]
        cfg = MergeConfig(base=base, experts=experts, out=tmp_path / f"moe{layers}",
                          router={"init": init, "samples": 4})
        held[layers] = merge_experts(cfg).max_held_bytes
    assert held[2] > 0 and held[8] == held[2]


def test_tied_embeddings_merge_and_load(tmp_path, llama2_tokenizer_dir):
    from transformers import AutoModelForCausalLM

    base = build_tiny_llama(tmp_path / "base", llama2_tokenizer_dir, tie=True)
    experts = [{"name": f"x{i}", "path": make_expert(base, tmp_path / f"x{i}", seed=i + 1)} for i in range(2)]
    res = merge_experts(MergeConfig(base=base, experts=experts, out=tmp_path / "moe", dtype="float32"))
    assert "lm_head.weight" not in load_out(res.out)
    model = AutoModelForCausalLM.from_pretrained(res.out, dtype=torch.float32)
    assert model.config.tie_word_embeddings and model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_average_experts_is_a_dense_llama_of_exact_means(models, tmp_path):
    from transformers import AutoModelForCausalLM

    names = ["e0", "e1", "e2"]
    res = average_experts(config(models, names, None, dtype="float32"), out=tmp_path / "avg")
    assert res.kind == "dense-average"
    got = load_out(res.out)
    src = {n: load_file(models[n] / "model.safetensors") for n in names}
    assert set(got) == set(src["e0"])
    for k in got:
        assert torch.equal(got[k], torch.stack([src[n][k] for n in names]).double().mean(0).float()), k
    model = AutoModelForCausalLM.from_pretrained(res.out)
    assert type(model).__name__ == "LlamaForCausalLM"


@pytest.mark.parametrize("legacy", [False, True])
def test_rope_scaling_and_theta_are_carried_over(models, tmp_path, legacy):
    """A base with scaled rope (new and legacy config keys): the MoE of identical experts = the dense model."""
    base = tmp_path / "base"
    shutil.copytree(models["base"], base)
    cfg = json.loads((base / "config.json").read_text())
    cfg.pop("rope_parameters", None)
    if legacy:  # how transformers 4 wrote it
        cfg.update(rope_theta=500000.0, rope_scaling={"type": "linear", "factor": 4.0}, rms_norm_eps=1e-5)
    else:
        cfg.update(rope_parameters={"rope_type": "linear", "factor": 4.0, "rope_theta": 500000.0}, rms_norm_eps=1e-5)
    (base / "config.json").write_text(json.dumps(cfg))
    experts = [{"name": f"x{i}", "path": make_expert(base, tmp_path / f"x{i}", seed=0, scale=0.0)} for i in range(2)]
    res = merge_experts(MergeConfig(base=base, experts=experts, out=tmp_path / "moe", dtype="float32", shared="base",
                                    allow_identical=True))
    out_cfg = json.loads((res.out / "config.json").read_text())
    assert out_cfg["rope_parameters"] == {"rope_type": "linear", "factor": 4.0, "rope_theta": 500000.0}
    assert out_cfg["rope_theta"] == 500000.0 and out_cfg["rope_scaling"] == {"rope_type": "linear", "factor": 4.0}
    assert out_cfg["rms_norm_eps"] == 1e-5
    long_ids = torch.arange(1, 200)[None] * 37 % 32000
    torch.testing.assert_close(logits(res.out, long_ids), logits(base, long_ids), atol=1e-5, rtol=0)
