"""Merge a Llama base and N Llama experts into one Mixtral MoE checkpoint: `mixnu merge`.

`merge_experts(MergeConfig) -> MergeResult` writes a folder that `AutoModelForCausalLM` loads and
that vLLM and llama.cpp's converter read: `config.json` (a MixtralConfig carrying every Llama
field), sharded safetensors under the hub names (`mixnu.arch`'s Mixtral `checkpoint` templates:
`model.layers.L.block_sparse_moe.experts.E.w1/w2/w3` = gate/down/up, `...block_sparse_moe.gate`) with
`model.safetensors.index.json`, the tokenizer (with `tokenizer.model`), `generation_config.json`,
and a README model card with the merge config and the sha256 of every input file. Each expert's
MLP becomes expert E of every layer; attention, norms, embeddings and head are the experts' mean
(`shared: average`) or the base's (`shared: base`).

Streaming: every output name, dtype and shape is planned from the safetensors headers before any
data is read; then tensors are produced one at a time (large ones in row chunks) and written
straight into the shard files. Memory holds one tensor chunk (plus, for text-based router init,
one layer of weights and the sample's hidden states), never a shard or a model. Everything is
built in a temp folder beside the output and renamed at the end (`mixnu.io.atomic_dir`).

`average_experts(MergeConfig)` writes the plain weight average of the experts as a dense Llama.

Modules, bottom up: `config` (MergeConfig, MergeResult), `safetensors_stream` (headers,
ShardWriter, dtype conversion), `inputs` (Checkpoint and the input checks), `layout` (the planned
tensors and shards), `router_init`, `produce` (chunked producer, shard writing, side files),
`build` (the two entry points). The names below are the package's public API.
"""

from mixnu.merge.build import average_experts, merge_experts
from mixnu.merge.config import ExpertSpec, MergeConfig, MergeResult, RouterConfig, parse_expert_flag
from mixnu.merge.inputs import Checkpoint, check_compatible, tokenizer_source
from mixnu.merge.safetensors_stream import ShardWriter

__all__ = [
    "Checkpoint", "ExpertSpec", "MergeConfig", "MergeResult", "RouterConfig", "ShardWriter", "average_experts",
    "check_compatible", "merge_experts", "parse_expert_flag", "tokenizer_source",
]
