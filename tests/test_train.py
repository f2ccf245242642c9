"""`mixnu train`: the loop, exact resume, trainable modes (incl. MoE routers), bits/char, bad input, 2 processes."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mixnu.errors import CheckpointError, DataError
from mixnu.io import read_jsonl
from mixnu.train import TrainConfig, get_lr, train

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory, corpora) -> list[Path]:
    """Two small corpus files (law and daily, 150 lines each), so runs pool and shuffle two sources."""
    from mixnu.io import read_corpus

    folder = tmp_path_factory.mktemp("data")
    out = []
    for dom in ("law", "daily"):
        p = folder / f"{dom}.txt"
        p.write_text("\n".join(read_corpus(corpora[dom], max_lines=150)) + "\n", encoding="utf-8")
        out.append(p)
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tokcache")


@pytest.fixture(scope="module")
def tiny_mixtral_dir(tmp_path_factory, llama2_tokenizer_dir) -> Path:
    from transformers import AutoTokenizer, MixtralConfig, MixtralForCausalLM

    out = tmp_path_factory.mktemp("tiny-mixtral")
    tok = AutoTokenizer.from_pretrained(llama2_tokenizer_dir)
    cfg = MixtralConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                        max_position_embeddings=512, bos_token_id=1, eos_token_id=2, rope_theta=10000.0)
    torch.manual_seed(0)
    MixtralForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _cfg(model, data, out, cache, **kw) -> TrainConfig:
    base = dict(model=model, data=data, out=out, cache_dir=cache, steps=4, seq_len=32, batch_size=2, lr=3e-3,
                warmup_steps=1, log_every=1, eval_tokens=256, quiet=True, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(model="m", data=["d"], out="o", steps=100, lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    lrs = [get_lr(s, cfg) for s in range(100)]
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11], strict=True))  # warmup rises
    assert all(a >= b for a, b in zip(lrs[10:-1], lrs[11:], strict=True))  # cosine falls
    assert lrs[10] == pytest.approx(1e-3) and get_lr(100, cfg) == pytest.approx(1e-4)
    assert get_lr(55, cfg) == pytest.approx(1e-4 + 0.5 * (1 + math.cos(math.pi * 0.5)) * 9e-4)


def test_train_writes_plain_checkpoint_log_and_bpc(tmp_path, tiny_llama_dir, small_data, cache, run_cli):
    from mixnu.io import read_corpus
    from mixnu.train.data import split_docs

    res = train(_cfg(tiny_llama_dir, small_data, tmp_path / "out", cache, steps=8, eval_at_start=True,
                     eval_tokens=100_000))
    assert res.steps == 8 and res.tokens == 8 * 2 * 32 and res.num_processes == 1
    assert res.train_loss < res.initial_eval["all"]["loss"]
    assert res.eval["all"]["loss"] < res.initial_eval["all"]["loss"]
    assert res.tokens_per_s > 0 and res.peak_memory_mb > 0
    log = read_jsonl(tmp_path / "out" / "train_log.jsonl")
    steps = [r for r in log if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 9))
    assert {"lr", "tokens_per_s", "tokens"} <= set(steps[0])
    assert not (tmp_path / "out.ckpt").exists()  # no checkpoints asked: the work folder is removed
    # one definition of bits/char: train's final held-out figure is `mixnu ppl`'s on the same text
    # (the held-out tail of each data file; windows of seq_len tokens, as `--max-length 32` gives)
    args, nats, chars = [], 0.0, 0
    for f in small_data:
        tail = tmp_path / f"tail-{f.name}"
        tail.write_text("\n".join(split_docs(read_corpus(f), "eval", 0.02)) + "\n", encoding="utf-8")
        args += ["--data", f"{f.name}={tail}"]
    rc, out, err = run_cli("ppl", "--model", tmp_path / "out", *args, "--max-length", "32", "--json", "-")
    assert rc == 0, err
    for row in json.loads(out)["scores"][0]["domains"].values():
        assert res.eval[row["domain"]]["bpc"] == pytest.approx(row["bits_per_char"], rel=1e-5)
        assert res.eval[row["domain"]]["loss"] == pytest.approx(row["nll_nats"] / row["tokens"], rel=1e-5)
        nats, chars = nats + row["nll_nats"], chars + row["chars"]
    assert res.eval["all"]["bpc"] == pytest.approx(nats / math.log(2) / chars, rel=1e-5)


def test_resume_reproduces_the_loss_curve(tmp_path, tiny_llama_dir, small_data, cache):
    full = train(_cfg(tiny_llama_dir, small_data, tmp_path / "a", cache, steps=6, save_every=3, grad_accum=2))
    losses_a = [r["loss"] for r in read_jsonl(tmp_path / "a" / "train_log.jsonl") if "loss" in r]
    ckpts = tmp_path / "a.ckpt"
    assert sorted(p.name for p in ckpts.iterdir() if p.name.startswith("step")) == ["step-0000003", "step-0000006"]
    # "interrupt" after step 3: drop the later checkpoint and the finished output, then resume
    shutil.rmtree(ckpts / "step-0000006")
    shutil.rmtree(tmp_path / "a")
    res = train(_cfg(tiny_llama_dir, small_data, tmp_path / "a", cache, steps=6, save_every=3, grad_accum=2,
                     resume=True))
    assert res.resumed_from == 3
    losses_b = [r["loss"] for r in read_jsonl(tmp_path / "a" / "train_log.jsonl") if "loss" in r]
    assert len(losses_b) == 6
    for a, b in zip(losses_a, losses_b, strict=True):
        assert abs(a - b) <= 1e-6
    assert full.eval["all"]["loss"] == pytest.approx(res.eval["all"]["loss"], abs=1e-6)


def test_resume_refusals_and_corrupt_checkpoint(tmp_path, tiny_llama_dir, small_data, cache, run_cli):
    common = ["--model", tiny_llama_dir, "--data", small_data[0], "--seq-len", "32", "--batch-size", "2", "-q",
              "--set", f"cache_dir={cache}", "--set", "eval_tokens=128"]
    rc, _, err = run_cli("train", *common, "--out", tmp_path / "r", "--steps", "2", "--resume")
    assert rc == 1 and "no checkpoint" in err
    rc, _, _ = run_cli("train", *common, "--out", tmp_path / "r", "--steps", "2", "--save-every", "1")
    assert rc == 0
    shutil.rmtree(tmp_path / "r")
    rc, _, err = run_cli("train", *common, "--out", tmp_path / "r", "--steps", "2", "--save-every", "1",
                         "--lr", "1e-3", "--resume")
    assert rc == 1 and "different training config" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "r.ckpt" / "step-0000002" / "model.safetensors").write_bytes(b"garbage")
    rc, _, err = run_cli("train", *common, "--out", tmp_path / "r", "--steps", "2", "--save-every", "1", "--resume")
    assert rc == 1 and "corrupt checkpoint" in err and len(err.strip().splitlines()) == 1


def test_interrupted_checkpoint_save_leaves_no_complete_looking_folder(tmp_path, tiny_llama_dir, small_data, cache,
                                                                       monkeypatch):
    import safetensors.torch

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_model", boom)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tiny_llama_dir, small_data, tmp_path / "o", cache, steps=2, save_every=1))
    assert not (tmp_path / "o").exists()
    assert [p.name for p in (tmp_path / "o.ckpt").iterdir() if "step" in p.name] == []
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(_cfg(tiny_llama_dir, small_data, tmp_path / "o", cache, steps=2, save_every=1, resume=True))


def test_new_rows_keeps_old_rows_bit_identical(tmp_path, tiny_llama_dir, small_data, cache):
    train(_cfg(tiny_llama_dir, small_data, tmp_path / "n", cache, trainable="new_rows", new_rows_start=31000,
               steps=3, weight_decay=0.1))
    a, b = _weights(tiny_llama_dir), _weights(tmp_path / "n")
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        assert torch.equal(a[name][:31000], b[name][:31000])
        assert not torch.equal(a[name][31000:], b[name][31000:])
    for name in a:
        if "embed" not in name and "lm_head" not in name:
            assert torch.equal(a[name], b[name]), name


def test_embeddings_only_and_lora_merged(tmp_path, tiny_llama_dir, small_data, cache):
    from transformers import AutoModelForCausalLM

    train(_cfg(tiny_llama_dir, small_data, tmp_path / "e", cache, trainable="embeddings", steps=2))
    a, b = _weights(tiny_llama_dir), _weights(tmp_path / "e")
    changed = {n for n in a if not torch.equal(a[n], b[n])}
    assert changed == {"model.embed_tokens.weight", "lm_head.weight"}
    res = train(_cfg(tiny_llama_dir, small_data, tmp_path / "l", cache, trainable="lora", steps=2, lora_r=4))
    assert res.trainable_params < res.total_params
    files = {p.name for p in (tmp_path / "l").iterdir()}
    assert "adapter_config.json" not in files and "config.json" in files
    c = _weights(tmp_path / "l")
    assert set(c) == set(a)  # plain names: LoRA merged, modules_to_save folded back
    assert not torch.equal(a["model.layers.0.self_attn.q_proj.weight"], c["model.layers.0.self_attn.q_proj.weight"])
    assert not torch.equal(a["model.embed_tokens.weight"], c["model.embed_tokens.weight"])
    AutoModelForCausalLM.from_pretrained(tmp_path / "l")


def test_moe_router_mode_aux_loss_and_expert_load(tmp_path, tiny_mixtral_dir, small_data, cache):
    from transformers import AutoConfig

    train(_cfg(tiny_mixtral_dir, small_data, tmp_path / "r0", cache, trainable="router", steps=1, warmup_steps=0,
                    router_aux_loss_coef=0.0))
    r1 = train(_cfg(tiny_mixtral_dir, small_data, tmp_path / "r1", cache, trainable="router", steps=3,
                    router_aux_loss_coef=0.5))
    l0 = read_jsonl(tmp_path / "r0" / "train_log.jsonl")[1]["loss"]
    log1 = [r for r in read_jsonl(tmp_path / "r1" / "train_log.jsonl") if "loss" in r]
    assert log1[0]["loss"] - l0 > 0.25  # the load-balancing loss (>= 1 for top-2 of 4) times 0.5 is in the loss
    load = log1[-1]["expert_load"]
    assert len(load) == 2 and all(len(x) == 4 and abs(sum(x) - 1) < 1e-3 for x in load)
    assert r1.expert_load == load
    assert log1[0]["loss"] - l0 == pytest.approx(0.5 * log1[0]["aux_loss"], abs=1e-4)  # loss = CE + coef * aux
    cfg = AutoConfig.from_pretrained(tmp_path / "r1")
    assert cfg.router_aux_loss_coef == 0.5 and not cfg.output_router_logits
    a, b = _weights(tiny_mixtral_dir), _weights(tmp_path / "r1")
    changed = {n for n in a if not torch.equal(a[n], b[n])}
    assert changed and all(n.endswith("block_sparse_moe.gate.weight") or n.endswith("mlp.gate.weight") for n in changed)
    train(_cfg(tiny_mixtral_dir, small_data, tmp_path / "m", cache, trainable="mlp", steps=1, warmup_steps=0))
    c = _weights(tmp_path / "m")
    changed = {n for n in a if not torch.equal(a[n], c[n])}
    assert changed and all("experts" in n for n in changed)


def test_bad_input_is_one_line(tmp_path, tiny_llama_dir, small_data, cache, run_cli):
    short = tmp_path / "short.txt"
    short.write_text("짧은 글.\n두 번째 줄.\n", encoding="utf-8")
    with pytest.raises(DataError, match="shorter than one block"):
        train(_cfg(tiny_llama_dir, [short], tmp_path / "o", cache, eval_data=[short]))
    base = ["train", "--model", tiny_llama_dir, "--data", small_data[0], "--out", tmp_path / "o"]
    for extra, word in ((["--steps", "5", "--lr", "5"], "lr"), (["--steps", "0"], "steps"),
                        (["--steps", "2", "--data", short, "--set", f"eval_data=[{short}]"], "shorter than one block"),
                        (["--steps", "2", "--trainable", "router"], "MoE")):
        rc, _, err = run_cli(*base, *extra)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert rc == 1 and len(lines) == 1 and lines[0].startswith("mixnu: error:") and word in lines[0], err
    rc, _, err = run_cli("train", "--model", tmp_path / "missing", "--data", small_data[0], "--out", tmp_path / "o",
                         "--steps", "1")
    assert rc == 1 and "config.json" in err


def test_two_processes_with_torchrun(tmp_path, tiny_llama_dir, small_data, cache):
    """The same command under a launcher: 2 processes, DDP over gloo on CPU."""
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_port", "29561", "-m", "mixnu", "train", "--cpu",
           "--model", str(tiny_llama_dir), "--data", str(small_data[0]), "--data", str(small_data[1]),
           "--out", str(tmp_path / "ddp"), "--steps", "3", "--seq-len", "32", "--batch-size", "2", "-q",
           "--set", f"cache_dir={cache}", "--set", "eval_tokens=256", "--json", str(tmp_path / "r.json")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = read_jsonl(tmp_path / "ddp" / "train_log.jsonl")
    start = next(r for r in log if r.get("event") == "start")
    assert start["num_processes"] == 2 and start["tokens_per_step"] == 2 * 2 * 32
    assert json.loads((tmp_path / "r.json").read_text())["num_processes"] == 2


def test_data_order_and_tokenised_cache(tmp_path, small_data, llama2_tokenizer, monkeypatch):
    import mixnu.train.data as td

    order = td.batch_indices(0, 30, 10, seed=1)
    assert sorted(order[:10].tolist()) == list(range(10)) and sorted(order[10:20].tolist()) == list(range(10))
    assert torch.equal(order[13:27], td.batch_indices(13, 14, 10, seed=1))  # a pure function of the position
    assert not torch.equal(order, td.batch_indices(0, 30, 10, seed=2))
    first = td.tokenize_docs(small_data[0], llama2_tokenizer, part="train", eval_fraction=0.1, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.arrow"))) == 1

    def no_reading(*a, **k):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(td, "read_corpus", no_reading)
    again = td.tokenize_docs(small_data[0], llama2_tokenizer, part="train", eval_fraction=0.1, cache_dir=tmp_path)
    assert np.array_equal(first.ids, again.ids) and np.array_equal(first.doc_chars, again.doc_chars)
    assert first.ids[0] == llama2_tokenizer.bos_token_id and first.ids[first.doc_lens[0] - 1] == 2  # [BOS] … [EOS]
    n_docs = len(small_data[0].read_text(encoding="utf-8").splitlines())
    assert len(first.doc_lens) == n_docs - round(n_docs * 0.1)


def test_gradient_checkpointing_gives_the_same_losses(tmp_path, tiny_llama_dir, small_data, cache):
    a = train(_cfg(tiny_llama_dir, small_data, tmp_path / "a", cache, steps=2))
    b = train(_cfg(tiny_llama_dir, small_data, tmp_path / "b", cache, steps=2, gradient_checkpointing=True))
    la = [r["loss"] for r in read_jsonl(tmp_path / "a" / "train_log.jsonl") if "loss" in r]
    lb = [r["loss"] for r in read_jsonl(tmp_path / "b" / "train_log.jsonl") if "loss" in r]
    assert la == pytest.approx(lb, abs=1e-5) and a.eval["all"]["loss"] == pytest.approx(b.eval["all"]["loss"], abs=1e-5)
