"""Fixtures for the evaluation tests: a small valid suite, run folders built by hand, the fake judge server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.eval.fake_openai import FakeOpenAI

# (category, attribute, prompt): one per attribute the small suites use.
SMALL = [
    ("hallucination", "hallucination", "이번 수능은 불수능이었어요."),
    ("language", "english", "Tell me about the weather in Seoul in spring."),
    ("domain", "law", "헌법재판소는 어제 선거법 조항에 대해 헌법불합치 결정을 내렸다."),
    ("localization", "proverbs", "가는 말이 고와야 오는 말이 곱다는 말이 있듯이"),
    ("style", "colloquial", "아 진짜 오늘 너무 피곤하다"),
    ("domain", "finance", "한국은행은 기준금리를 동결했다고 밝혔다."),
]


def suite_data(n: int = 6, name: str = "small", reps: int = 1) -> dict[str, Any]:
    """A valid suite of `n` × `reps` prompts cycling through SMALL."""
    prompts = []
    for i in range(n * reps):
        cat, attr, text = SMALL[i % len(SMALL)]
        notes: dict[str, Any] = {"judge": f"정확한 답 {i}", "human": f"사람용 설명 {i}"}
        if attr == "hallucination":
            notes["confusable"] = "불수능: 매우 어려운 수능 (불 = 火)"
        if attr in ("proverbs", "idioms"):
            notes["meaning"] = "말을 곱게 해야 남도 곱게 대한다"
        prompts.append({"id": f"{attr.replace('_', '-')}-{i:03d}", "category": cat, "attribute": attr,
                        "prompt": text if i < len(SMALL) else f"{text} ({i})", "notes": notes})
    return {"name": name, "version": 1, "prompts": prompts}


def write_suite(path: Path, n: int = 6, name: str = "small", reps: int = 1) -> Path:
    path.write_text(yaml.safe_dump(suite_data(n, name, reps), allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def make_run(run: Path, models: tuple[str, ...] = ("m1", "m2", "m3"), n: int = 6, samples: int = 1,
             reps: int = 1) -> Path:
    """A run folder with suite.yaml and responses.jsonl written by hand (no generation)."""
    from mixnu.eval.suite import load_suite
    from mixnu.io import write_jsonl

    run.mkdir(parents=True, exist_ok=True)
    suite = load_suite(write_suite(run / "suite.yaml", n=n, reps=reps))
    recs = []
    for p in suite.prompts:
        for m in models:
            for s in range(samples):
                recs.append({"id": f"{p.id}/{m}/{s}", "prompt_id": p.id, "model": m, "sample": s, "prompt": p.prompt,
                             "response": f"{m} 모델의 답변입니다 {p.id[-3:]}번 {s}", "suite": suite.fingerprint(),
                             "settings": {"backend": "hand"}})
    write_jsonl(run / "responses.jsonl", recs)
    return run


@pytest.fixture
def fake_server():
    """A well-behaved fake OpenAI server; tests change its attributes (fault_rate, script …) as needed."""
    with FakeOpenAI() as srv:
        yield srv


@pytest.fixture
def small_suite(tmp_path: Path) -> Path:
    return write_suite(tmp_path / "suite.yaml")
