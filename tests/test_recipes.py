"""Every recipe YAML of the expand/train stages validates against the config it feeds; Accelerate configs load."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mixnu.config import load_config

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _config_class(path: Path):
    """The config class a recipe file feeds (by its name), or None for files of other stages."""
    from mixnu.expand import ExpandConfig
    from mixnu.plan import PlanConfig
    from mixnu.train import TrainConfig

    name = path.stem
    if name == "expand":
        return ExpandConfig
    if name.startswith("expert-"):
        return TrainConfig
    if name == "plan":
        return PlanConfig
    if name == "route":
        from mixnu.train import RouteConfig

        return RouteConfig
    if name == "merge":
        from mixnu.merge import MergeConfig

        return MergeConfig
    if name == "extend":
        from mixnu.tokenizer import ExtendConfig

        return ExtendConfig
    return None


MINE = sorted((RECIPES / "mixnu-19b").glob("*.yaml")) + [RECIPES / "toy" / "expand.yaml",
                                                          RECIPES / "toy" / "expert-law.yaml",
                                                          RECIPES / "toy" / "merge.yaml"]


def test_recipe_set_is_complete():
    names = {p.name for p in (RECIPES / "mixnu-19b").glob("*.yaml")}
    assert {"extend.yaml", "expand.yaml", "merge.yaml", "route.yaml", "plan.yaml"} <= names
    assert {f"expert-{d}.yaml" for d in ("law", "tech", "daily", "literature")} <= names


@pytest.mark.parametrize("path", MINE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_validates(path):
    cls = _config_class(path)
    assert cls is not None, f"{path.name}: no config class claims this recipe file"
    cfg = load_config(cls, path)
    if path.name.startswith("expert-") and path.parent.name == "mixnu-19b":
        assert cfg.trainable == "all" and cfg.precision == "bf16" and cfg.gradient_checkpointing
        assert cfg.data[0].stem == path.stem.removeprefix("expert-")
    if path.name == "merge.yaml":  # transformers' key, not the deprecated experts_per_token
        assert "num_experts_per_tok" in yaml.safe_load(path.read_text()) and cfg.num_experts_per_tok == 2


def test_merge_recipe_names_the_four_experts():
    merge = yaml.safe_load((RECIPES / "mixnu-19b" / "merge.yaml").read_text())
    outs = {yaml.safe_load(p.read_text())["out"] for p in (RECIPES / "mixnu-19b").glob("expert-*.yaml")}
    assert {e["path"] for e in merge["experts"]} == outs
    expand = yaml.safe_load((RECIPES / "mixnu-19b" / "expand.yaml").read_text())
    assert merge["base"] == expand["out"]


@pytest.mark.parametrize("name", ["zero3-8gpu.yaml", "fsdp-8gpu.yaml"])
def test_accelerate_configs_load(name):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import launch_command_parser

    path = RECIPES / "accelerate" / name
    cfg = ClusterConfig.from_yaml_file(path)  # raises on unknown top-level keys
    assert cfg.num_processes == 8 and cfg.mixed_precision == "bf16" and not cfg.use_cpu
    launch_args = {a.dest for a in launch_command_parser()._actions}
    nested = cfg.deepspeed_config if cfg.distributed_type == "DEEPSPEED" else cfg.fsdp_config
    assert nested and set(nested) <= launch_args  # every engine key is one `accelerate launch` understands
    if cfg.distributed_type == "DEEPSPEED":
        assert nested["zero_stage"] == 3
    else:
        assert cfg.distributed_type == "FSDP" and nested["fsdp_version"] == 2 and nested["fsdp_reshard_after_forward"]
