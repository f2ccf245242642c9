"""mixnu merge: the CLI, and bad input -> one line, exit 1, nothing written (not even a temp folder)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from mixnu.merge import safetensors_stream
from tests.conftest import build_tiny_llama
from tests.test_merge import make_expert, models  # noqa: F401  (session fixture)


def refused(run_cli, out: Path, *args, match: str) -> str:
    rc, _, err = run_cli("merge", *args, "--out", out)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 1 and len(lines) == 1, err
    assert lines[0].startswith("mixnu: error:") and match in lines[0], lines[0]
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    return lines[0]


def experts_args(*pairs: tuple[str, Path]) -> list[str]:
    return [a for name, path in pairs for a in ("--expert", f"{name}={path}")]


def test_cli_merges_with_flags_and_reports_json(models, tmp_path, run_cli):  # noqa: F811
    out = tmp_path / "moe"
    rc, stdout, err = run_cli("merge", "--base", models["base"], *experts_args(("law", models["e0"]), ("tech", models["e1"])),
                              "--out", out, "--shared", "base", "--router-init", "uniform", "--quiet", "--json", "-")
    assert rc == 0, err
    result = json.loads(stdout)
    assert result["experts"] == ["law", "tech"] and result["router_init"] == "uniform" and result["shared"] == "base"
    assert (out / "config.json").is_file() and "uniform" in (out / "README.md").read_text()


def test_cli_reads_yaml_and_flags_override_it(models, tmp_path, run_cli):  # noqa: F811
    cfg = tmp_path / "merge.yaml"
    cfg.write_text(yaml.safe_dump({
        "base": str(models["base"]), "num_experts_per_tok": 1, "dtype": "float32", "shared": "average",
        "router": {"init": "random", "seed": 3},
        "experts": [{"name": n, "path": str(models[n])} for n in ("e0", "e1", "e2")]}))
    out = tmp_path / "moe"
    rc, stdout, err = run_cli("merge", cfg, "--out", out, "--dtype", "bfloat16", "--set", "router.seed=4", "-q",
                              "--json", "-")
    assert rc == 0, err
    res = json.loads(stdout)
    assert (res["dtype"], res["num_experts_per_tok"]) == ("bfloat16", 1)
    assert json.loads((out / "config.json").read_text())["num_experts_per_tok"] == 1
    assert "seed: 4" in (out / "README.md").read_text()


def test_cli_average_writes_a_dense_model(models, tmp_path, run_cli):  # noqa: F811
    out = tmp_path / "avg"
    rc, _, err = run_cli("merge", "--average", "--base", models["base"],
                         *experts_args(("a", models["e0"]), ("b", models["e1"])), "--out", out, "-q")
    assert rc == 0, err
    assert json.loads((out / "config.json").read_text())["model_type"] == "llama"


def test_existing_output_needs_force(models, tmp_path, run_cli):  # noqa: F811
    out = tmp_path / "moe"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    args = ["--base", models["base"], *experts_args(("a", models["e0"]), ("b", models["e1"]))]
    rc, _, err = run_cli("merge", *args, "--out", out)
    assert rc == 1 and "--force" in err and (out / "keep.txt").read_text() == "old"
    rc, _, err = run_cli("merge", *args, "--out", out, "--force", "-q")
    assert rc == 0, err
    assert not (out / "keep.txt").exists() and (out / "config.json").is_file()


def test_one_expert_and_too_many_per_token(models, tmp_path, run_cli):  # noqa: F811
    base = ["--base", models["base"]]
    refused(run_cli, tmp_path / "o", *base, *experts_args(("a", models["e0"])), match="at least 2 experts")
    refused(run_cli, tmp_path / "o", *base, *experts_args(("a", models["e0"]), ("b", models["e1"])), "-k", "3",
            match="num_experts_per_tok=3 exceeds the 2 experts")


def test_old_experts_per_token_key_still_read_with_a_deprecation(tmp_path):
    from mixnu.merge import MergeConfig

    experts = [{"name": "a", "path": "x"}, {"name": "b", "path": "y"}]
    with pytest.warns(DeprecationWarning, match="num_experts_per_tok"):
        cfg = MergeConfig(base="b", experts=experts, experts_per_token=1)
    assert cfg.num_experts_per_tok == 1 and "experts_per_token" not in cfg.model_dump()
    with pytest.warns(DeprecationWarning):
        assert MergeConfig(base="b", experts=experts, experts_per_token=2, num_experts_per_tok=2).num_experts_per_tok == 2
    with pytest.raises(ValueError, match="disagree"):
        MergeConfig(base="b", experts=experts, experts_per_token=1, num_experts_per_tok=2)


def test_text_router_init_needs_text(models, tmp_path, run_cli):  # noqa: F811
    refused(run_cli, tmp_path / "o", "--base", models["base"], *experts_args(("a", models["e0"]), ("b", models["e1"])),
            "--router-init", "data", match="needs a corpus")


def test_identical_experts_are_refused_without_allow_identical(models, tmp_path, run_cli):  # noqa: F811
    args = ["--base", models["base"], *experts_args(("a", models["same0"]), ("b", models["same1"]))]
    refused(run_cli, tmp_path / "o", *args, match="--allow-identical")
    rc, _, err = run_cli("merge", *args, "--out", tmp_path / "o", "--allow-identical", "-q")
    assert rc == 0, err


def _variant(tmp_path: Path, tok_dir: Path, name: str, **kw) -> Path:
    return build_tiny_llama(tmp_path / name, tok_dir, **kw)


@pytest.mark.parametrize("kind,match", [
    ("hidden", "differs from the base in hidden_size"),
    ("layers", "differs from the base in num_hidden_layers"),
    ("vocab", "differs from the base in vocab_size"),
    ("eps", "differs from the base in rms_norm_eps"),
    ("tokenizer", "different tokenizer vocabulary"),
    ("spm", "different tokenizer SentencePiece model"),
    ("shape", "has shape"),
])
def test_mismatched_experts_are_refused(models, tmp_path, run_cli, llama2_tokenizer_dir, kind, match):  # noqa: F811
    if kind == "hidden":
        bad = _variant(tmp_path, llama2_tokenizer_dir, "bad", hidden=32)
    elif kind == "layers":
        bad = _variant(tmp_path, llama2_tokenizer_dir, "bad", layers=3)
    else:
        bad = make_expert(models["base"], tmp_path / "bad", seed=9)
        cfg = json.loads((bad / "config.json").read_text())
        if kind == "vocab":
            from transformers import LlamaConfig, LlamaForCausalLM

            shutil.rmtree(bad)
            cfg["vocab_size"] += 8
            cfg.pop("transformers_version", None)
            LlamaForCausalLM(LlamaConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type")})
                             ).save_pretrained(bad)
            for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"):
                shutil.copy(models["base"] / f, bad / f)
        elif kind == "eps":
            cfg["rms_norm_eps"] = 1e-5
            (bad / "config.json").write_text(json.dumps(cfg))
        elif kind == "tokenizer":
            tj = json.loads((bad / "tokenizer.json").read_text())
            vocab = tj["model"]["vocab"]
            vocab["▁mixnu"] = vocab.pop(next(k for k in vocab if k.startswith("▁t")))
            (bad / "tokenizer.json").write_text(json.dumps(tj))
        elif kind == "spm":
            (bad / "tokenizer.model").write_bytes((bad / "tokenizer.model").read_bytes() + b"\0")
        elif kind == "shape":
            # a header that disagrees with config.json: rewrite one tensor with a wrong shape
            from safetensors.torch import save_file

            sd = load_file(bad / "model.safetensors")
            sd["model.layers.0.mlp.up_proj.weight"] = sd["model.layers.0.mlp.up_proj.weight"][:-1]
            save_file(sd, bad / "model.safetensors")
    refused(run_cli, tmp_path / "o", "--base", models["base"], *experts_args(("a", models["e0"]), ("bad", bad)),
            match=match)


def test_non_llama_expert_is_refused(models, tmp_path, run_cli):  # noqa: F811
    from transformers import Qwen2Config, Qwen2ForCausalLM

    qwen = tmp_path / "qwen"
    Qwen2ForCausalLM(Qwen2Config(vocab_size=32000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2)).save_pretrained(qwen)
    refused(run_cli, tmp_path / "o", "--base", models["base"], *experts_args(("a", models["e0"]), ("q", qwen)),
            match="is a 'qwen2' model")


class _Boom:
    """Unpickling this would create a file: proof that mixnu never unpickles."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_only_checkpoint_is_refused_without_unpickling(models, tmp_path, run_cli):  # noqa: F811
    ckpt = tmp_path / "pickled"
    ckpt.mkdir()
    shutil.copy(models["e0"] / "config.json", ckpt / "config.json")
    marker = tmp_path / "UNPICKLED"
    (ckpt / "pytorch_model.bin").write_bytes(pickle.dumps(_Boom(marker)))
    line = refused(run_cli, tmp_path / "o", "--base", models["base"], *experts_args(("a", models["e0"]), ("p", ckpt)),
                   match="never unpickles")
    assert "save_pretrained" in line
    assert not marker.exists()


