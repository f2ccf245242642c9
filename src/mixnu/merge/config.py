"""Settings and result of `mixnu merge`: `MergeConfig` (the YAML keys), `MergeResult`, `--expert` parsing."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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


OLD_TOP_K_KEY = "experts_per_token"  # deprecated spelling of num_experts_per_tok, still read


class MergeConfig(StageConfig):
    """Settings of `mixnu merge` (every key is documented in docs/merge.md, "Config").

    `num_experts_per_tok` is transformers' Mixtral key for the same number, written as-is into the
    output's config.json. The old key `experts_per_token` is still accepted (a `DeprecationWarning`);
    giving both with different values is a `ValidationError`.
    """

    base: Path
    experts: list[ExpertSpec]
    num_experts_per_tok: int = Field(2, ge=1, description="experts each token is routed to (top-k)")
    dtype: Literal["float32", "float16", "bfloat16"] = "bfloat16"
    shared: Literal["average", "base"] = "average"
    router: RouterConfig = Field(default_factory=RouterConfig)
    out: Path | None = None
    force: bool = False
    allow_identical: bool = Field(False, description="merge even if every expert's MLPs are identical")
    max_shard_mb: int = Field(4096, ge=1, description="largest output shard, in MB (10^6 bytes)")
    quiet: bool = True

    @model_validator(mode="before")
    @classmethod
    def _old_top_k_key(cls, data: Any) -> Any:
        if not isinstance(data, dict) or OLD_TOP_K_KEY not in data:
            return data
        data = dict(data)
        old = data.pop(OLD_TOP_K_KEY)
        if "num_experts_per_tok" in data and data["num_experts_per_tok"] != old:
            raise ValueError(f"num_experts_per_tok={data['num_experts_per_tok']} and its old name "
                             f"{OLD_TOP_K_KEY}={old} disagree; keep num_experts_per_tok only")
        data.setdefault("num_experts_per_tok", old)
        warnings.warn(f"merge config: '{OLD_TOP_K_KEY}' is deprecated; write 'num_experts_per_tok' "
                      "(transformers' name for the same number)", DeprecationWarning, stacklevel=2)
        return data

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
        if self.num_experts_per_tok > len(self.experts):
            raise ValueError(f"num_experts_per_tok={self.num_experts_per_tok} exceeds the {len(self.experts)} experts")
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
    num_experts_per_tok: int
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
