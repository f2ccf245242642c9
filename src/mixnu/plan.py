"""The resource plan of a full-scale recipe: `mixnu plan recipes/mixnu-19b/plan.yaml`.

Nobody can run the 19B recipe on a laptop, so every number it needs is derived here, in the open, from
the recipe's own files: the base architecture (Llama-2-7B's `config.json` fields, in plan.yaml), the
extended vocabulary (extend.yaml), the row padding (expand.yaml), each expert's and the router's
training config (steps, batch, accumulation, sequence length), the expert count and top-k
(merge.yaml), and the hardware (GPU count, memory, peak TFLOP/s and an assumed MFU, in plan.yaml).

Formulas (h hidden, I intermediate, L layers, V vocab rows, h_kv = kv_heads * h / heads, E experts, k top-k):
- parameters: attention 2h^2 + 2h*h_kv, MLP 3hI, norms 2h per layer, + embeddings Vh, untied head Vh,
  final norm h; a MoE layer holds E MLPs and a router Eh; active = the same with k MLPs.
- FLOPs per token (PaLM's model FLOPs, no recompute counted): training all weights 6N + 12*L*h*s with
  N = parameters doing matmuls (all but the input embedding); training only routers 4N_active + 12*L*h*s
  (forward, and backward to activations, but no weight gradients for frozen weights).
- GPU-hours = tokens * FLOPs per token / (GPUs' peak * MFU) / 3600, per GPU summed over GPUs.
- memory per GPU (bf16 mixed precision, AdamW, both engines fully sharded over G GPUs):
  states = (16 bytes * trainable + 2 bytes * frozen) / G  [bf16 weight 2 + grad 2 + fp32 master 4 + Adam 8];
  gathered weights: ZeRO-3 holds the running module and one prefetched (2 * largest module * 2 bytes),
  FSDP (transformer-layer wrapping) holds the root unit (embeddings + head) unsharded for the whole step plus
  two decoder layers (2 * (root + 2 layers) bytes), gradient buckets: one layer's bf16 grads;
  activations with gradient checkpointing: L*b*s*h*2 (layer inputs) + one layer's full activations
  b*s*(2(6h + 2h_kv + 4kI) + 8h) + logits b*s*V*10 (bf16 logits, fp32 copy, fp32 grad);
  plus a fixed allowance for the CUDA context, NCCL and the allocator (`overhead_gib`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from mixnu.config import StageConfig, load_config, read_yaml
from mixnu.errors import ConfigError
from mixnu.expand import ExpandConfig
from mixnu.train import TrainConfig

GIB = 2**30


class Architecture(StageConfig):
    """The base model's `config.json` fields the plan needs (Llama-2-7B in the recipe)."""

    hidden_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    num_hidden_layers: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_key_value_heads: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    tie_word_embeddings: bool = False


class Hardware(StageConfig):
    gpu: str = "H100-80GB"
    num_gpus: int = Field(8, ge=1)
    gpu_memory_gib: float = Field(80, gt=0)
    peak_tflops: float = Field(989.0, gt=0, description="dense bf16 peak per GPU")
    mfu: float = Field(0.40, gt=0, le=1, description="assumed model-FLOPs utilisation")
    overhead_gib: float = Field(3.0, ge=0, description="CUDA context, NCCL buffers, allocator fragmentation")


class PlanConfig(StageConfig):
    """plan.yaml: architecture, hardware, and the recipe's stage files (relative to plan.yaml)."""

    name: str = "recipe"
    architecture: Architecture
    hardware: Hardware = Field(default_factory=Hardware)
    extend: Path
    expand: Path
    experts: list[Path] = Field(min_length=1)
    merge: Path
    route: Path | None = None


@dataclass(frozen=True)
class Params:
    dense_base: int
    dense_expanded: int
    moe_total: int
    moe_active: int
    vocab_rows: int
    experts: int
    top_k: int


@dataclass(frozen=True)
class StagePlan:
    name: str
    model: str  # dense | moe
    trainable: str
    tokens: int
    flops: float
    gpu_hours: float
    memory_gib: dict[str, dict[str, float]]  # engine -> component -> GiB


@dataclass(frozen=True)
class PlanResult:
    name: str
    params: Params
    stages: list[StagePlan]
    total_gpu_hours: float
    hardware: dict


