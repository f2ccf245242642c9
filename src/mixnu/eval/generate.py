"""Generate responses to a prompt suite from several models: `generate(GenerateConfig) -> GenerateResult`.

Backends (one per model, see `ModelSpec`):
- `hf`: a local Hugging Face checkpoint (any architecture `AutoModelForCausalLM` loads: Llama,
  GPT-NeoX, Mixtral …), safetensors only, batched with left padding, seeded sampling;
- `openai`: any OpenAI-compatible server (vLLM, llama.cpp, Ollama, OpenAI), `completions` or `chat`,
  through the official `openai` client with bounded concurrency and retries (`mixnu.eval.client`);
- `vllm`: in-process vLLM (`pip install vllm`, GPU machines).

Writes into the run folder `out` (format: docs/eval-run-format.md):
- `suite.yaml`: the suite used, so the folder is self-contained;
- `responses.jsonl`: one record per (prompt, model, sample) with every setting, appended and fsynced
  as each batch finishes. A rerun keeps records whose prompt text and settings are unchanged and
  generates only what is missing; records of changed prompts or settings are dropped first (the file
  is rewritten atomically), so the file always holds one record per id.
"""

from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mixnu.config import StageConfig
from mixnu.console import progress
from mixnu.errors import CheckpointError, ConfigError
from mixnu.eval.suite import Prompt, Suite, load_suite
from mixnu.hf import first_line, resolve_device
from mixnu.io import append_jsonl, read_jsonl, repair_torn_tail, write_jsonl, write_text
from mixnu.seeds import seed_for
from mixnu.text import chat_prompt_ids, document_ids, normalize_text


