"""Held-out bits per character and perplexity per token, per domain (`mixnu ppl`).

The package has ONE definition of bits per character, computed in `mixnu.scoring`: `mixnu ppl`,
the training loop's held-out evaluation (`mixnu.train.evaluate`), routing analysis and the demo all
score through `tokenize_domain` -> `run_windows` -> `bits_per_char`, so a figure with that name
means the same thing everywhere (a test checks `train`'s final figure against `mixnu ppl`).

Bits per character is the tokenizer-independent unit: the total negative log-likelihood of a
text in nats, divided by ln 2 and by the number of its characters (Python `len`, i.e. Unicode
code points of the NFC text, newlines not counted). Models with different tokenizers (Llama-2's
and an extended one) compare fairly on it. Perplexity per token (`exp(nll / tokens)`) is reported
too, but only compares models that share a tokenizer.

How a text is scored: every non-blank line of a file is one document, tokenized as
`BOS + text`. Every text token is scored exactly once; BOS is context only, and no EOS is
appended or scored (the end of a document is not predicted), nor does a document see the one
before it. Lines longer than the window
(`max_length` tokens) are scored with sliding windows: each later window starts `stride` tokens
after the previous one and scores only the tokens not scored yet, so each of them sees at least
`max_length - stride` tokens of context. Windows are sorted by length and batched with right
padding; padding is masked out.

Nothing is written to disk by `evaluate_perplexity` unless `out` is set; then `out/ppl.json`
and `out/ppl.md` are written atomically.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from mixnu.config import StageConfig
from mixnu.errors import CheckpointError, ConfigError, TokenizerError
from mixnu.hf import first_line, quiet_transformers, resolve_device
from mixnu.io import atomic_dir, read_corpus, write_json, write_text
from mixnu.scoring import Window, bits_per_char, run_windows, tokenize_domain


class PplConfig(StageConfig):
    """What `evaluate_perplexity` scores, and how."""

    models: list[Path] = Field(min_length=1, description="model folders (save_pretrained); one table row each")
    data: dict[str, Path] = Field(min_length=1, description="domain name -> text file (one document per line)")
    tokenizer: Path | None = Field(None, description="tokenizer folder (default: each model's own folder)")
    max_length: int = Field(256, ge=8, description="tokens per window (at most the model's context)")
    stride: int | None = Field(None, ge=1, description="tokens between window starts (default max_length // 2)")
    batch_size: int = Field(8, ge=1)
    max_chars: int | None = Field(None, ge=1, description="score only the first lines of each file, up to this many characters")
    device: str = Field("cpu", description="'cpu', 'cuda', 'cuda:N' or 'auto'")
    out: Path | None = Field(None, description="folder to write ppl.json and ppl.md (optional)")
    force: bool = False
    quiet: bool = False

    @field_validator("stride")
    @classmethod
    def _stride(cls, v: int | None, info: Any) -> int | None:
        max_length = info.data.get("max_length")
        if v is not None and max_length is not None and v > max_length - 1:
            raise ValueError(f"stride must be smaller than max_length ({max_length})")
        return v


@dataclass(frozen=True)
class DomainScore:
    """One model on one domain: totals and the two derived units."""

    domain: str
    lines: int
    chars: int
    tokens: int
    nll_nats: float
    bits_per_char: float
    ppl_token: float


@dataclass(frozen=True)
class ModelScores:
    """One model on every domain, and the unweighted mean of bits/char over domains."""

    model: str
    domains: dict[str, DomainScore]
    mean_bits_per_char: float


@dataclass(frozen=True)
class PplResult:
    """All models' scores; `table` is the Markdown table (rows: models, columns: domains + mean)."""

    scores: list[ModelScores]
    table: str
    out: Path | None = None


def load_causal_lm(path: str | Path, device: str = "cpu") -> Any:
    """Load a causal LM checkpoint folder in float32 for evaluation, or raise `CheckpointError`."""
    import torch
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: not a model folder (no config.json); give a save_pretrained checkpoint")
    try:
        with quiet_transformers():  # our own bars report progress; keep stderr to one line on errors
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot load the model ({first_line(exc)})") from None
    return model.to(resolve_device(device)).eval()


def _read_config(path: str | Path) -> Any:
    from transformers import AutoConfig

    if not (Path(path) / "config.json").is_file():
        raise CheckpointError(f"{path}: not a model folder (no config.json); give a save_pretrained checkpoint")
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable config.json ({first_line(exc)})") from None