@pytest.mark.parametrize("damage,match", [
    ("missing", "has no *.safetensors"),
    ("truncated", "truncated"),
    ("garbage", "not a valid safetensors file"),
    ("no-config", "has no config.json"),
    ("not-a-folder", "is not a folder"),
    ("index", "is missing"),
])
def test_missing_or_corrupt_checkpoints_are_refused(models, tmp_path, run_cli, damage, match):  # noqa: F811
    bad = make_expert(models["base"], tmp_path / "bad", seed=9)
    st = bad / "model.safetensors"
    if damage == "missing":
        st.unlink()
    elif damage == "truncated":
        st.write_bytes(st.read_bytes()[:-1000])
    elif damage == "garbage":
        st.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + b"\0" * 64)
    elif damage == "no-config":
        (bad / "config.json").unlink()
    elif damage == "not-a-folder":
        shutil.rmtree(bad)
    elif damage == "index":
        (bad / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "model-00002.safetensors"}}))
    refused(run_cli, tmp_path / "o", "--base", models["base"], *experts_args(("a", models["e0"]), ("bad", bad)),
            match=match)


def test_config_errors_are_one_line(tmp_path, run_cli):
    cfg = tmp_path / "m.yaml"
    cfg.write_text("base: b\nexperts: [{name: a, path: x}, {name: b, path: y}]\nrouter: {init: hidden}\n")
    refused(run_cli, tmp_path / "o", cfg, match=f"{cfg}: router.init")
    cfg.write_text("base: b\nexperts: [{name: a, path: x}, {name: b, path: y}]\nshard: base\n")
    refused(run_cli, tmp_path / "o", cfg, match="shard")


