"""The ZeRO-3 recipe's DeepSpeed config, as `mixnu train` would hand it over, read by DeepSpeed's own parser.

    .venv/bin/python bench/zero3_config.py [--expert recipes/mixnu-19b/expert-law.yaml]

1. In the project's venv: recipes/accelerate/zero3-8gpu.yaml's `deepspeed_config` becomes Accelerate's
   `DeepSpeedPlugin` (the fields `accelerate launch` passes as ACCELERATE_DEEPSPEED_* variables), bf16
   is set as Accelerator does, and the sizes `mixnu train` writes into it are filled in from the
   expert recipe (micro-batch, accumulation, global batch for 8 GPUs, clipping).
2. In a separate venv, bench/.peers/deepspeed (torch pinned to the same CPU wheel, `deepspeed` from
   PyPI built without its C++/CUDA ops; created on first use), `deepspeed.runtime.config.DeepSpeedConfig`
   parses that dict with a data-parallel world size of 8, which runs DeepSpeed's own checks (batch
   arithmetic, ZeRO stage and offload fields, bf16/fp16 exclusivity) and reports the parsed values.

No engine is started and no model is sharded (that needs GPUs). Writes bench/results/zero3_config.json.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

from _common import write_result

REPO = Path(__file__).resolve().parents[1]
DS_VENV = REPO / "bench" / ".peers" / "deepspeed"
GPUS = 8

PARSE = r"""
import json, os, sys
import deepspeed
from deepspeed.runtime.config import DeepSpeedConfig

# a 1-process gloo group, so that DeepSpeedConfig asks the mpu below for the data-parallel world size
os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29581")
deepspeed.init_distributed(dist_backend="gloo", auto_mpi_discovery=False)

class DataParallel:  # the world size DeepSpeed would get from its process groups on 8 GPUs
    def get_data_parallel_world_size(self): return int(sys.argv[2])
    def get_data_parallel_rank(self): return 0
    def get_model_parallel_world_size(self): return 1
    def get_model_parallel_rank(self): return 0

cfg = json.load(open(sys.argv[1]))
try:  # negative control: the parser must refuse a global batch that 8 GPUs cannot make
    DeepSpeedConfig({**cfg, "train_batch_size": cfg["train_batch_size"] + 1}, mpu=DataParallel())
    refused = None
except AssertionError as exc:
    refused = str(exc)[:200]
c = DeepSpeedConfig(cfg, mpu=DataParallel())
z = c.zero_config
print(json.dumps({"deepspeed": deepspeed.__version__, "negative_control_refused": refused,
                  "world_size": c.world_size,
                  "train_batch_size": c.train_batch_size,
                  "train_micro_batch_size_per_gpu": c.train_micro_batch_size_per_gpu,
                  "gradient_accumulation_steps": c.gradient_accumulation_steps,
                  "gradient_clipping": c.gradient_clipping, "bf16": c.bfloat16_config.enabled,
                  "fp16": c.float16_config.enabled, "zero_stage": int(z.stage),
                  "offload_optimizer": str(z.offload_optimizer.device) if z.offload_optimizer else None,
                  "offload_param": str(z.offload_param.device) if z.offload_param else None,
                  "stage3_gather_16bit_weights_on_model_save": z.gather_16bit_weights_on_model_save}))
"""


def ensure_deepspeed() -> Path:
    """bench/.peers/deepspeed with torch==2.13.0 (CPU) and deepspeed (no ops built, no build isolation)."""
    py = DS_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(DS_VENV)], check=True)
        subprocess.run([str(DS_VENV / "bin" / "pip"), "install", "-q", "torch==2.13.0", "setuptools", "wheel"],
                       check=True)
        subprocess.run([str(DS_VENV / "bin" / "pip"), "install", "-q", "--no-build-isolation", "deepspeed"],
                       check=True, env={"DS_BUILD_OPS": "0", "PATH": "/usr/bin:/bin"})
    return py


def mixnu_ds_config(expert: Path) -> dict:
    """The DeepSpeed dict Accelerate builds from zero3-8gpu.yaml, with the sizes `mixnu train` writes."""
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.utils import DeepSpeedPlugin

    from mixnu.config import load_config, read_yaml
    from mixnu.train import TrainConfig

    cluster = ClusterConfig.from_yaml_file(str(REPO / "recipes" / "accelerate" / "zero3-8gpu.yaml"))
    plugin = DeepSpeedPlugin(**cluster.deepspeed_config)
    plugin.set_mixed_precision(cluster.mixed_precision)
    t = load_config(TrainConfig, expert)
    ds = plugin.deepspeed_config
    # what mixnu.train.train does under DeepSpeed (no dataloader is prepared, so it says the sizes)
    ds.update(train_micro_batch_size_per_gpu=t.batch_size, gradient_accumulation_steps=t.grad_accum,
              train_batch_size=t.batch_size * t.grad_accum * GPUS, gradient_clipping=t.grad_clip)
    # what Accelerator.prepare fills in from the model (Llama-2-7B's hidden size) for `auto` bucket sizes
    h = read_yaml(REPO / "recipes" / "mixnu-19b" / "plan.yaml")["architecture"]["hidden_size"]
    plugin.deepspeed_config_process(must_match=False, **{
        "zero_optimization.reduce_bucket_size": h * h, "zero_optimization.stage3_prefetch_bucket_size": int(0.9 * h * h),
        "zero_optimization.stage3_param_persistence_threshold": 10 * h})
    return ds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--expert", type=Path, default=REPO / "recipes" / "mixnu-19b" / "expert-law.yaml")
    args = ap.parse_args()
    ds = mixnu_ds_config(args.expert)
    autos = sorted(k for k, v in _flat(ds).items() if v == "auto")
    path = REPO / "bench" / "results" / "zero3_ds_config.json"
    path.write_text(json.dumps(ds, indent=1) + "\n")  # steps_per_print: Accelerate's float("inf"), as Infinity
    ds = {k: ("inf" if isinstance(v, float) and math.isinf(v) else v) for k, v in ds.items()}
    py = ensure_deepspeed()
    proc = subprocess.run([str(py), "-c", PARSE, str(path), str(GPUS)], capture_output=True, text=True)
    parsed = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
    error = None if parsed else proc.stderr.strip().splitlines()[-1][:500]
    print(json.dumps({"config": ds, "auto_values_left": autos, "parsed": parsed, "error": error}, indent=1))
    write_result("zero3_config", {"expert": str(args.expert.relative_to(REPO)), "ds_config": ds,
                                  "auto_values_left": autos, "parsed": parsed, "error": error})


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


if __name__ == "__main__":
    main()