def param_counts(a: Architecture, vocab_rows: int, experts: int = 1, active: int | None = None) -> int:
    """Parameters of a Llama (experts=1) or Mixtral with `experts` MLPs per layer, `active` of them counted."""
    h, i, layers = a.hidden_size, a.intermediate_size, a.num_hidden_layers
    h_kv = a.num_key_value_heads * h // a.num_attention_heads
    attn = 2 * h * h + 2 * h * h_kv
    mlps = experts if active is None else active
    router = experts * h if experts > 1 else 0
    per_layer = attn + mlps * 3 * h * i + router + 2 * h
    emb = vocab_rows * h * (1 if a.tie_word_embeddings else 2)
    return emb + layers * per_layer + h


def layer_params(a: Architecture, experts: int = 1) -> int:
    h = a.hidden_size
    h_kv = a.num_key_value_heads * h // a.num_attention_heads
    return 2 * h * h + 2 * h * h_kv + experts * 3 * h * a.intermediate_size + (experts * h if experts > 1 else 0) + 2 * h


def activation_bytes(a: Architecture, vocab_rows: int, *, top_k: int, micro_batch: int, seq_len: int) -> int:
    """Activation bytes of one training step with gradient checkpointing (bf16; see the module docstring).

    Checked against measured CPU runs in bench/plan_memory.py (docs/train.md states the error).
    """
    h, i, layers = a.hidden_size, a.intermediate_size, a.num_hidden_layers
    h_kv = a.num_key_value_heads * h // a.num_attention_heads
    tokens = micro_batch * seq_len
    return (layers * tokens * h * 2 + tokens * (2 * (6 * h + 2 * h_kv + 4 * top_k * i) + 8 * h)
            + tokens * vocab_rows * 10)


def memory(a: Architecture, hw: Hardware, vocab_rows: int, trainable: int, total: int, *, experts: int, top_k: int,
           micro_batch: int, seq_len: int) -> dict[str, dict[str, float]]:
    """GiB per GPU by component, for `zero3` and `fsdp` (see the module docstring)."""
    h, layers = a.hidden_size, a.num_hidden_layers
    g = hw.num_gpus
    states = (16 * trainable + 2 * (total - trainable)) / g
    layer = layer_params(a, experts)
    root = vocab_rows * h * (1 if a.tie_word_embeddings else 2)
    act = activation_bytes(a, vocab_rows, top_k=top_k, micro_batch=micro_batch, seq_len=seq_len)
    grads = 2 * layer if trainable == total else 2 * trainable / layers  # bf16 grads of one layer's trainables
    out = {}
    for engine, gathered in (("zero3", 2 * 2 * max(layer, vocab_rows * h)), ("fsdp", 2 * (root + 2 * layer))):
        parts = {"states": states, "gathered_weights": gathered, "grad_buckets": grads, "activations": act}
        gib = {k: round(v / GIB, 2) for k, v in parts.items()}
        gib["overhead"] = hw.overhead_gib
        gib["total"] = round(sum(v / GIB for v in parts.values()) + hw.overhead_gib, 2)
        gib["fits"] = float(gib["total"] <= hw.gpu_memory_gib)
        out[engine] = gib
    return out


def _stage_from_train(name: str, t: TrainConfig, a: Architecture, hw: Hardware, vocab_rows: int, experts: int,
                      top_k: int) -> StagePlan:
    moe = experts > 1
    total = param_counts(a, vocab_rows, experts)
    active = param_counts(a, vocab_rows, experts, top_k if moe else None)
    emb_in = vocab_rows * a.hidden_size
    n_mm = active - (0 if a.tie_word_embeddings else emb_in)  # parameters doing matmuls per token
    attn = 12 * a.num_hidden_layers * a.hidden_size * t.seq_len
    if t.trainable in ("router",):
        trainable = experts * a.hidden_size * a.num_hidden_layers
        per_token = 4 * n_mm + attn
    elif t.trainable in ("all", "router_and_all"):
        trainable = total
        per_token = 6 * n_mm + attn
    else:
        raise ConfigError(f"{name}: the plan covers trainable all, router or router_and_all, not {t.trainable}")
    tokens = t.steps * t.batch_size * t.grad_accum * hw.num_gpus * t.seq_len
    flops = float(tokens) * per_token
    hours = flops / (hw.peak_tflops * 1e12 * hw.mfu) / 3600
    mem = memory(a, hw, vocab_rows, trainable, total, experts=experts, top_k=top_k if moe else 1,
                 micro_batch=t.batch_size, seq_len=t.seq_len)
    return StagePlan(name=name, model="moe" if moe else "dense", trainable=t.trainable, tokens=tokens, flops=flops,
                     gpu_hours=round(hours, 1), memory_gib=mem)