class ModelSpec(BaseModel):
    """One model to generate from. `name` is what reports show (judges only ever see letters)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
    backend: Literal["hf", "openai", "vllm"] = "hf"
    path: str | None = None            # hf, vllm: checkpoint folder
    base_url: str | None = None        # openai: e.g. http://127.0.0.1:8000/v1
    model: str | None = None           # openai: the model name the server knows
    api: Literal["completions", "chat"] = "completions"  # openai
    api_key_env: str = "OPENAI_API_KEY"
    chat_template: bool = False        # hf, vllm: wrap the prompt with the tokenizer's chat template

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if self.backend in ("hf", "vllm") and not self.path:
            raise ValueError(f"model {self.name!r}: backend {self.backend} needs 'path' (a checkpoint folder)")
        if self.backend == "openai" and not (self.base_url and self.model):
            raise ValueError(f"model {self.name!r}: backend openai needs 'base_url' and 'model'")
        return self

    @classmethod
    def parse(cls, spec: str) -> ModelSpec:
        """`NAME=PATH` (hf), `NAME=vllm:PATH`, `NAME=openai:MODEL@URL`, `NAME=openai-chat:MODEL@URL`."""
        if "=" not in spec:
            raise ConfigError(f"--model {spec!r}: expected NAME=PATH, NAME=vllm:PATH or NAME=openai[-chat]:MODEL@URL")
        name, target = spec.split("=", 1)
        kind, _, rest = target.partition(":")
        if kind in ("openai", "openai-chat") and "@" in rest:
            model, url = rest.split("@", 1)
            data: dict[str, Any] = {"name": name, "backend": "openai", "model": model, "base_url": url,
                                    "api": "chat" if kind == "openai-chat" else "completions"}
        elif kind == "vllm" and rest:
            data = {"name": name, "backend": "vllm", "path": rest}
        else:
            data = {"name": name, "backend": "hf", "path": target}
        from mixnu.config import validate_config

        return validate_config(cls, data, f"--model {spec}")


class GenerateConfig(StageConfig):
    """Settings of `mixnu generate` (YAML keys = these fields)."""

    out: Path
    models: list[ModelSpec] = Field(min_length=1)
    suite: Path | None = None           # default: the shipped Korean suite
    prompt_ids: list[str] | None = None  # only these prompts (default: all)
    samples: int = Field(1, ge=1)
    max_new_tokens: int = Field(128, ge=1)
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)
    repetition_penalty: float = Field(1.0, gt=0)
    seed: int = 0
    batch_size: int = Field(8, ge=1)    # hf, vllm
    concurrency: int = Field(8, ge=1)   # openai
    timeout_s: float = Field(120, gt=0)
    max_retries: int = Field(6, ge=0)
    backoff_base_s: float = Field(0.5, ge=0)
    device: str = "auto"                # hf: auto (cuda if available), cpu, cuda, cuda:1 …
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"

    @field_validator("models")
    @classmethod
    def _unique(cls, models: list[ModelSpec]) -> list[ModelSpec]:
        names = [m.name for m in models]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"model names must be unique; repeated: {', '.join(sorted(dup))}")
        return models


@dataclass(frozen=True)
class GenerateResult:
    """What `generate` did: where, how many records were new or reused, and how long it took."""

    out: Path
    responses_path: Path
    suite_fingerprint: str
    total: int
    generated: int
    reused: int
    dropped_stale: int
    wall_s: float


def settings_for(spec: ModelSpec, cfg: GenerateConfig) -> dict[str, Any]:
    """Every setting that changes a response (stored in each record; a change means regeneration)."""
    s: dict[str, Any] = {"backend": spec.backend, "max_new_tokens": cfg.max_new_tokens,
                         "temperature": cfg.temperature, "top_p": cfg.top_p,
                         "repetition_penalty": cfg.repetition_penalty, "seed": cfg.seed}
    if spec.backend == "openai":
        s.update(base_url=spec.base_url, model=spec.model, api=spec.api)
    else:
        s.update(model_path=str(Path(spec.path).resolve()), chat_template=spec.chat_template)
        if spec.backend == "hf":
            s["dtype"] = cfg.dtype
    return s


def record_id(prompt_id: str, model: str, sample: int) -> str:
    return f"{prompt_id}/{model}/{sample}"


def _check_paths(cfg: GenerateConfig) -> None:
    for spec in cfg.models:
        if spec.backend == "openai":
            from mixnu.eval.client import resolve_api_key

            resolve_api_key(spec.base_url or "", spec.api_key_env)
            continue
        path = Path(spec.path or "")
        if not (path / "config.json").is_file():
            raise CheckpointError(f"model {spec.name!r}: {path} is not a Hugging Face checkpoint folder "
                                  "(no config.json); check the path")


def _select(suite: Suite, ids: list[str] | None) -> list[Prompt]:
    if ids is None:
        return list(suite.prompts)
    known = suite.by_id()
    missing = [i for i in ids if i not in known]
    if missing:
        raise ConfigError(f"prompt_ids: {', '.join(missing)} not in suite {suite.name!r}")
    return [known[i] for i in ids]


def generate(cfg: GenerateConfig, quiet: bool = True) -> GenerateResult:
    """Generate `samples` responses per (prompt, model) into `cfg.out/responses.jsonl`; see the module docstring."""
    t0 = time.perf_counter()
    suite = load_suite(cfg.suite)
    prompts = _select(suite, cfg.prompt_ids)
    _check_paths(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "suite.yaml", yaml.safe_dump(suite.model_dump(mode="json", exclude_none=True),
                                                  allow_unicode=True, sort_keys=False))
    path = out / "responses.jsonl"
    fingerprint = suite.fingerprint()
    by_id = suite.by_id()
    settings = {m.name: settings_for(m, cfg) for m in cfg.models}
    kept, dropped = _reusable(path, by_id, settings, fingerprint)
    done = {r["id"] for r in kept}
    todo: dict[str, list[tuple[Prompt, int]]] = {
        m.name: [(p, s) for s in range(cfg.samples) for p in prompts if record_id(p.id, m.name, s) not in done]
        for m in cfg.models
    }
    n_new = 0
    with progress(quiet, "responses") as bar:
        for spec in cfg.models:
            jobs = todo[spec.name]
            if not jobs:
                continue
            task = bar.add_task(f"generate {spec.name}", total=len(jobs))

            def emit(prompt: Prompt, sample: int, text: str, spec: ModelSpec = spec, task: Any = task) -> None:
                append_jsonl(path, {
                    "id": record_id(prompt.id, spec.name, sample), "prompt_id": prompt.id, "model": spec.name,
                    "sample": sample, "prompt": prompt.prompt, "response": text, "suite": fingerprint,
                    "settings": settings[spec.name],
                })
                bar.advance(task)

            if spec.backend == "hf":
                _run_hf(spec, cfg, jobs, emit)
            elif spec.backend == "vllm":
                _run_vllm(spec, cfg, jobs, emit)
            else:
                asyncio.run(_run_openai(spec, cfg, jobs, emit))
            n_new += len(jobs)
    total = len(prompts) * cfg.samples * len(cfg.models)
    return GenerateResult(out=out, responses_path=path, suite_fingerprint=fingerprint, total=total,
                          generated=n_new, reused=len(kept), dropped_stale=dropped,
                          wall_s=round(time.perf_counter() - t0, 3))


def _reusable(path: Path, by_id: dict[str, Prompt], settings: dict[str, dict[str, Any]],
              fingerprint: str) -> tuple[list[dict[str, Any]], int]:
    """Existing records still valid for this suite and these settings (rewriting the file if any changed)."""
    if not path.exists():
        return [], 0
    repair_torn_tail(path)
    records = read_jsonl(path)
    kept: dict[str, dict[str, Any]] = {}
    for r in records:
        p = by_id.get(r.get("prompt_id", ""))
        if p is None or r.get("prompt") != p.prompt or settings.get(r.get("model")) != r.get("settings"):
            continue
        kept[r["id"]] = {**r, "suite": fingerprint}
    if len(kept) != len(records) or any(r.get("suite") != fingerprint for r in records):
        write_jsonl(path, kept.values())
    return list(kept.values()), len(records) - len(kept)


# ---- backends ---------------------------------------------------------------------------------------

def load_hf(spec: ModelSpec, cfg: GenerateConfig):
    """(model, tokenizer) for a local checkpoint; `CheckpointError` if it cannot be loaded."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.dtype]
    try:
        tok = AutoTokenizer.from_pretrained(spec.path)
        model = AutoModelForCausalLM.from_pretrained(spec.path, dtype=dtype, use_safetensors=True)
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"model {spec.name!r}: cannot load {spec.path} ({first_line(exc, 200)}); "
                              "it must be a safetensors checkpoint with a tokenizer") from None
    model.to(resolve_device(cfg.device)).eval()
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.convert_ids_to_tokens(0)
    return model, tok


