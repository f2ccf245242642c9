"""The whole recipe at toy scale on a CPU: `mixnu demo` / `make demo`.

Steps, each through the toolkit's own stage functions (so the demo also tests tokenizer, train, merge,
route, baselines and perplexity end to end; it does not run `expand`, which needs real Llama-2 weights,
nor fetch, data preparation, GGUF or the judge):
1. `tokenizer`: extend the Llama-2 SentencePiece tokenizer with Korean pieces (`extend_tokenizer`;
   a small added vocabulary, see docs/demo.md) and compare it with Llama-2's on the dev set;
2. `init`: a tiny Llama built from scratch with that vocabulary (real 7B weights are not available);
3. `base`: pretrain it briefly on the mix of all domains (`mixnu.train.train`);
4. `expert:<domain>`: branch one expert per domain and train it on its own corpus (`train`);
5. `merge`: BTX merge into a Mixtral MoE, once per router init (`merge_experts`), and the dense
   weight average of the experts (`average_experts`), the baseline BTX must beat;
6. `route`: train the routers (or routers + all) on the mix with the load-balancing loss (`train_router`);
   then the `baselines` listed in the config, at the same budget (`mixnu.baselines.train_baselines`);
7. `evaluate`: held-out bits/char per domain for every model (`mixnu.perplexity`), routing shares per
   domain x layer x expert (`mixnu.routing.analyze_routing`), a few generations per model.

Inputs: `data` (one corpus file per domain, or a data folder with `corpus/` and `eval/`) and
`eval_data` (a `<domain>_heldout.txt` per domain, never trained on); by default the data folder of
`mixnu.datasets` (`$MIXNU_DATA` / `$MIXNU_SHARED` when set, else the built-in data).
Writes `out/` atomically: `results.json`, `summary.md`, `routing_heatmap.png`, `routing_layers.png`,
`bits_per_char.png`, and `models/` (every checkpoint, loadable with `from_pretrained`) unless
`keep_models` is false.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mixnu.config import StageConfig
from mixnu.console import stderr
from mixnu.datasets import DataSource, llama2_tokenizer_model, resolve_inputs
from mixnu.errors import DataError
from mixnu.hf import quiet_transformers
from mixnu.io import atomic_dir, read_corpus
from mixnu.text import document_ids


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenizerPart(_Section):
    vocab_size: int = Field(36000, gt=32000, description="Llama-2's 32,000 pieces + the added Korean pieces")
    sample_lines: int = Field(20000, ge=100, description="corpus lines that train the Korean pieces")
    model_vocab: Literal["extended", "korean"] = Field(
        "extended", description="the tiny model's tokenizer: the extended Llama-2 one, or a small Korean BPE alone")
    korean_vocab_size: int = Field(8000, ge=300, description="size of the Korean BPE when model_vocab=korean")


class ModelPart(_Section):
    hidden_size: int = Field(128, ge=8)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(1024, ge=8)
    tie_word_embeddings: bool = True
    seq_len: int = Field(128, ge=8)


class TrainPart(_Section):
    steps: int = Field(ge=1)
    lr: float = Field(gt=0)
    batch_size: int = Field(4, ge=1)
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    trainable: Literal["all", "mlp", "router", "router_and_all"] = "all"
    router_lr: float | None = None
    router_aux_loss_coef: float | None = None
    balance_domains: bool = Field(False, description="repeat smaller corpora so each domain gives about as many blocks")


class MergePart(_Section):
    shared: Literal["average", "base"] = "average"
    router_inits: list[Literal["random", "uniform", "data"]] = Field(["data", "random"], min_length=1,
                                                                     description="first one is router-trained")
    num_experts_per_tok: int = Field(2, ge=1)
    init_samples: int = Field(64, ge=1)


class EvalPart(_Section):
    max_chars: int | None = Field(None, ge=100, description="per domain held-out characters (None: all)")
    batch_size: int = Field(16, ge=1)
    max_length: int = Field(256, ge=16)
    prompt: str = "이번 수능은 불수능이었어요."
    max_new_tokens: int = Field(40, ge=1)
    generations: int = Field(2, ge=0, description="samples per model for the prompt")


class DemoConfig(StageConfig):
    """Settings of the toy-scale run (recipes/toy/demo.yaml holds the recipe that meets the targets)."""

    out: Path = Path("demo-out")
    data: Path | None = Field(None, description="folder with one corpus file per domain, or with corpus/ and eval/ "
                                                "(default: $MIXNU_DATA / $MIXNU_SHARED, else the built-in data)")
    eval_data: Path | None = Field(None, description="folder with <domain>_heldout.txt (default: data's own, "
                                                     "else $MIXNU_DATA / $MIXNU_SHARED, else built-in)")
    max_lines: int | None = Field(None, ge=10, description="lines read per domain corpus (None: all)")
    seed: int = 0
    threads: int | Literal["auto"] | None = Field(
        "auto", description="torch CPU threads; auto: the cores left idle by the current load (at least 1)")
    tokenizer: TokenizerPart = Field(default_factory=TokenizerPart)
    model: ModelPart = Field(default_factory=ModelPart)
    base: TrainPart = Field(default_factory=lambda: TrainPart(steps=300, lr=3e-3))
    experts: TrainPart = Field(default_factory=lambda: TrainPart(steps=200, lr=3e-3, trainable="mlp"))
    merge: MergePart = Field(default_factory=MergePart)
    route: TrainPart = Field(default_factory=lambda: TrainPart(steps=100, lr=1e-3, trainable="router_and_all",
                                                               router_aux_loss_coef=0.02))
    eval: EvalPart = Field(default_factory=EvalPart)
    baselines: list[Literal["dense_same_steps", "dense_same_tokens", "sparse_upcycling"]] = Field(
        ["dense_same_steps", "dense_same_tokens", "sparse_upcycling"],
        description="what the MoE is compared with, each trained on the router stage's data (mixnu.baselines)")
    keep_models: bool = True
    fast: bool = Field(False, description="a few steps of everything: checks the pipeline, not the targets")
    force: bool = False
    quiet: bool = False

    @model_validator(mode="after")
    def _fast(self) -> DemoConfig:
        if self.fast:
            object.__setattr__(self, "tokenizer", self.tokenizer.model_copy(update={"sample_lines": 2000}))
            for part, steps in (("base", 4), ("experts", 2), ("route", 2)):
                object.__setattr__(self, part, getattr(self, part).model_copy(update={"steps": steps, "warmup_steps": 0}))
            object.__setattr__(self, "eval", self.eval.model_copy(update={"max_chars": min(self.eval.max_chars or 600, 600),
                                                                          "max_new_tokens": 8, "generations": 1}))
        return self


@dataclass(frozen=True)
class DemoResult:
    out: Path
    steps: dict[str, float] = field(default_factory=dict)  # step -> wall seconds
    table: str = ""
    targets: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0


class _Clock:
    """Wall time per step, printed as each step ends."""

    def __init__(self, quiet: bool) -> None:
        self.steps: dict[str, float] = {}
        self.quiet = quiet

    def run(self, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.steps[name] = round(time.perf_counter() - t0, 2)
        if not self.quiet:
            stderr.print(f"[green]step {name}[/green] done in {self.steps[name]:.1f} s")
        return out


def _inputs(cfg: DemoConfig) -> DataSource:
    """Corpus, held-out and dev files, and the data's name and sha256 (`mixnu.datasets.resolve_inputs`)."""
    return resolve_inputs(cfg.data, cfg.eval_data)