def load_tokenizer(path: str | Path) -> Any:
    """Load a tokenizer folder, or raise `TokenizerError`."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(Path(path))
    except (OSError, ValueError) as exc:
        raise TokenizerError(f"{path}: cannot load a tokenizer ({first_line(exc)})") from None


def check_vocab(tokenizer: Any, model: Any, where: str = "") -> None:
    """Refuse a tokenizer whose ids do not fit the model's embedding (or that is clearly another one).

    A model vocabulary may be padded beyond the tokenizer (to a multiple of 64 or 128), so up to
    127 unused rows are accepted; a tokenizer larger than the model, or much smaller, is an error.
    """
    config = getattr(model, "config", model)  # a model or its config
    n_tok, n_model = len(tokenizer), int(config.vocab_size)
    if n_tok > n_model or n_model - n_tok >= 128:
        raise TokenizerError(
            f"{where}tokenizer has {n_tok:,} tokens but the model's vocabulary has {n_model:,}; "
            "give the tokenizer the model was trained with (--tokenizer)"
        )


def read_texts(path: str | Path, max_chars: int | None = None) -> list[str]:
    """Non-blank NFC lines of a text file, stopping once `max_chars` characters are collected."""
    lines: list[str] = []
    chars = 0
    for line in read_corpus(path):
        lines.append(line)
        chars += len(line)
        if max_chars is not None and chars >= max_chars:
            break
    return lines


def domain_score(domain: str, texts: Sequence[str], nll: float, tokens: int) -> DomainScore:
    """Turn totals into bits/char and perplexity/token."""
    chars = sum(len(t) for t in texts)
    return DomainScore(domain=domain, lines=len(texts), chars=chars, tokens=tokens, nll_nats=nll,
                       bits_per_char=bits_per_char(nll, chars),
                       ppl_token=math.exp(nll / tokens) if tokens else float("nan"))


def score_model(model: Any, tokenizer: Any, texts: dict[str, list[str]], *, name: str = "model",
                max_length: int = 256, stride: int | None = None, batch_size: int = 8, quiet: bool = True,
                on_batch: Callable[[Any, Any, list[str]], None] | None = None) -> ModelScores:
    """Score an already-loaded model on domain -> texts (see the module docstring for the method)."""
    check_vocab(tokenizer, model, f"{name}: ")
    context = int(getattr(model.config, "max_position_embeddings", max_length) or max_length)
    max_length = min(max_length, context)
    stride = min(stride or max_length // 2, max_length - 1)
    windows: list[Window] = []
    for domain, lines in texts.items():
        windows += tokenize_domain(tokenizer, domain, lines, max_length, stride)
    totals = run_windows(model, windows, batch_size, quiet, on_batch, description=f"{name}")
    domains = {d: domain_score(d, texts[d], *totals.get(d, (0.0, 0))) for d in texts}
    mean = sum(s.bits_per_char for s in domains.values()) / len(domains)
    return ModelScores(model=name, domains=domains, mean_bits_per_char=mean)


def markdown_table(scores: Sequence[ModelScores], digits: int = 4) -> str:
    """Rows: models; columns: bits/char per domain, their mean, and perplexity/token per domain."""
    domains = list(scores[0].domains)
    head = ["model"] + [f"{d} bits/char" for d in domains] + ["mean bits/char"] + [f"{d} ppl/token" for d in domains]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for s in scores:
        cells = [s.model] + [f"{s.domains[d].bits_per_char:.{digits}f}" for d in domains]
        cells += [f"{s.mean_bits_per_char:.{digits}f}"] + [f"{s.domains[d].ppl_token:.2f}" for d in domains]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evaluate_perplexity(cfg: PplConfig) -> PplResult:
    """Score every model of `cfg.models` on every domain of `cfg.data`.

    Inputs: model folders, text files, optionally a shared tokenizer folder. Output: a `PplResult`
    (one `ModelScores` per model and a Markdown table). Written to disk: `cfg.out/ppl.json` and
    `cfg.out/ppl.md`, only when `cfg.out` is set.
    """
    import torch

    if cfg.out is not None and cfg.out.exists() and not cfg.force:
        raise ConfigError(f"{cfg.out} already exists; choose another --out or pass --force")
    texts = {d: read_texts(p, cfg.max_chars) for d, p in cfg.data.items()}
    scores = []
    with torch.random.fork_rng():  # seeded for repeatable scores without reseeding the caller's RNG
        torch.manual_seed(0)
        for path in cfg.models:
            config = _read_config(path)
            tokenizer = load_tokenizer(cfg.tokenizer or path)
            check_vocab(tokenizer, config, f"{path}: ")  # before loading any weights
            model = load_causal_lm(path, cfg.device)
            scores.append(score_model(model, tokenizer, texts, name=Path(path).name or str(path),
                                      max_length=cfg.max_length, stride=cfg.stride, batch_size=cfg.batch_size,
                                      quiet=cfg.quiet))
            del model
    table = markdown_table(scores)
    result = PplResult(scores=scores, table=table, out=cfg.out)
    if cfg.out is not None:
        with atomic_dir(cfg.out, force=cfg.force) as tmp:
            write_json(tmp / "ppl.json", {"config": cfg, "scores": scores})
            write_text(tmp / "ppl.md", table + "\n")
    return result
