"""Reading a run folder (docs/eval-run-format.md): the suite, the responses and the judgments in it.

Shared by the judge (which skips keys already stored), the report and the agreement (which use only
judgments still matching the current prompts and responses). Nothing here writes, except
`latest_by_key` cutting a torn last line of `judgments.jsonl` (a kill mid-append) before reading it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mixnu.errors import DataError
from mixnu.eval.suite import Suite, load_suite
from mixnu.io import read_jsonl, repair_torn_tail


def judgment_key(judge_model: str, template_sha: str, prompt: str, notes: str,
                 responses: list[str], order: list[str], sample: int, rotation: int) -> str:
    """sha256 over everything that changes what the judge sees (and which rotation/sample it is)."""
    blob = json.dumps([judge_model, template_sha, prompt, notes, responses, order, sample, rotation],
                      ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def load_run(run_dir: Path, suite_path: Path | None) -> tuple[Suite, list[dict[str, Any]]]:
    """The suite and response records of a run folder; `DataError` if they do not belong together."""
    run_dir = Path(run_dir)
    responses_path = run_dir / "responses.jsonl"
    if not responses_path.is_file():
        raise DataError(f"{responses_path}: not found; run 'mixnu generate --out {run_dir}' first")
    suite_file = Path(suite_path) if suite_path is not None else run_dir / "suite.yaml"
    suite = load_suite(suite_file)
    records = read_jsonl(responses_path)
    if not records:
        raise DataError(f"{responses_path}: no responses in it; run 'mixnu generate' first")
    fp, ids = suite.fingerprint(), suite.by_id()
    for r in records:
        if r.get("suite") != fp or r.get("prompt_id") not in ids:
            raise DataError(
                f"{responses_path} was generated from a different suite than {suite_file} "
                f"(record {r.get('id')!r}); judge it with the suite it came from or regenerate the responses"
            )
    return suite, records


def latest_by_key(path: Path) -> dict[str, dict[str, Any]]:
    """The last record stored for each key (repairing a torn last line first)."""
    if not path.exists():
        return {}
    repair_torn_tail(path)
    return {r["key"]: r for r in read_jsonl(path) if "key" in r}


def fresh_judgments(run_dir: Path, suite: Any, responses: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The latest judgment per key that still matches the suite and responses (any judge), and how
    many records are stale (their prompt or a response they judged has changed since)."""
    path = run_dir / "judgments.jsonl"
    if not path.exists():
        raise DataError(f"{path}: not found; run 'mixnu eval judge {run_dir} …' first")
    by_id = suite.by_id()
    resp = {(r["prompt_id"], int(r["sample"]), r["model"]): r["response"] for r in responses}
    current, stale = [], 0
    for rec in latest_by_key(path).values():
        p = by_id.get(rec.get("prompt_id"))
        shown = [resp.get((rec.get("prompt_id"), int(rec.get("sample", 0)), m)) for m in rec.get("order", [])]
        ok = p is not None and None not in shown
        if ok and "template_sha" in rec:
            ok = rec["key"] == judgment_key(rec["judge_model"], rec["template_sha"], p.prompt, p.notes.judge,
                                            shown, rec["order"], int(rec["sample"]), int(rec["rotation"]))
        if ok:
            current.append(rec)
        else:
            stale += 1
    return current, stale