def _make_tokenizers(cfg: DemoConfig, files: dict[str, Path], work: Path) -> tuple[Path, Path]:
    """The extended Llama-2 tokenizer, and the folder of the tokenizer the tiny model uses."""
    from mixnu.tokenizer import ExtendConfig, extend_tokenizer

    out = work / "tokenizer"
    extend_tokenizer(ExtendConfig(base=llama2_tokenizer_model(), corpus=list(files.values()), out=out,
                                  vocab_size=cfg.tokenizer.vocab_size, sample_lines=cfg.tokenizer.sample_lines,
                                  force=True, quiet=True))
    if cfg.tokenizer.model_vocab == "extended":
        return out, out
    return out, _korean_bpe(cfg, files, work / "tokenizer-korean")


def _korean_bpe(cfg: DemoConfig, files: dict[str, Path], out: Path) -> Path:
    """A small SentencePiece BPE (byte fallback, Llama's special ids) trained on the corpora alone.

    At hidden size 128 the output layer dominates a step: with Llama-2's 32,000 rows in the
    vocabulary a training step is about 4x slower than with 8,000 rows (docs/demo.md).
    """
    import sentencepiece as spm
    from transformers import AutoTokenizer

    per_file = max(1, cfg.tokenizer.sample_lines // len(files))
    lines = []
    for path in files.values():
        docs = read_corpus(path, max_lines=cfg.max_lines)
        step = max(1, len(docs) // per_file)
        lines += docs[::step][:per_file]  # evenly spaced, deterministic
    out.mkdir(parents=True)
    (out / "sample.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(out / "sample.txt"), model_prefix=str(out / "tokenizer"),
                                   vocab_size=cfg.tokenizer.korean_vocab_size, model_type="bpe", byte_fallback=True,
                                   character_coverage=0.9995, num_threads=1, max_sentence_length=1 << 16,
                                   unk_id=0, bos_id=1, eos_id=2, minloglevel=2, normalization_rule_name="identity",
                                   hard_vocab_limit=False)  # a small corpus may give fewer pieces
    (out / "sample.txt").unlink()
    (out / "tokenizer.vocab").unlink()
    AutoTokenizer.from_pretrained(out).save_pretrained(out)
    return out


def _check_sizes(cfg: DemoConfig, files: dict[str, Path], tok_dir: Path) -> None:
    """A domain file must hold at least one training sequence (+1 token) with this tokenizer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    need = cfg.model.seq_len + 1
    for domain, path in files.items():
        n = 0
        for line in read_corpus(path, max_lines=cfg.max_lines):
            n += len(document_ids(tok, [line], eos=True)[0])  # as train packs it
            if n >= need:
                break
        if n < need:
            raise DataError(f"{path}: only {n} tokens, fewer than one training sequence ({need}); "
                            f"give the '{domain}' corpus more text or lower model.seq_len")


def _init_base(cfg: DemoConfig, tok_dir: Path, out: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tok_dir)
    m = cfg.model
    config = LlamaConfig(vocab_size=len(tok), hidden_size=m.hidden_size, intermediate_size=m.intermediate_size,
                         num_hidden_layers=m.num_layers, num_attention_heads=m.num_heads,
                         num_key_value_heads=m.num_heads, max_position_embeddings=max(512, 2 * m.seq_len),
                         tie_word_embeddings=m.tie_word_embeddings, rope_theta=10000.0, rms_norm_eps=1e-5,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(cfg.seed)
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    if (tok_dir / "tokenizer.model").is_file():
        shutil.copy(tok_dir / "tokenizer.model", out / "tokenizer.model")
    return out


def _fields(cfg: DemoConfig, part: TrainPart, model: Path, data: list[Path], out: Path, seed: int) -> dict[str, Any]:
    """`TrainConfig` fields of one training step of the demo."""
    return dict(model=model, data=data, out=out, steps=part.steps, lr=part.lr, batch_size=part.batch_size,
                seq_len=cfg.model.seq_len, warmup_steps=part.warmup_steps, weight_decay=part.weight_decay,
                trainable=part.trainable, max_lines=cfg.max_lines, eval_tokens=1024, seed=seed, cpu=True,
                precision="fp32", cache_dir=out.parent / ".cache", log_every=max(1, part.steps // 10),
                quiet=cfg.quiet, force=True)


def _route_config(cfg: DemoConfig, model: Path, data: list[Path], out: Path) -> Any:
    from mixnu.train import RouteConfig

    return RouteConfig(**_fields(cfg, cfg.route, model, data, out, cfg.seed + 9), router_lr=cfg.route.router_lr,
                       router_aux_loss_coef=cfg.route.router_aux_loss_coef)


def _train(cfg: DemoConfig, part: TrainPart, model: Path, data: list[Path], out: Path, seed: int) -> Any:
    from mixnu.train import TrainConfig, train

    return train(TrainConfig(**_fields(cfg, part, model, data, out, seed)))


def _baseline(cfg: DemoConfig, kind: str, route: Any, work: Path, n_experts: int) -> Any:
    """One of `mixnu.baselines`' runs against this demo's BTX budget."""
    from mixnu.baselines import BaselinesConfig, train_baselines

    return train_baselines(BaselinesConfig(base=work / "base", route=route, out=work / "baselines",
                                           experts=n_experts, num_experts_per_tok=cfg.merge.num_experts_per_tok,
                                           expert_steps=cfg.experts.steps, expert_batch_size=cfg.experts.batch_size,
                                           which=[kind]))


def _balanced(files: dict[str, Path]) -> list[Path]:
    """Each file repeated round(largest / its size) times, so the pooled blocks mix domains about evenly."""
    sizes = {d: max(p.stat().st_size, 1) for d, p in files.items()}
    big = max(sizes.values())
    return [p for d, p in files.items() for _ in range(max(1, round(big / sizes[d])))]


def _merge(cfg: DemoConfig, base: Path, experts: dict[str, Path], files: dict[str, Path], out: Path,
           init: str | None) -> Path:
    from mixnu.merge import ExpertSpec, MergeConfig, RouterConfig, average_experts, merge_experts

    mc = MergeConfig(base=base, experts=[ExpertSpec(name=d, path=p, corpus=files[d]) for d, p in experts.items()],
                     num_experts_per_tok=cfg.merge.num_experts_per_tok, dtype="float32", shared=cfg.merge.shared,
                     router=RouterConfig(init=init or "random", seed=cfg.seed, samples=cfg.merge.init_samples),
                     out=out, force=True, quiet=True)
    if init is None:
        average_experts(mc)
    else:
        merge_experts(mc)
    return out


def _generate(model: Any, tok: Any, cfg: DemoConfig) -> list[str]:
    import torch

    prompt = document_ids(tok, [cfg.eval.prompt])[0]  # `[BOS] body`, as in training
    ids = {"input_ids": torch.tensor([prompt]), "attention_mask": torch.ones(1, len(prompt), dtype=torch.long)}
    outs = []
    for i in range(cfg.eval.generations):
        torch.manual_seed(cfg.seed + i)
        with torch.no_grad():
            # min_new_tokens: the prompt is a whole sentence, after which a tiny model's likeliest token is EOS
            gen = model.generate(**ids, max_new_tokens=cfg.eval.max_new_tokens, do_sample=True, top_p=0.9,
                                 min_new_tokens=cfg.eval.max_new_tokens,
                                 temperature=0.8, repetition_penalty=1.2, pad_token_id=tok.eos_token_id)
        outs.append(tok.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
    return outs


def _evaluate(cfg: DemoConfig, models: dict[str, Path], held: dict[str, Path]) -> dict[str, Any]:
    """bits/char of every model; routing stats of every MoE; generations."""
    from mixnu import arch
    from mixnu.baselines import model_cost
    from mixnu.perplexity import load_causal_lm, load_tokenizer, read_texts, score_model
    from mixnu.routing import analyze_routing

    texts = {d: read_texts(p, cfg.eval.max_chars) for d, p in held.items()}
    out: dict[str, Any] = {"scores": {}, "routing": {}, "generations": {}, "cost": {}}
    for name, path in models.items():
        model, tok = load_causal_lm(path), load_tokenizer(path)
        out["cost"][name] = model_cost(model.config, cfg.model.seq_len)
        kw = dict(name=name, max_length=cfg.eval.max_length, batch_size=cfg.eval.batch_size, quiet=cfg.quiet)
        if arch.is_moe(model.config):
            stats = analyze_routing(model, tok, texts, **kw)
            out["routing"][name], scores = stats, stats.scores
        else:
            scores = score_model(model, tok, texts, **kw)
        out["scores"][name] = scores
        out["generations"][name] = _generate(model, tok, cfg) if cfg.eval.generations else []
        del model
    return out


def run_demo(cfg: DemoConfig) -> DemoResult:
    """Run the recipe end to end and write `cfg.out` (see the module docstring)."""
    with quiet_transformers():  # the stages show their own progress; keeps --quiet quiet
        return _run_demo(cfg)


def _run_demo(cfg: DemoConfig) -> DemoResult:
    import torch

    from mixnu import demo_report as report
    from mixnu.train import train_router

    t_start = time.perf_counter()
    if cfg.threads == "auto":
        cores = os.cpu_count() or 1
        torch.set_num_threads(max(1, min(cores, round(cores - os.getloadavg()[0]))))
    elif cfg.threads:
        torch.set_num_threads(cfg.threads)
    source = _inputs(cfg)
    files, held = source.corpus, source.heldout
    machine = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
    clock = _Clock(cfg.quiet)
    with atomic_dir(cfg.out, force=cfg.force) as tmp:
        work = tmp / "models"
        ext_dir, tok_dir = clock.run("tokenizer", _make_tokenizers, cfg, files, work)
        tok_table = clock.run("tokenizer table", report.tokenizer_table, ext_dir, tok_dir, source.dev)
        _check_sizes(cfg, files, tok_dir)
        init = clock.run("init", _init_base, cfg, tok_dir, work / "init")
        data = list(files.values())
        base_res = clock.run("base", _train, cfg, cfg.base, init, data, work / "base", cfg.seed)
        experts, train_info = {}, {"base": report.train_info(base_res)}
        for i, (d, path) in enumerate(files.items()):
            r = clock.run(f"expert:{d}", _train, cfg, cfg.experts, work / "base", [path], work / f"expert-{d}",
                          cfg.seed + 1 + i)
            experts[d], train_info[f"expert:{d}"] = work / f"expert-{d}", report.train_info(r)
        clock.run("average", _merge, cfg, work / "base", experts, files, work / "average", None)
        moes = {}
        for init_kind in cfg.merge.router_inits:
            moes[init_kind] = clock.run(f"merge:{init_kind}", _merge, cfg, work / "base", experts, files,
                                        work / f"moe-{init_kind}", init_kind)
        first = cfg.merge.router_inits[0]
        route_data = _balanced(files) if cfg.route.balance_domains else data
        route_cfg = _route_config(cfg, moes[first], route_data, work / "moe-routed")
        route_res = clock.run("route", train_router, route_cfg)
        train_info["route"] = report.train_info(route_res.train) | {"expert_load": route_res.expert_load}
        baselines = {}
        for kind in cfg.baselines:
            b = clock.run(f"baseline:{kind}", _baseline, cfg, kind, route_cfg, work, len(experts))
            baselines |= b.models
            train_info |= {k: report.train_info(v) for k, v in b.train.items()}
        models = {"base": work / "base", **{f"expert:{d}": p for d, p in experts.items()},
                  "weight-average": work / "average",
                  **{f"moe ({k} init, before router training)": p for k, p in moes.items()},
                  f"moe ({first} init, after router training)": work / "moe-routed", **baselines}
        ev = clock.run("evaluate", _evaluate, cfg, models, held)
        wall = round(time.perf_counter() - t_start, 1)
        result = report.write(tmp, cfg, ev, tok_table, train_info, clock.steps, wall, machine, source)
        if not cfg.keep_models:
            shutil.rmtree(work)
        else:
            shutil.rmtree(work / ".cache", ignore_errors=True)
    return DemoResult(out=cfg.out, steps=clock.steps, table=result["table"], targets=result["targets"], wall_s=wall)
