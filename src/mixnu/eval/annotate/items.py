"""What annotators score: the items of a run folder, and the stratified sample drawn from them.

An *item* (`AnnotationItem`) is one (prompt, sample): the prompt, its category, attribute and human
notes, and every model's response to it under the letter the judge saw (the lowest rotation's
`order` in `judgments.jsonl`). `draw_sample` picks the seeded, category-stratified sample that
`mixnu.eval.annotate.store` keeps, so every annotator scores the same items in the same order.
Reads the run folder only (docs/eval-run-format.md); writes nothing.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from mixnu.errors import DataError
from mixnu.eval.annotate.store import SampleRow
from mixnu.eval.suite import load_suite
from mixnu.io import read_jsonl
from mixnu.text import normalize_text


@dataclass(frozen=True)
class ShownResponse:
    """One response as the annotator sees it (`letter`), and whose it is (`model`, server side only)."""

    letter: str
    model: str
    text: str


@dataclass(frozen=True)
class AnnotationItem:
    """One (prompt, sample) to annotate."""

    item_id: str
    prompt_id: str
    sample: int
    category: str
    attribute: str
    prompt: str
    notes: tuple[tuple[str, str], ...]
    responses: tuple[ShownResponse, ...]


def load_items(run_dir: str | Path) -> dict[str, AnnotationItem]:
    """Read a run folder into items keyed by `"<prompt_id>/<sample>"`.

    Letters follow the `order` of the item's judgment with the lowest rotation; models missing
    from it (or items never judged) follow the order of `responses.jsonl`.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: run folder not found; give the folder that `mixnu eval run` wrote")
    for name in ("suite.yaml", "responses.jsonl"):
        if not (run_dir / name).is_file():
            raise DataError(f"{run_dir / name}: missing; a run folder needs suite.yaml and responses.jsonl")
    prompts = load_suite(run_dir / "suite.yaml").by_id()
    texts: dict[tuple[str, int], dict[str, str]] = defaultdict(dict)
    for i, rec in enumerate(read_jsonl(run_dir / "responses.jsonl"), 1):
        try:
            key = (str(rec["prompt_id"]), int(rec["sample"]))
            texts[key][str(rec["model"])] = normalize_text(str(rec["response"]))  # shown as the judge saw it
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{run_dir / 'responses.jsonl'}: record {i} lacks prompt_id, sample, model or response") from None
        if key[0] not in prompts:
            raise DataError(f"{run_dir / 'responses.jsonl'}: prompt id {key[0]!r} is not in suite.yaml")
    orders: dict[tuple[str, int], tuple[int, list[str]]] = {}
    if (run_dir / "judgments.jsonl").is_file():
        for rec in read_jsonl(run_dir / "judgments.jsonl"):
            try:
                key, rot, order = (str(rec["prompt_id"]), int(rec["sample"])), int(rec["rotation"]), list(rec["order"])
            except (KeyError, TypeError, ValueError):
                continue
            if key not in orders or rot < orders[key][0]:
                orders[key] = (rot, [str(m) for m in order])
    items: dict[str, AnnotationItem] = {}
    for (pid, sample), by_model in sorted(texts.items()):
        order = [m for m in orders.get((pid, sample), (0, []))[1] if m in by_model]
        order += [m for m in by_model if m not in order]
        if len(order) > 26:
            raise DataError(f"{pid}: more than 26 models answered; letters run out")
        p = prompts[pid]
        notes = tuple((k, v) for k, v in (("human", p.notes.human), ("confusable", p.notes.confusable),
                                          ("meaning", p.notes.meaning)) if v)
        item_id = f"{pid}/{sample}"
        items[item_id] = AnnotationItem(item_id, pid, sample, p.category, p.attribute, p.prompt, notes, tuple(
            ShownResponse(chr(ord("A") + i), m, by_model[m]) for i, m in enumerate(order)))
    if not items:
        raise DataError(f"{run_dir / 'responses.jsonl'}: no responses; run `mixnu generate` first")
    return items


def draw_sample(items: dict[str, AnnotationItem], n: int, seed: int) -> list[SampleRow]:
    """A sample of `n` items stratified by category, in a seeded shuffled order.

    Each category gets a share proportional to its size (largest remainder), and at least one
    item when `n` is at least the number of categories. Asking for more than there are takes all.
    """
    by_cat: dict[str, list[str]] = defaultdict(list)
    for item_id in sorted(items):
        by_cat[items[item_id].category].append(item_id)
    total = len(items)
    n = min(n, total)
    cats = sorted(by_cat)
    # Largest-remainder (Hamilton) apportionment of n over the categories' sizes.
    quota = {c: n * len(by_cat[c]) // total for c in cats}
    for c in sorted(cats, key=lambda c: (-(n * len(by_cat[c]) % total), c))[: n - sum(quota.values())]:
        quota[c] += 1
    if n >= len(cats):  # every category shows up: take one from the largest share for each empty one
        for c in cats:
            if quota[c] == 0:
                quota[max(cats, key=lambda k: (quota[k], k))] -= 1
                quota[c] = 1
    rng = random.Random(seed)
    chosen = [i for c in cats for i in rng.sample(by_cat[c], quota[c])]
    rng.shuffle(chosen)
    return [SampleRow(k, i, items[i].prompt_id, items[i].sample, items[i].category) for k, i in enumerate(chosen)]