def prompt_ids(spec: ModelSpec, tok: Any, text: str) -> list[int]:
    """The ids a local model (hf, vllm) is given for one prompt, decided by `mixnu.text` as in training.

    Plain: `[BOS] body`, the ids `train` and `ppl` give the same text. With `chat_template`: the
    template's ids, the user's message encoded as text. `ConfigError` if the template is missing.
    """
    if spec.chat_template:
        if not getattr(tok, "chat_template", None):
            raise ConfigError(f"model {spec.name!r}: chat_template is on but its tokenizer has no chat template")
        return chat_prompt_ids(tok, text)
    return document_ids(tok, [text])[0]


def _left_padded(rows: list[list[int]], pad_id: int):
    """(input_ids, attention_mask), both (batch, longest) int64, padded on the left."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r):] = 1
    return ids, mask


def _batches(jobs: list[tuple[Prompt, int]], size: int):
    for i in range(0, len(jobs), size):
        yield i // size, jobs[i:i + size]


def _run_hf(spec: ModelSpec, cfg: GenerateConfig, jobs: list[tuple[Prompt, int]], emit) -> None:
    import torch

    model, tok = load_hf(spec, cfg)
    sample_kw: dict[str, Any] = {"do_sample": cfg.temperature > 0}
    if cfg.temperature > 0:
        sample_kw.update(temperature=cfg.temperature, top_p=cfg.top_p)
    else:
        sample_kw.update(temperature=None, top_p=None, top_k=None)
    for b, batch in _batches(jobs, cfg.batch_size):
        # Seeded per batch: the same config reproduces the same text (for a run that is not resumed).
        torch.manual_seed(seed_for(cfg.seed, b))
        ids, mask = _left_padded([prompt_ids(spec, tok, p.prompt) for p, _ in batch], tok.pad_token_id)
        enc = {"input_ids": ids.to(model.device), "attention_mask": mask.to(model.device)}
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=cfg.max_new_tokens, repetition_penalty=cfg.repetition_penalty,
                                 pad_token_id=tok.pad_token_id, **sample_kw)
        new = out[:, enc["input_ids"].shape[1]:]  # (batch, new tokens): drop the left-padded prompt
        for (p, s), ids in zip(batch, new, strict=True):
            emit(p, s, tok.decode(ids, skip_special_tokens=True))
    del model
    gc.collect()


def _run_vllm(spec: ModelSpec, cfg: GenerateConfig, jobs: list[tuple[Prompt, int]], emit) -> None:
    try:
        from vllm import LLM, SamplingParams
    except ImportError:
        raise ConfigError(f"model {spec.name!r}: backend vllm needs vLLM (pip install vllm, on a GPU machine); "
                          "or use backend hf") from None
    llm = LLM(model=spec.path, seed=cfg.seed, dtype=cfg.dtype)
    tok = llm.get_tokenizer()
    for _, batch in _batches(jobs, max(cfg.batch_size, 64)):
        params = [SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_new_tokens,
                                 repetition_penalty=cfg.repetition_penalty, seed=seed_for(cfg.seed, s))
                  for _, s in batch]
        outs = llm.generate([{"prompt_token_ids": prompt_ids(spec, tok, p.prompt)} for p, _ in batch], params)
        for (p, s), o in zip(batch, outs, strict=True):
            emit(p, s, o.outputs[0].text)
    del llm
    gc.collect()


async def _run_openai(spec: ModelSpec, cfg: GenerateConfig, jobs: list[tuple[Prompt, int]], emit) -> None:
    from mixnu.errors import JudgeError
    from mixnu.eval.client import (
        CallFailure,
        CallStats,
        RetryPolicy,
        call_with_retries,
        gather_or_cancel,
        make_client,
    )

    client = make_client(spec.base_url or "", spec.api_key_env, cfg.timeout_s, cfg.concurrency)
    policy = RetryPolicy(max_retries=cfg.max_retries, base_s=cfg.backoff_base_s)
    stats = CallStats()
    sem = asyncio.Semaphore(cfg.concurrency)
    extra = {"repetition_penalty": cfg.repetition_penalty} if cfg.repetition_penalty != 1.0 else None
    common = {"model": spec.model, "temperature": cfg.temperature, "top_p": cfg.top_p,
              "max_tokens": cfg.max_new_tokens, "extra_body": extra}

    async def one(p: Prompt, s: int) -> None:
        async with sem:
            seed = seed_for(cfg.seed, s)
            if spec.api == "chat":
                def fn():
                    return client.chat.completions.create(
                        messages=[{"role": "user", "content": normalize_text(p.prompt)}], seed=seed, **common)
            else:
                def fn():
                    return client.completions.create(prompt=normalize_text(p.prompt), seed=seed, **common)
            res = await call_with_retries(fn, policy, stats, f"model {spec.name!r} at {spec.base_url}")
        if isinstance(res, CallFailure):
            raise JudgeError(f"model {spec.name!r} at {spec.base_url}: HTTP {res.status}: {res.message[:200]}")
        choice = res.choices[0]
        emit(p, s, (choice.message.content if spec.api == "chat" else choice.text) or "")

    try:
        tasks = [asyncio.create_task(one(p, s)) for p, s in jobs]
        await gather_or_cancel(tasks)
    finally:
        await client.close()

