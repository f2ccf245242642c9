"""The YAML + pydantic config system."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import Field

from mixnu.config import StageConfig, dump_config, load_config, parse_overrides
from mixnu.errors import ConfigError


class Inner(StageConfig):
    init: Literal["random", "data"] = "random"
    seed: int = 0


class Demo(StageConfig):
    lr: float = Field(3e-4, gt=0, lt=1)
    steps: int = Field(10, ge=1)
    router: Inner = Inner()


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.001\nrouter:\n  init: data\n")
    cfg = load_config(Demo, path, ["steps=5", "router.seed=7"])
    assert (cfg.lr, cfg.steps, cfg.router.init, cfg.router.seed) == (0.001, 5, "data", 7)
    again = tmp_path / "again.yaml"
    again.write_text(dump_config(cfg))
    assert load_config(Demo, again) == cfg


def test_error_names_file_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("lr: 5\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: lr: .*less than 1"):
        load_config(Demo, path)
    path.write_text("router:\n  init: magic\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: router\.init: "):
        load_config(Demo, path)
    path.write_text("lerning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"lerning_rate: Extra inputs are not permitted"):
        load_config(Demo, path)


def test_bad_yaml_and_missing_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml:\d+: not valid YAML"):
        load_config(Demo, path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(Demo, tmp_path / "missing.yaml")


def test_override_parsing():
    assert parse_overrides(["a.b=1", "c=[1, 2]", "d=x"]) == {"a": {"b": 1}, "c": [1, 2], "d": "x"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["novalue"])
