"""Settings and result of `mixnu merge`: `MergeConfig` (the YAML keys), `MergeResult`, `--expert` parsing."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mixnu.config import StageConfig


class RouterConfig(StageConfig):
    """How the routers start: `random` (seeded), `uniform` (zeros), or from text: `prompts`, `data`."""

    init: Literal["random", "uniform", "prompts", "data"] = "random"
    seed: int = 0
    samples: int = Field(64, ge=1, description="corpus lines sampled per expert for init: data")
    max_tokens: int = Field(128, ge=1, description="tokens kept per text for prompts/data init")


class ExpertSpec(StageConfig):
    """One expert: a name, a Llama checkpoint folder, and optional text for router init."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    path: Path
    corpus: Path | None = None
    prompts: list[str] = Field(default_factory=list)


class MergeConfig(StageConfig):
    """Settings of `mixnu merge` (the YAML keys of issue #5, plus output options)."""

    base: Path
    experts: list[ExpertSpec]
    experts_per_token: int = Field(2, ge=1)
    dtype: Literal["float32", "float16", "bfloat16"] = "bfloat16"
    shared: Literal["average", "base"] = "average"
    router: RouterConfig = Field(default_factory=RouterConfig)
    out: Path | None = None
    force: bool = False
    allow_identical: bool = Field(False, description="merge even if every expert's MLPs are identical")
    max_shard_mb: int = Field(4096, ge=1, description="largest output shard, in MB (10^6 bytes)")
    quiet: bool = True

    @field_validator("experts")
    @classmethod
    def _enough_experts(cls, v: list[ExpertSpec]) -> list[ExpertSpec]:
        if len(v) < 2:
            raise ValueError(f"a mixture needs at least 2 experts, got {len(v)}; add experts")
        names = [e.name for e in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"expert names must be unique; {dup[0]} appears twice")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> MergeConfig:
        if self.experts_per_token > len(self.experts):
            raise ValueError(f"experts_per_token={self.experts_per_token} exceeds the {len(self.experts)} experts")
        for e in self.experts:
            if self.router.init == "prompts" and not e.prompts:
                raise ValueError(f"router.init=prompts needs prompts for every expert; '{e.name}' has none")
            if self.router.init == "data" and e.corpus is None:
                raise ValueError(f"router.init=data needs a corpus for every expert; '{e.name}' has none")
        return self


@dataclass(frozen=True)
class MergeResult:
    """What a merge wrote, and what it cost."""

    out: Path
    kind: str  # "mixtral" or "dense-average"
    experts: tuple[str, ...]
    num_layers: int
    experts_per_token: int
    shared: str
    router_init: str
    dtype: str
    shards: tuple[str, ...]
    tensors: int
    parameters: int
    total_bytes: int
    identical_experts: bool
    max_held_bytes: int  # most tensor bytes held at once by the merge (chunks, layer weights, hidden states)
    peak_rss_mb: float  # the process's peak RSS so far (ru_maxrss), imports included
    wall_s: float


def parse_expert_flag(value: str) -> dict[str, str]:
    """`NAME=PATH` (from `--expert`) -> {"name", "path"}; a bare PATH is named after its folder."""
    if "=" in value:
        name, path = value.split("=", 1)
    else:
        path = value
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(value).name) or "expert"
    return {"name": name, "path": path}
