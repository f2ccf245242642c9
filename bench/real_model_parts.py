"""Pieces of bench/real_model.py: evaluation texts, scoring, llama.cpp parity, the real-server run."""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mixnu.datasets import heldout_files
from mixnu.perplexity import load_causal_lm, load_tokenizer, read_texts, score_model

_EN_MODULES = ("argparse", "json", "pathlib", "shutil", "subprocess", "textwrap", "logging", "csv", "zipfile",
               "tarfile", "difflib", "statistics", "calendar", "datetime", "collections", "threading", "random")
KO_PROMPTS = ["대한민국은 민주공화국이다. 대한민국의 주권은", "오늘 날씨가 좋아서 친구들과 함께",
              "파이썬의 리스트는 변경할 수 있는", "민법 제1조에 따르면 민사에 관하여", "그 소설의 주인공은 어느 날"]
EN_PROMPTS = ["The capital of France is", "Once upon a time, there was a little", "def fibonacci(n):\n",
              "The quick brown fox jumps over the", "Water boils at a temperature of"]


@contextlib.contextmanager
def stage(out: dict[str, Any], name: str) -> Iterator[None]:
    """Time a stage into out['stage_seconds'][name] and print a header."""
    print(f"\n=== {name} ({time.strftime('%H:%M:%S')}) ===", flush=True)
    t0 = time.perf_counter()
    try:
        yield
    finally:
        out["stage_seconds"][name] = round(time.perf_counter() - t0, 1)
        print(f"=== {name}: {out['stage_seconds'][name]:.0f} s ===", flush=True)


def korean_texts(max_chars: int) -> dict[str, list[str]]:
    """The first `max_chars` characters (whole lines) of each domain's held-out file (never trained on)."""
    return {d: read_texts(p, max_chars) for d, p in heldout_files().items()}


def english_texts(max_chars: int) -> list[str]:
    """English prose: docstring paragraphs of Python standard-library modules (PSF licence), first `max_chars`.

    Plain technical English, not code; likely inside SmolLM2's pretraining data, which does not matter here:
    it measures how much *English* changes when the model learns Korean (the card's Language category).
    """
    import importlib

    out, chars = [], 0
    for name in _EN_MODULES:
        mod, taken = importlib.import_module(name), 0
        for obj in [mod, *[getattr(mod, a) for a in sorted(dir(mod)) if not a.startswith("_")]]:
            doc = inspect.getdoc(obj) if (inspect.isfunction(obj) or inspect.isclass(obj) or obj is mod) else None
            for para in (doc or "").split("\n\n"):
                text = " ".join(para.split())
                if 60 <= len(text) <= 400 and text[0].isupper() and text.endswith(".") and ">>>" not in text \
                        and "::" not in text and text not in out and taken < 3:
                    out.append(text)
                    taken += 1
                    chars += len(text)
                    if chars >= max_chars:
                        return out
    return out


class _OldVocab:
    """A model whose logits are cut to the first `n_old` rows: scores text as if the new rows did not exist."""

    def __init__(self, model: Any, n_old: int) -> None:
        self.model, self.n_old, self.config = model, n_old, model.config

    def parameters(self):
        return self.model.parameters()

    def __call__(self, **kw: Any) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(logits=self.model(**kw).logits[..., : self.n_old])


def score_all(models: dict[str, tuple[Path, Path]], evalsets: dict[str, list[str]], work: Path,
              n_old: int | None) -> list[dict[str, Any]]:
    """bits/char of each (model, tokenizer) on each eval set; cached in work/scores.json by folder + mtime.

    With `n_old`, also English scored over the old vocabulary only (`en_old_vocab`): equal to the base's
    English score iff the old rows and the trunk are untouched.
    """
    cache_path = work / "scores.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    rows = []
    for name, (mdir, tdir) in models.items():
        key = f"{mdir}@{(mdir / 'config.json').stat().st_mtime_ns}"
        if key not in cache:
            model, tok = load_causal_lm(mdir), load_tokenizer(tdir)
            t0 = time.perf_counter()
            s = score_model(model, tok, evalsets, name=name, max_length=256, batch_size=8, quiet=False)
            row = {f"{d}": round(v.bits_per_char, 4) for d, v in s.domains.items()}
            row["tokens"] = sum(v.tokens for v in s.domains.values())
            vocab = int(model.config.vocab_size)
            if n_old is not None and vocab > n_old:
                old = score_model(_OldVocab(model, n_old), tok, {"en": evalsets["en"]}, name=f"{name} old vocab")
                row["en_old_vocab"] = round(old.domains["en"].bits_per_char, 4)
            row["score_s"] = round(time.perf_counter() - t0, 1)
            cache[key] = row
            cache_path.write_text(json.dumps(cache, indent=1))
        row = dict(cache[key])
        ko = [v for k, v in row.items() if k.startswith("ko-")]
        rows.append({"model": name, **row, "ko_mean": round(sum(ko) / len(ko), 4)})
    return rows


def _hf_side(model_dir: Path, new_tokens: int, top: int) -> dict[str, Any]:
    import torch

    model, tok = load_causal_lm(model_dir), load_tokenizer(model_dir)
    prompts = [tok(p, add_special_tokens=False).input_ids for p in KO_PROMPTS + EN_PROMPTS]
    greedy, logprobs = [], []
    with torch.no_grad():
        for ids in prompts:
            seq = list(ids)
            lp = torch.log_softmax(model(torch.tensor([seq])).logits[0, -1].double(), -1)
            top_ids = torch.topk(lp, top).indices.tolist()
            logprobs.append([[i, float(lp[i])] for i in top_ids])
            out = []
            for _ in range(new_tokens):
                nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
                out.append(nxt)
                seq.append(nxt)
            greedy.append(out)
    return {"prompts": prompts, "greedy": greedy, "logprobs": logprobs, "tokenizer": tok}


