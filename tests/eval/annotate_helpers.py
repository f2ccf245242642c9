"""Build evaluation run folders exactly as docs/eval-run-format.md describes (for annotate/agreement tests).

The generator and judge are written elsewhere; these helpers write `suite.yaml`,
`responses.jsonl` and `judgments.jsonl` by hand so the human-verification tests do not depend
on them.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path

import yaml

from mixnu.eval.suite import load_suite

# (category, attribute, extra notes) covering every category; ids are assigned per attribute.
KINDS = (
    ("language", "english", {}),
    ("style", "colloquial", {}),
    ("domain", "law", {}),
    ("localization", "proverbs", {"meaning": "세 살 적 버릇이 여든까지 간다: habits formed young last."}),
    ("hallucination", "hallucination", {"confusable": "불수능 / 불(火): a very hard exam, not fire"}),
)
MODELS = ("mixnu", "llama2", "qwen")
XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2; document.title = \'pwned\'">'


def make_suite(per_kind: int = 2) -> dict:
    """A valid suite with `per_kind` prompts for each of the five categories."""
    prompts = []
    for cat, attr, extra in KINDS:
        for i in range(per_kind):
            prompts.append({
                "id": f"{attr[:5]}-{i + 1:03d}", "category": cat, "attribute": attr,
                "prompt": f"{cat} 프롬프트 {i + 1}: 이번 수능은 불수능이었어요." if cat != "language"
                else f"Tell me about the weather, number {i + 1}.",
                "notes": {"judge": "judge note", "human": f"human note for {attr} {i + 1}", **extra},
            })
    return {"name": "test-suite", "version": 1, "prompts": prompts}


def write_run(run: Path, per_kind: int = 2, models: tuple[str, ...] = MODELS, rotations: int = 1,
              judge: Callable[[str, str, str, int], int | None] | None = None, seed: int = 0,
              text: Callable[[str, str], str] | None = None, judge_model: str = "gpt-4o",
              error_items: tuple[str, ...] = ()) -> Path:
    """Write suite.yaml, responses.jsonl and judgments.jsonl into `run` (created).

    `judge(prompt_id, model, criterion, rotation)` gives the judge's score (None = unparsed);
    default: a deterministic pseudo-random score. `text(prompt_id, model)` gives responses.
    Each rotation shows the models in a seeded shuffled order (`order[i]` is letter A+i).
    Items in `error_items` get a `status="error"` judgment with null scores.
    """
    run.mkdir(parents=True, exist_ok=True)
    suite = make_suite(per_kind)
    (run / "suite.yaml").write_text(yaml.safe_dump(suite, allow_unicode=True, sort_keys=False), encoding="utf-8")
    fp = load_suite(run / "suite.yaml").fingerprint()
    rng = random.Random(seed)
    if judge is None:
        def judge(pid: str, model: str, crit: str, rot: int) -> int:
            h = hashlib.sha256(f"{pid}|{model}|{crit}|{rot}".encode()).digest()
            return 1 + h[0] % 5
    if text is None:
        def text(pid: str, model: str) -> str:
            return f"{model}의 답변 ({pid}): 올해 수능이 매우 어려웠다는 뜻입니다."
    with open(run / "responses.jsonl", "w", encoding="utf-8") as fh:
        for p in suite["prompts"]:
            for m in models:
                fh.write(json.dumps({
                    "id": f"{p['id']}/{m}/0", "prompt_id": p["id"], "model": m, "sample": 0, "prompt": p["prompt"],
                    "response": text(p["id"], m), "suite": fp,
                    "settings": {"backend": "hf", "model_path": f"/models/{m}", "max_new_tokens": 64,
                                 "temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.1, "seed": 0},
                }, ensure_ascii=False) + "\n")
    with open(run / "judgments.jsonl", "w", encoding="utf-8") as fh:
        for p in suite["prompts"]:
            base = list(models)
            rng.shuffle(base)
            for rot in range(rotations):
                order = base[rot % len(base):] + base[:rot % len(base)]
                failed = p["id"] in error_items
                scores = None if failed else {
                    m: {c: judge(p["id"], m, c, rot) for c in ("fluency", "relevance", "accuracy")} for m in models
                }
                fh.write(json.dumps({
                    "key": hashlib.sha256(f"{p['id']}|{rot}|{order}".encode()).hexdigest(), "prompt_id": p["id"],
                    "sample": 0, "rotation": rot, "judge_model": judge_model, "template": "default", "order": order,
                    "status": "error" if failed else "ok", "scores": scores, "raw": "{}",
                    "error": "unparsable" if failed else None, "usage": {"prompt_tokens": 10, "completion_tokens": 5},
                }, ensure_ascii=False) + "\n")
    return run


def judgment_orders(run: Path) -> dict[str, list[str]]:
    """prompt_id -> the `order` of its rotation-0 judgment."""
    out = {}
    for line in (run / "judgments.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec["rotation"] == 0:
            out[rec["prompt_id"]] = rec["order"]
    return out
