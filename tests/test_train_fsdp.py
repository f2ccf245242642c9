"""`mixnu train` under FSDP2 on 2 CPU processes, with recipes/accelerate/fsdp-8gpu.yaml's settings.

Two torchrun runs (about 20-40 s each on 2 loaded cores): a 4-step run that checkpoints (sharded) at
steps 2 and 4, and a resume from the step-2 checkpoint. Against them: the same run in one process
(batch 2 x 2 blocks = the same blocks per step), the full-state output loaded by AutoModelForCausalLM.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mixnu.errors import ConfigError
from mixnu.io import read_jsonl
from mixnu.train import TrainConfig, train

pytestmark = pytest.mark.filterwarnings("ignore")
FSDP_YAML = Path(__file__).resolve().parents[1] / "recipes" / "accelerate" / "fsdp-8gpu.yaml"


@pytest.fixture(scope="module")
def data(tmp_path_factory, corpora) -> list[Path]:
    from mixnu.io import read_corpus

    folder = tmp_path_factory.mktemp("data")
    out = []
    for dom in ("law", "tech"):
        p = folder / f"{dom}.txt"
        p.write_text("\n".join(read_corpus(corpora[dom], max_lines=120)) + "\n", encoding="utf-8")
        out.append(p)
    return out


def _fields(model: Path, data: list[Path], out: Path, cache: Path) -> dict:
    return dict(model=model, data=data, out=out, cache_dir=cache, steps=4, seq_len=32, lr=3e-3, warmup_steps=1,
                log_every=1, eval_tokens=256, seed=0, quiet=True, cpu=True)


def _torchrun(fields: dict, port: int, **extra) -> None:
    """`torchrun --nproc_per_node 2 -m mixnu train --config C` with the FSDP recipe as fsdp_config."""
    import yaml

    cfg = {k: str(v) if isinstance(v, Path) else [str(x) for x in v] if isinstance(v, list) else v
           for k, v in {**fields, **extra}.items()}
    cfg_path = Path(fields["out"]).with_suffix(".yaml")
    cfg_path.write_text(yaml.safe_dump({**cfg, "fsdp_config": str(FSDP_YAML)}))
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_port", str(port), "-m", "mixnu", "train",
           "--config", str(cfg_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]


def _losses(log: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_jsonl(log) if "loss" in r}


def test_fsdp_two_cpu_processes_match_one_process_and_resume(tmp_path, tiny_llama_dir, data):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    cache = tmp_path / "cache"
    fields = _fields(tiny_llama_dir, data, tmp_path / "fsdp", cache)
    _torchrun(fields, 29571, batch_size=2, save_every=2)
    log = read_jsonl(tmp_path / "fsdp" / "train_log.jsonl")
    start = next(r for r in log if r.get("event") == "start")
    assert start["num_processes"] == 2 and start["tokens_per_step"] == 2 * 2 * 32

    # sharded checkpoints: Accelerate's save_state under FSDP, one model and one optimizer shard per process
    ckpt = tmp_path / "fsdp.ckpt"
    for step in (2, 4):
        d = ckpt / f"step-{step:07d}"
        assert sorted(p.name for p in (d / "pytorch_model_fsdp_0").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
        assert len(list((d / "optimizer_0").glob("*.distcp"))) == 2 and not list(d.glob("*.safetensors"))
    # the final checkpoint: full state gathered on rank 0, plain safetensors that transformers loads
    w = load_file(tmp_path / "fsdp" / "model.safetensors")
    init = load_file(tiny_llama_dir / "model.safetensors")
    assert set(w) == set(init) and all(w[n].shape == init[n].shape for n in w)
    assert all(not torch.equal(w[n], init[n]) for n in w if n.endswith("proj.weight"))
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "fsdp")
    assert torch.equal(model.state_dict()["model.layers.1.mlp.down_proj.weight"], w["model.layers.1.mlp.down_proj.weight"])

    # one process, batch 4: the same 4 blocks per step (rank r takes blocks 2r, 2r+1) -> the same losses
    one = train(TrainConfig(**_fields(tiny_llama_dir, data, tmp_path / "one", cache), batch_size=4))
    fsdp_losses, one_losses = _losses(tmp_path / "fsdp" / "train_log.jsonl"), _losses(one.log)
    assert list(fsdp_losses) == [1, 2, 3, 4] and fsdp_losses[4] < fsdp_losses[1]
    assert fsdp_losses == pytest.approx(one_losses, abs=2e-4, rel=0)
    one_w = load_file(tmp_path / "one" / "model.safetensors")
    assert max(float((w[n] - one_w[n]).abs().max()) for n in w) < 1e-3

    # resume from the sharded step-2 checkpoint: steps 3-4 and the final weights as in the uninterrupted run
    shutil.move(tmp_path / "fsdp", tmp_path / "first")
    shutil.rmtree(ckpt / "step-0000004")
    _torchrun(fields, 29572, batch_size=2, save_every=2, resume=True)
    resumed = _losses(tmp_path / "fsdp" / "train_log.jsonl")
    assert resumed == pytest.approx(fsdp_losses, abs=1e-5, rel=0)
    r = load_file(tmp_path / "fsdp" / "model.safetensors")
    assert max(float((r[n] - w[n]).abs().max()) for n in w) < 1e-5


def test_fsdp_config_refusals(tmp_path, tiny_llama_dir, data):
    cfg = TrainConfig(**_fields(tiny_llama_dir, data, tmp_path / "o", tmp_path / "c"), batch_size=2,
                      fsdp_config=FSDP_YAML)
    with pytest.raises(ConfigError, match="2 or more processes"):
        train(cfg)
    bad = tmp_path / "ddp.yaml"
    bad.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nnum_processes: 2\n")
    with pytest.raises(ConfigError, match="distributed_type: FSDP"):
        train(cfg.model_copy(update={"fsdp_config": bad}))
    assert "ACCELERATE_USE_FSDP" not in os.environ  # refused before an Accelerator could set it for later runs