def load_plan(path: str | Path, overrides: list[str] | None = None) -> PlanConfig:
    """Read plan.yaml; stage paths inside it are resolved against its folder."""
    path = Path(path)
    cfg = load_config(PlanConfig, path, overrides)
    base = path.parent

    def rel(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    return cfg.model_copy(update={"extend": rel(cfg.extend), "expand": rel(cfg.expand),
                                  "experts": [rel(p) for p in cfg.experts], "merge": rel(cfg.merge),
                                  "route": rel(cfg.route) if cfg.route else None})


def make_plan(cfg: PlanConfig) -> PlanResult:
    """Parameter counts, and tokens, FLOPs, GPU-hours and memory per GPU for every GPU stage."""
    a, hw = cfg.architecture, cfg.hardware
    vocab = int(read_yaml(cfg.extend).get("vocab_size", a.vocab_size))
    expand = load_config(ExpandConfig, cfg.expand)
    rows = -(-vocab // expand.pad_to_multiple_of) * expand.pad_to_multiple_of
    merge = read_yaml(cfg.merge)
    experts = len(merge.get("experts") or [])
    top_k = int(merge.get("num_experts_per_tok", merge.get("experts_per_token", 2)))  # old key still read
    if experts != len(cfg.experts) or not 1 <= top_k <= experts:
        raise ConfigError(f"{cfg.merge}: {experts} experts (top-{top_k}) but plan.yaml lists {len(cfg.experts)} "
                          "expert configs; make them agree")
    params = Params(dense_base=param_counts(a, a.vocab_size), dense_expanded=param_counts(a, rows),
                    moe_total=param_counts(a, rows, experts), moe_active=param_counts(a, rows, experts, top_k),
                    vocab_rows=rows, experts=experts, top_k=top_k)
    stages = [_stage_from_train(p.stem, load_config(TrainConfig, p), a, hw, rows, 1, 1)
              for p in cfg.experts]
    if cfg.route is not None:
        stages.append(_stage_from_train(cfg.route.stem, load_config(TrainConfig, cfg.route), a, hw, rows, experts, top_k))
    return PlanResult(name=cfg.name, params=params, stages=stages,
                      total_gpu_hours=round(sum(s.gpu_hours for s in stages), 1), hardware=hw.model_dump())


def plan_markdown(p: PlanResult) -> str:
    """The plan as Markdown tables (parameters; then one row per stage and engine)."""
    hw = p.hardware
    q = p.params
    lines = [f"# Resource plan: {p.name}", "",
             f"Hardware: {hw['num_gpus']} x {hw['gpu']} ({hw['gpu_memory_gib']:g} GiB, {hw['peak_tflops']:g} TFLOP/s "
             f"bf16 peak), MFU assumed {hw['mfu']:.0%}.", "",
             "| parameters | count |", "|---|---|",
             f"| base (dense, base vocabulary) | {q.dense_base / 1e9:.3f} B |",
             f"| expanded base (vocab rows {q.vocab_rows:,}) | {q.dense_expanded / 1e9:.3f} B |",
             f"| MoE total ({q.experts} experts) | {q.moe_total / 1e9:.3f} B |",
             f"| MoE active per token (top-{q.top_k}) | {q.moe_active / 1e9:.3f} B |", "",
             "| stage | trains | tokens | GPU-hours | engine | states | gathered | grads | activations | overhead "
             "| GiB/GPU | fits |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in p.stages:
        for engine, m in s.memory_gib.items():
            lines.append(f"| {s.name} | {s.trainable} | {s.tokens / 1e9:.2f} B | {s.gpu_hours:,.1f} | {engine} | "
                         f"{m['states']} | {m['gathered_weights']} | {m['grad_buckets']} | {m['activations']} | "
                         f"{m['overhead']} | {m['total']} | {'yes' if m['fits'] else 'NO'} |")
    lines += ["", f"Total: {p.total_gpu_hours:,.1f} GPU-hours "
                  f"({p.total_gpu_hours / hw['num_gpus']:,.1f} h wall on {hw['num_gpus']} GPUs). "
                  "Extend, expand and merge run on CPU (minutes).", ""]
    return "\n".join(lines)