def llamacpp_parity(model_dir: Path, llama_cpp: Path, python: Path, gguf: Path, new_tokens: int = 16,
                    top: int = 5) -> dict[str, Any]:
    """Export `model_dir` with `mixnu export gguf`, then compare llama.cpp against transformers.

    Greedy: `new_tokens` argmax tokens from the same prompt ids. Log-probs: the top-`top` next-token ids of
    transformers, their log-prob in both (max abs difference), and whether the argmax agrees.
    """
    from mixnu.gguf_export import ExportGgufConfig, export_gguf

    t0 = time.perf_counter()
    res: dict[str, Any] = {}
    if not gguf.is_file():
        r = export_gguf(ExportGgufConfig(model=model_dir, out=gguf, llama_cpp=llama_cpp, outtype="f32"))
        res["export_s"], res["gguf_mb"] = r.seconds, round(r.bytes / 1e6, 1)
    hf = _hf_side(model_dir, new_tokens, top)
    job = {"gguf": str(gguf), "prompts": hf["prompts"], "new_tokens": new_tokens, "top": top,
           "texts": KO_PROMPTS + EN_PROMPTS}
    proc = subprocess.run([str(python), str(Path(__file__).with_name("llamacpp_parity_worker.py"))],
                          input=json.dumps(job), capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        return {**res, "error": proc.stderr.strip().splitlines()[-1:]}
    ll = json.loads(proc.stdout)
    diffs, top1 = [], 0
    for a, b in zip(hf["logprobs"], ll["logprobs"], strict=True):
        lb = dict((i, v) for i, v in b)
        top1 += a[0][0] == b[0][0]
        diffs += [abs(v - lb[i]) for i, v in a if i in lb]
    same = [a == b for a, b in zip(hf["greedy"], ll["greedy"], strict=True)]
    tok_same = [a == b for a, b in zip(hf["prompts"], ll["tokenized"], strict=True)]
    res.update({
        "prompts": len(same), "korean_prompts": len(KO_PROMPTS), "english_prompts": len(EN_PROMPTS),
        "greedy_equal": sum(same), "greedy_equal_korean": sum(same[: len(KO_PROMPTS)]),
        "top1_equal": top1, "max_abs_logprob_diff": max(diffs) if diffs else math.nan,
        "logprobs_compared": len(diffs), "tokenization_equal": sum(tok_same),
        "first_greedy_hf": hf["tokenizer"].decode(hf["greedy"][0]),
        "first_greedy_llamacpp": hf["tokenizer"].decode(ll["greedy"][0]),
        "llamacpp_s": ll["seconds"], "seconds": round(time.perf_counter() - t0, 1)})
    print(json.dumps({k: v for k, v in res.items() if not k.startswith("first")}, ensure_ascii=False), flush=True)
    return res


def _subset(per_attribute: int) -> list[str]:
    from mixnu.eval.suite import load_suite

    seen: dict[str, int] = {}
    ids = []
    for p in load_suite().prompts:
        if seen.get(p.attribute, 0) < per_attribute:
            seen[p.attribute] = seen.get(p.attribute, 0) + 1
            ids.append(p.id)
    return ids


def serve_and_judge(gguf: Path, python: Path, run_dir: Path, per_attribute: int,
                    limit: int | None = None) -> dict[str, Any]:
    """Serve `gguf` with llama-cpp-python's server; `mixnu generate` + `mixnu eval judge` + report against it."""
    from mixnu.cli import main as mixnu
    from mixnu.llama_server import free_port, llama_cpp_command, serve

    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    ids = _subset(per_attribute)[:limit]
    res: dict[str, Any] = {"prompts": len(ids), "url": url}
    t0 = time.perf_counter()
    cmd = llama_cpp_command(python, gguf, port, n_ctx=4096, n_threads=2, alias="mixnu-real")
    with serve(cmd, url, run_dir.parent / "server.log", ready_timeout_s=300) as proc:
        res["pid"], res["ready_s"] = proc.pid, round(time.perf_counter() - t0, 1)
        t1 = time.perf_counter()
        rc = mixnu(["generate", "--out", str(run_dir), "--model", f"{gguf.stem}=openai-chat:mixnu-real@{url}",
                    "--max-new-tokens", "64", "--temperature", "0", "--concurrency", "1",
                    "--set", f"prompt_ids={json.dumps(ids)}", "--set", "timeout_s=300", "--json",
                    str(run_dir.parent / "generate.json")])
        res["generate_rc"], res["generate_s"] = rc, round(time.perf_counter() - t1, 1)
        t2 = time.perf_counter()
        rc = mixnu(["eval", "judge", str(run_dir), "--judge-url", url, "--judge-model", "mixnu-real",
                    "--response-format", os.environ.get("REAL_JUDGE_FORMAT", "auto"), "--concurrency", "1",
                    "--max-retries", "2", "--timeout", "300", "--set", "max_tokens=256",
                    "--json", str(run_dir.parent / "judge.json")])
        res["judge_rc"], res["judge_s"] = rc, round(time.perf_counter() - t2, 1)
    rc = mixnu(["eval", "report", str(run_dir), "--json", str(run_dir.parent / "report.json")])
    res["report_rc"] = rc
    for name in ("generate", "judge", "report"):
        p = run_dir.parent / f"{name}.json"
        res[name] = json.loads(p.read_text()) if p.is_file() else None
    res["server_stopped"] = proc.poll() is not None
    return res