def test_a_failure_mid_merge_leaves_nothing(models, tmp_path, monkeypatch):  # noqa: F811
    from mixnu.merge import MergeConfig, merge_experts

    calls = {"n": 0}
    real = safetensors_stream.ShardWriter.write

    def failing(self, tensor):
        calls["n"] += 1
        if calls["n"] == 10:
            raise OSError("disk full (injected)")
        return real(self, tensor)

    monkeypatch.setattr(safetensors_stream.ShardWriter, "write", failing)
    out = tmp_path / "moe"
    cfg = MergeConfig(base=models["base"], experts=[{"name": "a", "path": models["e0"]}, {"name": "b", "path": models["e1"]}],
                      out=out, max_shard_mb=1)
    with pytest.raises(OSError, match="injected"):
        merge_experts(cfg)
    assert calls["n"] == 10
    assert list(tmp_path.iterdir()) == []


def test_a_killed_merge_leaves_no_output_folder(models, tmp_path):  # noqa: F811
    """SIGKILL mid-merge (after some shard bytes are on disk): no output folder appears."""
    out = tmp_path / "moe"
    started = tmp_path / "started"
    script = f"""
import time
from pathlib import Path
from mixnu.merge import safetensors_stream
from mixnu.merge import MergeConfig, merge_experts
real = safetensors_stream.ShardWriter.write
def slow(self, t):
    real(self, t)
    Path({str(started)!r}).touch()
    time.sleep(0.5)
safetensors_stream.ShardWriter.write = slow
merge_experts(MergeConfig(base={str(models["base"])!r}, out={str(out)!r},
    experts=[{{"name": "a", "path": {str(models["e0"])!r}}}, {{"name": "b", "path": {str(models["e1"])!r}}}]))
"""
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while not started.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert started.exists(), "the merge never started writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".moe.")]
    assert leftovers and all(p.name.endswith(".tmp") for p in leftovers)  # a dot-named temp, never the output


def test_shapes_in_writer_are_checked(tmp_path):
    w = safetensors_stream.ShardWriter(tmp_path / "x.safetensors", [("a", "float32", (2, 2))])
    w.write(torch.zeros(3))
    with pytest.raises(RuntimeError, match="planned"):
        w.close()


def test_toy_recipe_is_a_valid_merge_config():
    from mixnu.config import load_config
    from mixnu.merge import MergeConfig

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "toy" / "merge.yaml"
    cfg = load_config(MergeConfig, recipe)
    assert cfg.router.init == "data" and len(cfg.experts) == 4 and all(e.corpus for e in cfg.experts)
